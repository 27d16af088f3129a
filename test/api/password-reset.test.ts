import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { lockoutSubject } from '../../src/infra/lockout.ts';
import { json, strongPassword } from '../helpers.ts';
import { registerByMail, startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';
import { testClock } from '../support/clock.ts';
import { recordFailures } from '../support/lockout.ts';
import { assertProblem } from '../support/problem.ts';

type Body = Record<string, unknown>;

const clock = testClock();

describe('forgot and reset password', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    // Proxies are trusted here, so that forwarded headers would be believed if anything read them for links.
    ({ app, smtp, close } = await startAppWithMail({ TRUST_PROXY: 'true' }, { clock }));
  });
  after(() => close());

  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json', ...headers },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });

  const login = (username: string, password: string) => post('/api/v1/login/json', { username, password });

  const account = (overrides: Body = {}, verify = true) => registerByMail(app, smtp, overrides, { verify });

  /** Asks for a reset and returns the token from the mail that arrives. */
  async function resetToken(email: string, headers: Record<string, string> = {}): Promise<string> {
    const before = smtp.to(email).length;
    const res = await post('/api/v1/forgot-password', { email }, headers);
    assert.equal(res.statusCode, 202, res.body);
    const mails = await smtp.waitFor(email, before + 1);
    const mail = mails[mails.length - 1];
    const link = mail?.links.find((l) => l.includes('/reset-password?token='));
    assert.ok(link, String(mail?.links));
    return tokenFrom(link);
  }

  const reset = (token: string, password: string, confirm = password) =>
    post('/api/v1/reset-password', { token, new_password: password, confirm_password: confirm });

  test('the full flow: forgot → mailed link → reset 204 → every session revoked, old password refused, new one works', async () => {
    const user = await account();
    const session = await login(user.username, user.password);
    assert.equal(session.statusCode, 200, session.body);
    const { access_token, refresh_token } = json<{ access_token: string; refresh_token: string }>(session);

    const token = await resetToken(user.email);
    const mailed = smtp.to(user.email)[1];
    assert.equal(mailed?.subject, 'Reset your password');
    assert.match(mailed?.text ?? '', /valid for 1 hour/);
    const password = strongPassword();
    const res = await reset(token, password);
    assert.equal(res.statusCode, 204, res.body);
    assert.equal(res.body, '');

    const me = await app.inject({
      method: 'GET',
      url: '/api/v1/me',
      headers: { authorization: `Bearer ${access_token}` },
    });
    assertProblem(me, 401, 'TOKEN_INVALID');
    assert.equal((await post('/api/v1/refresh', { refresh_token })).statusCode, 401);
    assertProblem(await login(user.username, user.password), 401, 'INVALID_CREDENTIALS');
    assert.equal((await login(user.email, password)).statusCode, 200);

    const notice = await smtp.waitFor(user.email, 3);
    assert.equal(notice[2]?.subject, 'Your password was changed');
    assert.ok(notice[2]?.links.includes('http://gatehouse.test/forgot-password'));

    const actions = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('action')
      .where('user_id', '=', user.id)
      .where('action', 'in', ['password_reset_request', 'password_reset'])
      .orderBy('id')
      .execute();
    assert.deepEqual(
      actions.map((a) => a.action),
      ['password_reset_request', 'password_reset'],
    );
  });

  test('forgot-password answers 202 with the same body for a known and an unknown address, and mails only the known one', async () => {
    const user = await account();
    const unknown = `nobody-${user.email}`;
    const known = await post('/api/v1/forgot-password', { email: user.email });
    const stranger = await post('/api/v1/forgot-password', { email: unknown });
    assert.equal(known.statusCode, 202);
    assert.equal(stranger.statusCode, 202);
    assert.equal(known.body, stranger.body);
    assert.deepEqual(Object.keys(json(known)), ['message']);
    assert.equal(known.headers['content-type'], stranger.headers['content-type']);
    await smtp.waitFor(user.email, 2);
    await app.gatehouse.outbox.drain();
    assert.equal(smtp.to(unknown).length, 0);
    // The unknown address ran the same writes in a savepoint that was rolled back: nothing is left.
    const { db } = app.gatehouse;
    assert.deepEqual(await db.selectFrom('one_time_tokens').select('id').where('email', '=', unknown).execute(), []);
    assert.deepEqual(await db.selectFrom('email_outbox').select('id').where('to_address', '=', unknown).execute(), []);
    const audits = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select(['user_id', 'details'])
      .where('action', '=', 'password_reset_request')
      .where('user_id', 'is', null)
      .execute();
    assert.ok(audits.some((a) => (a.details as Body).email === unknown));
  });

  test('both answers take the same path: neither hashes a password nor waits for SMTP', async () => {
    const user = await account();
    await smtp.stop();
    try {
      const hashesBefore = app.gatehouse.hashPool.completed;
      const known = await post('/api/v1/forgot-password', { email: user.email });
      const stranger = await post('/api/v1/forgot-password', { email: `nobody-${user.email}` });
      assert.equal(known.statusCode, 202);
      assert.equal(known.body, stranger.body);
      assert.equal(app.gatehouse.hashPool.completed, hashesBefore);
      // The reset mail waits in the outbox while SMTP is down.
      const pending = await app.gatehouse.db
        .selectFrom('email_outbox')
        .select('status')
        .where('to_address', '=', user.email)
        .where('template', '=', 'reset_password')
        .execute();
      assert.deepEqual(
        pending.map((p) => p.status),
        ['pending'],
      );
    } finally {
      await smtp.restart();
    }
    await smtp.waitFor(user.email, 2);
  });

  test('links come from PUBLIC_URL, never from Host or X-Forwarded-Host', async () => {
    const user = await account();
    const token = await resetToken(user.email, {
      host: 'evil.example',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
      forwarded: 'host=evil.example;proto=https',
    });
    const mails = smtp.to(user.email);
    const mail = mails[mails.length - 1];
    assert.ok(mail);
    for (const link of mail.links) assert.ok(link.startsWith('http://gatehouse.test/'), link);
    assert.ok(!mail.text.includes('evil.example') && !mail.html.includes('evil.example'));
    assert.ok(mail.links.includes(`http://gatehouse.test/reset-password?token=${token}`));
  });

  test('a reset token works once', async () => {
    const user = await account();
    const token = await resetToken(user.email);
    assert.equal((await reset(token, strongPassword())).statusCode, 204);
    assertProblem(await reset(token, strongPassword()), 422, 'TOKEN_INVALID_OR_EXPIRED');
  });

  test('of two concurrent resets with one token exactly one succeeds', async () => {
    const user = await account();
    const token = await resetToken(user.email);
    const results = await Promise.all([reset(token, strongPassword()), reset(token, strongPassword())]);
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [204, 422]);
  });

  test('a reset token expires after 1 hour', async () => {
    const user = await account();
    const stale = await resetToken(user.email);
    const other = await account();
    const fresh = await resetToken(other.email);
    const issued = clock.now();
    try {
      clock.set(new Date(issued.getTime() + 3600_000 - 60_000));
      assert.equal((await reset(fresh, strongPassword())).statusCode, 204);
      clock.set(new Date(issued.getTime() + 3600_000 + 1_000));
      assertProblem(await reset(stale, strongPassword()), 422, 'TOKEN_INVALID_OR_EXPIRED');
    } finally {
      clock.set(issued);
    }
    assert.equal((await login(user.username, user.password)).statusCode, 200);
  });

  test('a newer reset link voids the older ones', async () => {
    const user = await account();
    const older = await resetToken(user.email);
    const newer = await resetToken(user.email);
    assertProblem(await reset(older, strongPassword()), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assert.equal((await reset(newer, strongPassword())).statusCode, 204);
  });

  test('a reset clears the lockout of the account, from every source', async () => {
    const user = await account();
    const { lockout } = app.gatehouse;
    const subject = lockoutSubject(user, user.username);
    for (const source of ['untrusted', 'device:someone'] as const) {
      await recordFailures(lockout, subject, lockout.threshold, source);
      assert.equal((await lockout.check(subject, source)).locked, true);
    }
    const token = await resetToken(user.email);
    const password = strongPassword();
    assert.equal((await reset(token, password)).statusCode, 204);
    assert.equal((await lockout.check(subject, 'untrusted')).locked, false);
    assert.equal((await lockout.check(subject, 'device:someone')).locked, false);
    assert.equal((await login(user.username, password)).statusCode, 200);
    const unlocked = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'account_unlocked')
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(unlocked.details, { by_user_id: null, via: 'password_reset' });
  });

  test('a reset marks the email verified', async () => {
    const user = await account({}, false);
    assertProblem(await login(user.username, user.password), 403, 'EMAIL_NOT_VERIFIED');
    const token = await resetToken(user.email);
    const password = strongPassword();
    assert.equal((await reset(token, password)).statusCode, 204);
    const row = await app.gatehouse.db
      .selectFrom('users')
      .select('email_verified_at')
      .where('id', '=', user.id)
      .executeTakeFirstOrThrow();
    assert.ok(row.email_verified_at instanceof Date);
    assert.equal((await login(user.username, password)).statusCode, 200);
  });

  test('the new password meets the policy and the breach check; a refused one leaves the token usable', async () => {
    const user = await account();
    const token = await resetToken(user.email);
    const policy = assertProblem(await reset(token, 'short'), 422, 'PASSWORD_POLICY');
    assert.ok((policy.issues as string[]).includes('Password must be at least 12 characters long'));
    const personal = assertProblem(await reset(token, `Xy1!${user.username}`), 422, 'PASSWORD_POLICY');
    assert.ok((personal.issues as string[]).includes('Password must not contain your username'));
    const breached = assertProblem(await reset(token, 'S0nyer1c$$0n'), 422, 'PASSWORD_BREACHED');
    assert.equal(breached.recommendation, 'Please choose a different password that has not been compromised');
    const password = strongPassword();
    assertProblem(await reset(token, password, `${password}x`), 422, 'PASSWORD_MISMATCH');
    assertProblem(await reset(token, user.password), 422, 'PASSWORD_REUSED');
    assert.equal((await reset(token, password)).statusCode, 204);
  });

  test('bad input gets a clear problem, never a 500', async () => {
    assertProblem(await reset('A'.repeat(43), strongPassword()), 422, 'TOKEN_INVALID_OR_EXPIRED');
    const missing = assertProblem(await post('/api/v1/reset-password', {}), 422, 'VALIDATION_ERROR');
    assert.deepEqual((missing.errors as Body[]).map((e) => e.field).sort(), [
      'confirm_password',
      'new_password',
      'token',
    ]);
    assertProblem(await reset('', strongPassword()), 422, 'VALIDATION_ERROR');
    assertProblem(
      await post('/api/v1/reset-password', { token: 1, new_password: 'x', confirm_password: 'x' }),
      400,
      'MALFORMED_REQUEST',
    );
    const nul = assertProblem(await reset('A'.repeat(43), 'Abc\u0000def-12345!'), 422, 'VALIDATION_ERROR');
    assert.equal((nul.errors as Body[])[0]?.field, 'new_password');
    assertProblem(
      await post('/api/v1/reset-password', {
        token: 'x',
        new_password: `Aa1!${'x'.repeat(20_000)}`,
        confirm_password: 'x',
      }),
      413,
      'PAYLOAD_TOO_LARGE',
    );
    const email = assertProblem(await post('/api/v1/forgot-password', { email: 'nope' }), 422, 'VALIDATION_ERROR');
    assert.equal((email.errors as Body[])[0]?.field, 'email');
    assertProblem(await post('/api/v1/forgot-password', { email: ['a@example.com'] }), 400, 'MALFORMED_REQUEST');
    assertProblem(await post('/api/v1/forgot-password', {}), 422, 'VALIDATION_ERROR');
  });

  test('a disabled account is mailed nothing, with the same answer', async () => {
    const user = await account();
    await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', user.id).execute();
    const res = await post('/api/v1/forgot-password', { email: user.email });
    assert.equal(res.statusCode, 202);
    await app.gatehouse.outbox.drain();
    assert.equal(smtp.to(user.email).length, 1);
  });

  test("the reset mail is in the user's language and escapes the name", async () => {
    const user = await account({ language_code: 'es', first_name: '<b>Lú</b>' });
    await resetToken(user.email);
    const mails = smtp.to(user.email);
    const mail = mails[mails.length - 1];
    assert.equal(mail?.subject, 'Restablece tu contraseña');
    assert.match(mail?.text ?? '', /^Hola <b>Lú<\/b>:/);
    assert.ok(mail?.html.includes('Hola &lt;b&gt;Lú&lt;/b&gt;:'));
    assert.ok(!mail?.html.includes('<b>Lú'));
  });
});
