import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { bearer, claims, enrol, postJson } from '../support/mfa.ts';
import { addPasskey, loginOptions, loginVerify, registrationOptions } from '../support/passkeys.ts';
import { assertProblem } from '../support/problem.ts';
import { SoftAuthenticator } from '../support/webauthn-authenticator.ts';
import { createAccount, login, loginRequest, startAuthApp, type Tokens } from './auth-helpers.ts';

describe('passkeys', () => {
  const clock = testClock();
  let app: FastifyInstance;

  before(async () => {
    app = await startAuthApp({}, { clock });
  });
  after(() => app.close());

  const auditRows = async (userId: number) =>
    app.gatehouse.db
      .selectFrom('audit_logs')
      .select(['action', 'details'])
      .where('user_id', '=', userId)
      .orderBy('id')
      .execute();

  async function signedIn() {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    return { account, tokens };
  }

  test('adding a passkey: options exclude the existing ones, verify answers 201, audits and mails', async () => {
    const { account, tokens } = await signedIn();
    const first = await registrationOptions(app, tokens.access_token);
    assert.equal(first.rp.id, 'gatehouse.test');
    assert.deepEqual(first.authenticatorSelection, {
      residentKey: 'preferred',
      userVerification: 'preferred',
      requireResidentKey: false,
    });
    assert.deepEqual(first.excludeCredentials, []);
    const { passkey } = await addPasskey(app, tokens.access_token, new SoftAuthenticator(), 'My laptop');
    assert.equal(passkey.name, 'My laptop');
    assert.match(passkey.id, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(passkey.created_at)));
    const again = await registrationOptions(app, tokens.access_token);
    assert.equal((again.excludeCredentials as unknown[]).length, 1);

    const rows = await auditRows(account.id);
    assert.ok(rows.some((r) => r.action === 'passkey_added'));
    const mails = await app.gatehouse.db
      .selectFrom('email_outbox')
      .select(['template', 'subject'])
      .where('to_address', '=', account.email)
      .execute();
    assert.ok(mails.some((m) => m.template === 'passkey_added'));
  });

  test("the passkey mail is in the user's language", async () => {
    const account = await createAccount(app, { language_code: 'es' });
    const tokens = await login(app, account);
    await addPasskey(app, tokens.access_token);
    const mail = await app.gatehouse.db
      .selectFrom('email_outbox')
      .select('subject')
      .where('to_address', '=', account.email)
      .where('template', '=', 'passkey_added')
      .executeTakeFirstOrThrow();
    assert.match(mail.subject, /llave de acceso/);
  });

  test('adding needs a recent authentication', async () => {
    const { tokens } = await signedIn();
    clock.advance(10 * 60_000);
    try {
      const res = await postJson(app, '/api/v1/passkeys/register/options', {}, bearer(tokens.access_token));
      assertProblem(res, 403, 'REAUTHENTICATION_REQUIRED');
    } finally {
      clock.advance(-10 * 60_000);
    }
  });

  test("list, rename and remove; another user's passkey is 404", async () => {
    const { account, tokens } = await signedIn();
    const { passkey } = await addPasskey(app, tokens.access_token);
    const list = await app.inject({ url: '/api/v1/passkeys', headers: bearer(tokens.access_token) });
    assert.equal(list.statusCode, 200, list.body);
    const body = json<{ items: { id: string; name: string }[]; next_cursor: null }>(list);
    assert.deepEqual(
      body.items.map((p) => [p.id, p.name]),
      [[passkey.id, 'Laptop']],
    );
    assert.equal(body.next_cursor, null);

    const other = await signedIn();
    const url = `/api/v1/passkeys/${passkey.id}`;
    const stolen = await app.inject({
      method: 'PATCH',
      url,
      headers: bearer(other.tokens.access_token),
      payload: { name: 'mine' },
    });
    assertProblem(stolen, 404, 'NOT_FOUND');
    assertProblem(
      await app.inject({ method: 'DELETE', url, headers: bearer(other.tokens.access_token) }),
      404,
      'NOT_FOUND',
    );

    const renamed = await app.inject({
      method: 'PATCH',
      url,
      headers: bearer(tokens.access_token),
      payload: { name: ' Phone ' },
    });
    assert.equal(renamed.statusCode, 200, renamed.body);
    assert.equal(json(renamed).name, 'Phone');
    assertProblem(
      await app.inject({ method: 'PATCH', url, headers: bearer(tokens.access_token), payload: { name: '' } }),
      422,
      'VALIDATION_ERROR',
    );
    const removed = await app.inject({ method: 'DELETE', url, headers: bearer(tokens.access_token) });
    assert.equal(removed.statusCode, 204, removed.body);
    assertProblem(await app.inject({ method: 'DELETE', url, headers: bearer(tokens.access_token) }), 404, 'NOT_FOUND');
    assert.ok((await auditRows(account.id)).some((r) => r.action === 'passkey_removed'));
  });

  test('a passkey that is the only way in cannot be removed', async () => {
    const { account, tokens } = await signedIn();
    const { passkey } = await addPasskey(app, tokens.access_token);
    // An account without a password (none today, but the rule holds generally).
    await app.gatehouse.db.updateTable('users').set({ password_hash: '' }).where('id', '=', account.id).execute();
    const url = `/api/v1/passkeys/${passkey.id}`;
    assertProblem(await app.inject({ method: 'DELETE', url, headers: bearer(tokens.access_token) }), 409, 'CONFLICT');
    const second = await addPasskey(app, tokens.access_token);
    assert.equal((await app.inject({ method: 'DELETE', url, headers: bearer(tokens.access_token) })).statusCode, 204);
    assertProblem(
      await app.inject({
        method: 'DELETE',
        url: `/api/v1/passkeys/${second.passkey.id}`,
        headers: bearer(tokens.access_token),
      }),
      409,
      'CONFLICT',
    );
  });

  test('login with a discoverable passkey and no username: tokens with amr ["webauthn"], audited with the method', async () => {
    const { account, tokens } = await signedIn();
    const { authenticator } = await addPasskey(app, tokens.access_token);
    const options = await loginOptions(app);
    assert.equal(options.allowCredentials, undefined);
    assert.equal(options.userVerification, 'required');
    const res = await loginVerify(app, options.challenge_id, authenticator.authenticate(options));
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    const issued = json<Tokens>(res);
    assert.deepEqual(claims(issued.access_token).amr, ['webauthn']);
    assert.equal(claims(issued.access_token).sub, account.uuid);
    const me = await app.inject({ url: '/api/v1/me', headers: bearer(issued.access_token) });
    assert.equal(me.statusCode, 200, me.body);
    const success = (await auditRows(account.id)).filter((r) => r.action === 'login_success').at(-1);
    assert.equal((success?.details as Record<string, unknown> | undefined)?.method, 'webauthn');
    const list = json<{ items: { last_used_at: string | null }[] }>(
      await app.inject({ url: '/api/v1/passkeys', headers: bearer(tokens.access_token) }),
    );
    assert.ok(list.items[0]?.last_used_at);
  });

  test("with a username, allowCredentials lists that user's passkeys; an unknown name gets the same shape", async () => {
    const { account, tokens } = await signedIn();
    const { authenticator } = await addPasskey(app, tokens.access_token);
    const options = await loginOptions(app, { username: account.username.toUpperCase() });
    assert.deepEqual(
      options.allowCredentials?.map((c) => c.id),
      authenticator.credentials.map((c) => c.id),
    );
    const res = await loginVerify(app, options.challenge_id, authenticator.authenticate(options));
    assert.equal(res.statusCode, 200, res.body);

    const unknown = await loginOptions(app, { username: 'nobody-here-at-all' });
    const again = await loginOptions(app, { username: 'nobody-here-at-all' });
    assert.equal(unknown.allowCredentials?.length, 1);
    assert.deepEqual(unknown.allowCredentials, again.allowCredentials);
    assert.deepEqual(Object.keys(unknown).sort(), Object.keys(options).sort());
  });

  test('a disabled account is refused and audited; an unverified one is refused like password login', async () => {
    const { account, tokens } = await signedIn();
    const { authenticator } = await addPasskey(app, tokens.access_token);
    await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', account.id).execute();
    let options = await loginOptions(app);
    assertProblem(
      await loginVerify(app, options.challenge_id, authenticator.authenticate(options)),
      403,
      'ACCOUNT_DISABLED',
    );
    const failure = (await auditRows(account.id)).filter((r) => r.action === 'login_failure').at(-1);
    assert.equal((failure?.details as Record<string, unknown> | undefined)?.reason, 'account_disabled');

    await app.gatehouse.db
      .updateTable('users')
      .set({ is_active: true, email_verified_at: null })
      .where('id', '=', account.id)
      .execute();
    options = await loginOptions(app);
    assertProblem(
      await loginVerify(app, options.challenge_id, authenticator.authenticate(options)),
      403,
      'EMAIL_NOT_VERIFIED',
    );
  });

  test('with TOTP on, a passkey is also a second step: methods lists webauthn, amr is ["pwd","webauthn"]', async () => {
    const { account, tokens } = await signedIn();
    const before = await loginRequest(app, account.username, account.password);
    assert.equal(before.statusCode, 200, 'a passkey alone does not ask password login for a second factor');
    const { authenticator } = await addPasskey(app, tokens.access_token);
    assert.equal((await loginRequest(app, account.username, account.password)).statusCode, 200);
    await enrol(app, tokens.access_token, clock);

    const challenge = assertProblem(await loginRequest(app, account.username, account.password), 403, 'MFA_REQUIRED');
    assert.deepEqual(challenge.methods, ['totp', 'backup_code', 'webauthn']);
    const optionsRes = await postJson(app, '/api/v1/login/mfa/webauthn-options', { mfa_token: challenge.mfa_token });
    assert.equal(optionsRes.statusCode, 200, optionsRes.body);
    const options = json<{ challenge: string; allowCredentials: { id: string }[] }>(optionsRes);
    assert.equal(options.allowCredentials.length, 1);
    const res = await postJson(app, '/api/v1/login/mfa', {
      mfa_token: challenge.mfa_token,
      webauthn_response: authenticator.authenticate(options),
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(claims(json<Tokens>(res).access_token).amr, ['pwd', 'webauthn']);
    // The token is spent.
    assertProblem(
      await postJson(app, '/api/v1/login/mfa/webauthn-options', { mfa_token: challenge.mfa_token }),
      401,
      'TOKEN_INVALID',
    );
  });

  test("a second step with another user's passkey is refused and nothing is issued", async () => {
    const victim = await signedIn();
    await addPasskey(app, victim.tokens.access_token);
    await enrol(app, victim.tokens.access_token, clock);
    const attacker = await signedIn();
    const { authenticator } = await addPasskey(app, attacker.tokens.access_token);
    const challenge = assertProblem(
      await loginRequest(app, victim.account.username, victim.account.password),
      403,
      'MFA_REQUIRED',
    );
    const options = json<{ challenge: string }>(
      await postJson(app, '/api/v1/login/mfa/webauthn-options', { mfa_token: challenge.mfa_token }),
    );
    const res = await postJson(app, '/api/v1/login/mfa', {
      mfa_token: challenge.mfa_token,
      webauthn_response: authenticator.authenticate(options),
    });
    assertProblem(res, 401, 'PASSKEY_INVALID');
    assert.ok((await auditRows(victim.account.id)).some((r) => r.action === 'passkey_refused'));
  });

  test('without a passkey, MFA_REQUIRED does not offer webauthn and its options are 409', async () => {
    const { account, tokens } = await signedIn();
    await enrol(app, tokens.access_token, clock);
    const challenge = assertProblem(await loginRequest(app, account.username, account.password), 403, 'MFA_REQUIRED');
    assert.deepEqual(challenge.methods, ['totp', 'backup_code']);
    assertProblem(
      await postJson(app, '/api/v1/login/mfa/webauthn-options', { mfa_token: challenge.mfa_token }),
      409,
      'CONFLICT',
    );
  });

  test('an organization requiring a second factor admits a session signed in with a passkey', async () => {
    const { tokens } = await signedIn();
    const { authenticator } = await addPasskey(app, tokens.access_token);
    const created = await postJson(app, '/api/v1/organizations', { name: 'Passkey Org' }, bearer(tokens.access_token));
    assert.equal(created.statusCode, 201, created.body);
    const org = json<{ uuid: string }>(created);
    await app.gatehouse.db
      .updateTable('organizations')
      .set({ require_mfa: true })
      .where('uuid', '=', org.uuid)
      .execute();
    const url = `/api/v1/organizations/${org.uuid}/members`;
    assertProblem(await app.inject({ url, headers: bearer(tokens.access_token) }), 403, 'MFA_REQUIRED_BY_ORGANIZATION');
    const options = await loginOptions(app);
    const passkeyLogin = json<Tokens>(
      await loginVerify(app, options.challenge_id, authenticator.authenticate(options)),
    );
    const res = await app.inject({ url, headers: bearer(passkeyLogin.access_token) });
    assert.equal(res.statusCode, 200, res.body);
  });

  test('bad inputs are problem details, never a 500', async () => {
    const { tokens } = await signedIn();
    const auth = bearer(tokens.access_token);
    const verify = (payload: unknown) => postJson(app, '/api/v1/passkeys/register/verify', payload, auth);
    assertProblem(await verify({}), 422, 'VALIDATION_ERROR');
    assertProblem(await verify({ response: 'x' }), 400, 'MALFORMED_REQUEST');
    assertProblem(await verify({ response: [] }), 400, 'MALFORMED_REQUEST');
    const garbage = {
      id: 'a',
      rawId: 'a',
      type: 'public-key',
      response: { clientDataJSON: 'zz', attestationObject: 'zz' },
    };
    assertProblem(await verify({ response: garbage }), 401, 'PASSKEY_INVALID');
    const huge = { ...garbage, response: { clientDataJSON: 'a'.repeat(9000), attestationObject: 'a' } };
    const hugeRes = await verify({ response: huge });
    assert.ok([400, 413, 422].includes(hugeRes.statusCode), hugeRes.body);
    const options = await registrationOptions(app, tokens.access_token);
    const real = new SoftAuthenticator().register(options);
    assertProblem(await verify({ response: real, name: 'x'.repeat(101) }), 422, 'VALIDATION_ERROR');
    assertProblem(await verify({ response: real, name: 5 }), 400, 'MALFORMED_REQUEST');

    const login = (payload: unknown) => postJson(app, '/api/v1/login/passkey/verify', payload);
    const garbageAssertion = {
      ...garbage,
      response: { clientDataJSON: 'zz', authenticatorData: 'zz', signature: 'zz' },
    };
    assertProblem(await login({}), 422, 'VALIDATION_ERROR');
    assertProblem(await login({ challenge_id: 'nope', response: garbageAssertion }), 422, 'VALIDATION_ERROR');
    assertProblem(await login({ challenge_id: 12, response: garbageAssertion }), 400, 'MALFORMED_REQUEST');
    const loginOpts = await loginOptions(app);
    assertProblem(await login({ challenge_id: loginOpts.challenge_id }), 422, 'VALIDATION_ERROR');
    assertProblem(
      await login({ challenge_id: loginOpts.challenge_id, response: garbageAssertion }),
      401,
      'CHALLENGE_INVALID',
    );
    assertProblem(await postJson(app, '/api/v1/login/passkey/options', { username: 7 }), 400, 'MALFORMED_REQUEST');
    assertProblem(
      await postJson(app, '/api/v1/login/passkey/options', { username: 'x'.repeat(400) }),
      422,
      'VALIDATION_ERROR',
    );
    assertProblem(await postJson(app, '/api/v1/login/mfa/webauthn-options', {}), 422, 'VALIDATION_ERROR');
    assertProblem(
      await postJson(app, '/api/v1/login/mfa', { mfa_token: 'abc', webauthn_response: 'x' }),
      400,
      'MALFORMED_REQUEST',
    );
    assertProblem(
      await app.inject({ method: 'PATCH', url: '/api/v1/passkeys/not-a-uuid', headers: auth, payload: { name: 'a' } }),
      404,
      'NOT_FOUND',
    );
  });
});
