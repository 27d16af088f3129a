import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, logCapture, strongPassword, uniqueName } from '../helpers.ts';
import { type ReceivedMail, startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';
import { testClock } from '../support/clock.ts';
import { enrol } from '../support/mfa.ts';
import { assertProblem } from '../support/problem.ts';
import { bearer, createAccount, login, refreshRequest, type TestAccount } from './auth-helpers.ts';

/** A clock the test moves forward, to cross link lifetimes and the recent-authentication window. */
const clock = testClock();

const DAY = 24 * 3600_000;

describe('change of e-mail address', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({}, { clock }));
  });
  after(() => close());

  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json', ...headers },
      payload: JSON.stringify(payload),
    });

  const freshAddress = () => `${uniqueName('new')}@example.org`;

  async function signedIn() {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    return { account, tokens, auth: bearer(tokens.access_token) };
  }

  const request = (auth: Record<string, string>, body: Record<string, unknown>) => post('/api/v1/me/email', body, auth);

  /** The link of a mail that leads to `path`. */
  function linkTo(mail: ReceivedMail | undefined, path: string): string {
    const link = mail?.links.find((l) => l.startsWith(`http://gatehouse.test${path}?token=`));
    assert.ok(link, `no ${path} link in ${mail?.links.join(', ')}`);
    return link;
  }

  /** Mail to `address` with a link to `path`, oldest first: waits until there are `count` of them. */
  async function mailsWithLink(address: string, path: string, count: number): Promise<ReceivedMail[]> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const found = smtp
        .to(address)
        .filter((m) => m.links.some((l) => l.startsWith(`http://gatehouse.test${path}?token=`)));
      if (found.length >= count) return found;
      assert.ok(Date.now() < deadline, `expected ${count} mail(s) with ${path} for ${address}, got ${found.length}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Asks for the change and reads the confirmation link's token from the mail to the new address. */
  async function requestConfirmToken(account: TestAccount, auth: Record<string, string>, newEmail: string) {
    const path = '/account/email/confirm';
    const before = (await mailsWithLink(newEmail, path, 0)).length;
    const res = await request(auth, { new_email: newEmail, password: account.password });
    assert.equal(res.statusCode, 202, res.body);
    const mails = await mailsWithLink(newEmail, path, before + 1);
    return tokenFrom(linkTo(mails[before], path));
  }

  async function confirmAndRevertToken(account: TestAccount, auth: Record<string, string>, newEmail: string) {
    const token = await requestConfirmToken(account, auth, newEmail);
    const path = '/account/email/revert';
    const before = (await mailsWithLink(account.email, path, 0)).length;
    const res = await post('/api/v1/me/email/confirm', { token });
    assert.equal(res.statusCode, 200, res.body);
    const mails = await mailsWithLink(account.email, path, before + 1);
    return tokenFrom(linkTo(mails[before], path));
  }

  const userRow = (id: number) =>
    app.gatehouse.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  const audits = async (action: string, userId: number) =>
    app.gatehouse.db
      .selectFrom('audit_logs')
      .selectAll()
      .where('action', '=', action as never)
      .where('user_id', '=', userId)
      .execute();

  test('POST /api/v1/me/email answers 202, mails a link to the new address, and confirming it moves the account there, verified', async () => {
    const { account, auth } = await signedIn();
    // Unverified (as after an address change by an administrator): the link proves the new address.
    await app.gatehouse.db.updateTable('users').set({ email_verified_at: null }).where('id', '=', account.id).execute();
    const newEmail = freshAddress();
    const res = await request(auth, { new_email: newEmail.toUpperCase(), password: account.password });
    assert.equal(res.statusCode, 202, res.body);
    assert.equal(typeof json(res).message, 'string');

    const [mail] = await smtp.waitFor(newEmail);
    const link = linkTo(mail, '/account/email/confirm');
    assert.ok(mail?.text.includes(link), 'the text part carries the link');
    assert.equal((await userRow(account.id)).email, account.email, 'nothing changes before the link is followed');

    // Opening the link (a GET, as a mail scanner would) shows a button and spends nothing.
    const page = await app.inject({ method: 'GET', url: new URL(link).pathname + new URL(link).search });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /Confirm new address/);

    const confirmed = await post('/api/v1/me/email/confirm', { token: tokenFrom(link) });
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.deepEqual(json(confirmed), { email: newEmail, email_verified: true });
    const row = await userRow(account.id);
    assert.equal(row.email, newEmail);
    assert.ok(row.email_verified_at instanceof Date, 'the link proved the address');

    const me = json(await app.inject({ url: '/api/v1/me', headers: auth }));
    assert.equal(me.email, newEmail);
    assert.equal(me.email_verified, true);

    const [notice] = await mailsWithLink(account.email, '/account/email/revert', 1);
    assert.ok(notice?.text.includes(newEmail), 'the old address is told where the account went');
    linkTo(notice, '/account/email/revert');

    // The account signs in with its new address, not the old one.
    const byNew = await post('/api/v1/login/json', { email: newEmail, password: account.password });
    assert.equal(byNew.statusCode, 200, byNew.body);
    const byOld = await post('/api/v1/login/json', { email: account.email, password: account.password });
    assertProblem(byOld, 401, 'INVALID_CREDENTIALS');

    assert.equal((await audits('email_change_requested', account.id)).length, 1);
    const changed = await audits('email_changed', account.id);
    assert.equal(changed.length, 1);
    assert.deepEqual(changed[0]?.details, { old_email: account.email, new_email: newEmail });
  });

  test('an address another account has gets the same 202, and that address is told an account exists; nothing changes', async () => {
    const { account, auth } = await signedIn();
    const other = await createAccount(app);
    // Its verification mail first, so that the next one to arrive is ours.
    const before = (await smtp.waitFor(other.email)).length;
    const free = await request(auth, { new_email: freshAddress(), password: account.password });
    const taken = await request(auth, { new_email: other.email, password: account.password });
    assert.equal(taken.statusCode, 202, taken.body);
    assert.deepEqual(json(taken), json(free), 'the answer reveals nothing');

    const mails = await smtp.waitFor(other.email, before + 1);
    const mail = mails[before];
    assert.match(String(mail?.subject), /Someone tried to move an account to your address/);
    assert.ok(!mail?.links.some((l) => l.includes('/account/email/')), 'no link that changes anything');
    assert.equal((await userRow(account.id)).email, account.email);
    assert.equal((await userRow(other.id)).email, other.email);
    const rows = await app.gatehouse.db
      .selectFrom('email_changes')
      .select('new_email')
      .where('user_id', '=', account.id)
      .execute();
    assert.ok(!rows.some((r) => r.new_email === other.email), 'no pending change to a taken address');
  });

  test('a confirmation link works once: the second use answers 422 TOKEN_INVALID_OR_EXPIRED', async () => {
    const { account, auth } = await signedIn();
    const token = await requestConfirmToken(account, auth, freshAddress());
    assert.equal((await post('/api/v1/me/email/confirm', { token })).statusCode, 200);
    assertProblem(await post('/api/v1/me/email/confirm', { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
  });

  test('a confirmation link expires after 24 hours', async () => {
    const { account, auth } = await signedIn();
    const token = await requestConfirmToken(account, auth, freshAddress());
    clock.advance(DAY + 1000);
    assertProblem(await post('/api/v1/me/email/confirm', { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assert.equal((await userRow(account.id)).email, account.email);
  });

  test('a newer request voids the older link', async () => {
    const { account, auth } = await signedIn();
    const first = await requestConfirmToken(account, auth, freshAddress());
    const secondAddress = freshAddress();
    const second = await requestConfirmToken(account, auth, secondAddress);
    assertProblem(await post('/api/v1/me/email/confirm', { token: first }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    const res = await post('/api/v1/me/email/confirm', { token: second });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((await userRow(account.id)).email, secondAddress);
  });

  test('unknown and malformed confirmation and revert tokens are refused', async () => {
    for (const path of ['/api/v1/me/email/confirm', '/api/v1/me/email/revert']) {
      assertProblem(await post(path, { token: 'x'.repeat(43) }), 422, 'TOKEN_INVALID_OR_EXPIRED');
      assertProblem(await post(path, { token: 12345 }), 400, 'MALFORMED_REQUEST');
      const missing = await post(path, {});
      assert.ok([400, 422].includes(missing.statusCode), missing.body);
      assert.notEqual(json(missing).code, undefined);
    }
  });

  test('reverting restores the old address, verified, signs out every session, and voids the change', async () => {
    const { account, tokens, auth } = await signedIn();
    const other = await login(app, account);
    const newEmail = freshAddress();
    const revertToken = await confirmAndRevertToken(account, auth, newEmail);

    // The undo page asks before it acts.
    const page = await app.inject({ method: 'GET', url: `/account/email/revert?token=${revertToken}` });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /Undo the change/);

    const res = await post('/api/v1/me/email/revert', { token: revertToken });
    assert.equal(res.statusCode, 200, res.body);
    const body = json(res);
    assert.equal(body.email, account.email);
    assert.equal(body.email_verified, true);
    assert.ok(Number(body.sessions_revoked) >= 2, res.body);

    const row = await userRow(account.id);
    assert.equal(row.email, account.email);
    assert.ok(row.email_verified_at instanceof Date);

    // The old access tokens and refresh tokens of every session are refused.
    for (const t of [tokens, other]) {
      assertProblem(await app.inject({ url: '/api/v1/me', headers: bearer(t.access_token) }), 401, 'TOKEN_INVALID');
      const refreshed = await refreshRequest(app, t.refresh_token);
      assert.equal(refreshed.statusCode, 401, refreshed.body);
    }

    const reverted = await audits('email_change_reverted', account.id);
    assert.equal(reverted.length, 1);
    assert.equal((reverted[0]?.details as Record<string, unknown> | undefined)?.restored_email, account.email);
    assertProblem(await post('/api/v1/me/email/revert', { token: revertToken }), 422, 'TOKEN_INVALID_OR_EXPIRED');
  });

  test('reverting an older change voids the revert link of a later one, so that it cannot be undone again', async () => {
    const { account, auth } = await signedIn();
    const middle = freshAddress();
    const firstRevert = await confirmAndRevertToken(account, auth, middle);
    // The account now has `middle`; a second change is noticed to `middle`.
    const moved = { ...account, email: middle };
    const secondRevert = await confirmAndRevertToken(moved, auth, freshAddress());
    assert.equal((await post('/api/v1/me/email/revert', { token: firstRevert })).statusCode, 200);
    assert.equal((await userRow(account.id)).email, account.email);
    assertProblem(await post('/api/v1/me/email/revert', { token: secondRevert }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assert.equal((await userRow(account.id)).email, account.email);
  });

  test('a revert link expires after 7 days', async () => {
    const { account, auth } = await signedIn();
    const newEmail = freshAddress();
    const revertToken = await confirmAndRevertToken(account, auth, newEmail);
    clock.advance(7 * DAY + 1000);
    assertProblem(await post('/api/v1/me/email/revert', { token: revertToken }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assert.equal((await userRow(account.id)).email, newEmail);
  });

  test('an address another account took before the confirmation answers 409 EMAIL_TAKEN', async () => {
    const { account, auth } = await signedIn();
    const newEmail = freshAddress();
    const token = await requestConfirmToken(account, auth, newEmail);
    const taker = await createAccount(app, { email: newEmail });
    assertProblem(await post('/api/v1/me/email/confirm', { token }), 409, 'EMAIL_TAKEN');
    assert.equal((await userRow(account.id)).email, account.email);
    assert.equal((await userRow(taker.id)).email, newEmail);
  });

  test('two accounts confirming one address at once: one wins, the other answers 409 EMAIL_TAKEN, never a 500', async () => {
    const newEmail = freshAddress();
    const a = await signedIn();
    const b = await signedIn();
    const tokenA = await requestConfirmToken(a.account, a.auth, newEmail);
    const tokenB = await requestConfirmToken(b.account, b.auth, newEmail);
    const results = await Promise.all([
      post('/api/v1/me/email/confirm', { token: tokenA }),
      post('/api/v1/me/email/confirm', { token: tokenB }),
    ]);
    const statuses = results.map((r) => r.statusCode).sort();
    assert.deepEqual(statuses, [200, 409], results.map((r) => r.body).join('\n'));
    const loser = results.find((r) => r.statusCode === 409);
    assertProblem(loser as never, 409, 'EMAIL_TAKEN');
    const owners = await app.gatehouse.db.selectFrom('users').select('id').where('email', '=', newEmail).execute();
    assert.equal(owners.length, 1);
  });

  test('one confirmation link sent twice at once is spent once', async () => {
    const { account, auth } = await signedIn();
    const token = await requestConfirmToken(account, auth, freshAddress());
    const results = await Promise.all([
      post('/api/v1/me/email/confirm', { token }),
      post('/api/v1/me/email/confirm', { token }),
    ]);
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 422], results.map((r) => r.body).join('\n'));
    assert.equal((await audits('email_changed', account.id)).length, 1);
  });

  test('without a bearer token the request answers 401 UNAUTHORIZED, whatever the body', async () => {
    assertProblem(await post('/api/v1/me/email', { new_email: freshAddress(), password: 'x' }), 401, 'UNAUTHORIZED');
    assertProblem(await post('/api/v1/me/email', 'not json at all'), 401, 'UNAUTHORIZED');
  });

  test('an invalid new address answers 422 VALIDATION_ERROR naming new_email', async () => {
    const { account, auth } = await signedIn();
    for (const bad of ['not-an-address', '', 'a@b', '"Ann" <ann@example.com>']) {
      const body = assertProblem(
        await request(auth, { new_email: bad, password: account.password }),
        422,
        'VALIDATION_ERROR',
      );
      assert.ok(
        (body.errors as { field: string }[]).some((e) => e.field === 'new_email'),
        JSON.stringify(body),
      );
    }
    assertProblem(await request(auth, { password: account.password }), 422, 'VALIDATION_ERROR');
    assertProblem(await request(auth, { new_email: 42, password: account.password }), 400, 'MALFORMED_REQUEST');
  });

  test('a wrong password answers 401 INVALID_CREDENTIALS, a missing one 422 VALIDATION_ERROR; nothing is mailed', async () => {
    const { account, auth } = await signedIn();
    const newEmail = freshAddress();
    assertProblem(await request(auth, { new_email: newEmail, password: strongPassword() }), 401, 'INVALID_CREDENTIALS');
    const missing = assertProblem(await request(auth, { new_email: newEmail }), 422, 'VALIDATION_ERROR');
    assert.ok((missing.errors as { field: string }[]).some((e) => e.field === 'password'));
    const failures = await app.gatehouse.db
      .selectFrom('login_attempts')
      .select('failure_reason')
      .where('user_id', '=', account.id)
      .where('success', '=', false)
      .execute();
    assert.ok(
      failures.some((f) => f.failure_reason === 'invalid_password'),
      'counted as a failed login',
    );
    assert.equal((await audits('email_change_requested', account.id)).length, 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(smtp.to(newEmail).length, 0);
  });

  test('the current address, in any case, answers 422 EMAIL_UNCHANGED', async () => {
    const { account, auth } = await signedIn();
    for (const same of [account.email, account.email.toUpperCase(), ` ${account.email} `]) {
      assertProblem(await request(auth, { new_email: same, password: account.password }), 422, 'EMAIL_UNCHANGED');
    }
  });

  test('with a second factor on, the session must have authenticated recently: 403 REAUTHENTICATION_REQUIRED, then 202 after POST /reauthenticate', async () => {
    const { account, tokens, auth } = await signedIn();
    const { authenticator } = await enrol(app, tokens.access_token, clock);
    clock.advance(301_000);
    const newEmail = freshAddress();
    assertProblem(
      await request(auth, { new_email: newEmail, password: account.password }),
      403,
      'REAUTHENTICATION_REQUIRED',
    );
    const step = await post('/api/v1/reauthenticate', { password: account.password, code: authenticator.code() }, auth);
    assert.equal(step.statusCode, 200, step.body);
    assert.equal((await request(auth, { new_email: newEmail, password: account.password })).statusCode, 202);
  });

  test('an account without a password (made by a provider sign-in) needs no password, only a recent authentication', async () => {
    const { account, auth } = await signedIn();
    await app.gatehouse.db.updateTable('users').set({ has_password: false }).where('id', '=', account.id).execute();
    const newEmail = freshAddress();
    const res = await request(auth, { new_email: newEmail });
    assert.equal(res.statusCode, 202, res.body);
    await smtp.waitFor(newEmail);
    clock.advance(301_000);
    assertProblem(await request(auth, { new_email: freshAddress() }), 403, 'REAUTHENTICATION_REQUIRED');
  });

  test('a disabled account cannot take the new address', async () => {
    const { account, auth } = await signedIn();
    const token = await requestConfirmToken(account, auth, freshAddress());
    await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', account.id).execute();
    assertProblem(await post('/api/v1/me/email/confirm', { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assert.equal((await userRow(account.id)).email, account.email);
  });

  test('the link pages show a button for a live link and "no longer works" for a dead one, and a GET spends nothing', async () => {
    const { account, auth } = await signedIn();
    const token = await requestConfirmToken(account, auth, freshAddress());
    for (const path of ['/account/email/confirm', '/account/email/revert']) {
      const dead = await app.inject({ url: `${path}?token=${'x'.repeat(43)}` });
      assert.equal(dead.statusCode, 200);
      assert.match(dead.body, /This link no longer works/);
      assert.doesNotMatch(dead.body, /name="token"/);
    }
    const live = await app.inject({ url: `/account/email/confirm?token=${token}` });
    assert.match(live.body, /Confirm new address/);
    assert.ok(live.body.includes(`value="${token}"`));
    // The revert page does not take a confirmation token.
    assert.match((await app.inject({ url: `/account/email/revert?token=${token}` })).body, /This link no longer works/);
    assert.equal((await userRow(account.id)).email, account.email);
    assert.equal((await post('/api/v1/me/email/confirm', { token })).statusCode, 200);
  });

  test('the mailed tokens are stored only as hashes', async () => {
    const { account, auth } = await signedIn();
    const token = await requestConfirmToken(account, auth, freshAddress());
    const rows = await app.gatehouse.db
      .selectFrom('email_changes')
      .selectAll()
      .where('user_id', '=', account.id)
      .execute();
    assert.equal(rows.length, 1);
    assert.ok(!JSON.stringify(rows).includes(token));
  });
});

describe('change of e-mail address: the links’ tokens never reach a log line', () => {
  const logs = logCapture();
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({ LOG_LEVEL: 'debug' }, { logger: { stream: logs.stream } }));
  });
  after(() => close());

  test('request, the link pages, confirmation and undo log neither token', async () => {
    const account = await createAccount(app);
    const { access_token } = await login(app, account);
    const newEmail = `${uniqueName('new')}@example.org`;
    const asked = await app.inject({
      method: 'POST',
      url: '/api/v1/me/email',
      headers: bearer(access_token),
      payload: { new_email: newEmail, password: account.password },
    });
    assert.equal(asked.statusCode, 202, asked.body);
    const [mail] = await smtp.waitFor(newEmail);
    const confirmLink = mail?.links.find((l) => l.includes('/account/email/confirm?token='));
    assert.ok(confirmLink);
    const confirmToken = tokenFrom(confirmLink);
    await app.inject({ url: `/account/email/confirm?token=${confirmToken}` });
    const confirmed = await app.inject({
      method: 'POST',
      url: '/api/v1/me/email/confirm',
      payload: { token: confirmToken },
    });
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    const notices = await smtp.waitFor(account.email, 2);
    const revertLink = notices.flatMap((m) => m.links).find((l) => l.includes('/account/email/revert?token='));
    assert.ok(revertLink);
    const revertToken = tokenFrom(revertLink);
    await app.inject({ url: `/account/email/revert?token=${revertToken}` });
    const reverted = await app.inject({
      method: 'POST',
      url: '/api/v1/me/email/revert',
      payload: { token: revertToken },
    });
    assert.equal(reverted.statusCode, 200, reverted.body);
    assert.ok(logs.lines.length > 0, 'the app logged');
    for (const secret of [confirmToken, revertToken, account.password]) {
      assert.ok(!logs.lines.some((l) => l.includes(secret)), `a log line holds ${secret.slice(0, 6)}…`);
    }
  });
});
