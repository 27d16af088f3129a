import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, strongPassword } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { Authenticator, bearer, claims, enrol, postJson } from '../support/mfa.ts';
import { assertProblem } from '../support/problem.ts';
import { createAccount, login, loginRequest, startAuthApp, type TestAccount, type Tokens } from './auth-helpers.ts';

type Body = Record<string, unknown>;

async function multipart(account: TestAccount): Promise<{ headers: Record<string, string>; payload: Buffer }> {
  const form = new FormData();
  form.append('username', account.username);
  form.append('password', account.password);
  const request = new Request('http://gatehouse.test/', { method: 'POST', body: form });
  return {
    headers: { 'content-type': String(request.headers.get('content-type')) },
    payload: Buffer.from(await request.arrayBuffer()),
  };
}

describe('second factor: TOTP and backup codes', () => {
  const clock = testClock();
  let app: FastifyInstance;

  before(async () => {
    app = await startAuthApp({ LOCKOUT_THRESHOLD: '5' }, { clock });
  });
  after(() => app.close());

  const me = async (access: string) => {
    const res = await app.inject({ url: '/api/v1/me', headers: bearer(access) });
    assert.equal(res.statusCode, 200, res.body);
    return json<{ mfa: { totp: boolean; backup_codes_left: number } }>(res);
  };

  /** An account with TOTP on, and the session that turned it on. */
  async function enrolled() {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const { authenticator, backupCodes, secret } = await enrol(app, tokens.access_token, clock);
    return { account, tokens, authenticator, backupCodes, secret };
  }

  async function mfaToken(account: TestAccount): Promise<string> {
    const res = await loginRequest(app, account.username, account.password);
    const body = assertProblem(res, 403, 'MFA_REQUIRED');
    return String(body.mfa_token);
  }

  const loginMfa = (payload: Body) => postJson(app, '/api/v1/login/mfa', payload);

  const auditActions = async (userId: number) =>
    (
      await app.gatehouse.db
        .selectFrom('audit_logs')
        .select('action')
        .where('user_id', '=', userId)
        .orderBy('id')
        .execute()
    ).map((r) => r.action);

  const mailTemplates = async (email: string) =>
    (
      await app.gatehouse.db
        .selectFrom('email_outbox')
        .select('template')
        .where('to_address', '=', email)
        .orderBy('id')
        .execute()
    ).map((r) => r.template);

  test('setup answers a secret, an otpauth URL and an SVG QR code, and turns nothing on yet', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const res = await postJson(app, '/api/v1/mfa/totp/setup', {}, bearer(tokens.access_token));
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    const body = json<{ secret: string; otpauth_url: string; qr_svg: string }>(res);
    assert.match(body.secret, /^[A-Z2-7]{32}$/);
    const url = new URL(body.otpauth_url);
    assert.equal(url.protocol, 'otpauth:');
    assert.equal(url.searchParams.get('secret'), body.secret);
    assert.match(body.qr_svg, /^<svg[\s\S]*<\/svg>\s*$/);
    assert.deepEqual((await me(tokens.access_token)).mfa, { totp: false, backup_codes_left: 0 });
    // The password alone still signs in.
    assert.equal((await loginRequest(app, account.username, account.password)).statusCode, 200);
  });

  test('confirm with a code from the app turns TOTP on, answers 10 backup codes once, audits and mails', async () => {
    const { account, tokens, backupCodes, secret } = await enrolled();
    assert.equal(backupCodes.length, 10);
    assert.equal(new Set(backupCodes).size, 10);
    for (const code of backupCodes) assert.match(code, /^[0-9a-z]{4}-[0-9a-z]{4}$/);
    assert.deepEqual((await me(tokens.access_token)).mfa, { totp: true, backup_codes_left: 10 });
    assert.ok((await auditActions(account.id)).includes('mfa_enabled'));
    assert.ok((await mailTemplates(account.email)).includes('mfa_enabled'));
    // Stored safely: no secret or code in the clear.
    const row = await app.gatehouse.db
      .selectFrom('mfa_totp')
      .selectAll()
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.ok(!row.secret_ciphertext.includes(secret));
    const raw = Buffer.from(row.secret_ciphertext.split('.').at(-1) as string, 'base64url');
    assert.equal(raw.length, 20);
    assert.notDeepEqual(raw, Buffer.from(new Authenticator(secret, clock).totp.secret.bytes));
    const hashes = await app.gatehouse.db
      .selectFrom('mfa_backup_codes')
      .select('code_hash')
      .where('user_id', '=', account.id)
      .execute();
    for (const code of backupCodes) {
      assert.ok(!hashes.some((h) => h.code_hash.includes(code.replace('-', ''))));
    }
  });

  test('a second setup while TOTP is on is 409; a wrong first code is 401 INVALID_MFA_CODE', async () => {
    const { tokens } = await enrolled();
    assertProblem(await postJson(app, '/api/v1/mfa/totp/setup', {}, bearer(tokens.access_token)), 409, 'CONFLICT');
    const other = await createAccount(app);
    const otherTokens = await login(app, other);
    const setup = await postJson(app, '/api/v1/mfa/totp/setup', {}, bearer(otherTokens.access_token));
    const authenticator = new Authenticator(json<{ secret: string }>(setup).secret, clock);
    const wrong = String((Number(authenticator.code()) + 1) % 1_000_000).padStart(6, '0');
    assertProblem(
      await postJson(app, '/api/v1/mfa/totp/confirm', { code: wrong }, bearer(otherTokens.access_token)),
      401,
      'INVALID_MFA_CODE',
    );
    assert.equal((await me(otherTokens.access_token)).mfa.totp, false);
  });

  test('login with TOTP on answers 403 MFA_REQUIRED with an mfa_token, in every body form, and starts no session', async () => {
    const { account } = await enrolled();
    const sessions = async () =>
      (await app.gatehouse.db.selectFrom('sessions').select('id').where('user_id', '=', account.id).execute()).length;
    const before = await sessions();
    const answers = [
      await loginRequest(app, account.username, account.password),
      await postJson(app, '/api/v1/login', { username: account.username, password: account.password }),
      await postJson(app, '/api/v1/login/json', { email: account.email, password: account.password }),
      await app.inject({ method: 'POST', url: '/api/v1/login', ...(await multipart(account)) }),
    ];
    for (const res of answers) {
      const body = assertProblem(res, 403, 'MFA_REQUIRED');
      assert.equal(body.error, 'mfa_required');
      assert.match(String(body.mfa_token), /^[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(body.methods, ['totp', 'backup_code']);
      assert.equal(body.access_token, undefined);
    }
    assert.equal(await sessions(), before);
    // A wrong password is still the same 401 as ever.
    assertProblem(await loginRequest(app, account.username, strongPassword()), 401, 'INVALID_CREDENTIALS');
  });

  test('POST /login/mfa with a code answers the login body; amr is ["pwd","otp"]; the token is single use', async () => {
    const { account, authenticator } = await enrolled();
    const token = await mfaToken(account);
    const res = await loginMfa({ mfa_token: token, code: authenticator.code() });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    const tokens = json<Tokens>(res);
    assert.equal(tokens.token_type, 'bearer');
    assert.deepEqual(claims(tokens.access_token).amr, ['pwd', 'otp']);
    assert.equal(typeof claims(tokens.access_token).auth_time, 'number');
    assert.equal((await me(tokens.access_token)).mfa.totp, true);
    authenticator.nextStep();
    assertProblem(await loginMfa({ mfa_token: token, code: authenticator.code() }), 401, 'TOKEN_INVALID');
    // A refresh keeps how the session was authenticated.
    const refreshed = await postJson(app, '/api/v1/refresh', { refresh_token: tokens.refresh_token });
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.deepEqual(claims(json<Tokens>(refreshed).access_token).amr, ['pwd', 'otp']);
    const attempts = await app.gatehouse.db
      .selectFrom('login_attempts')
      .select(['success'])
      .where('user_id', '=', account.id)
      .execute();
    assert.ok(attempts.some((a) => a.success));
  });

  test('a password-only login carries amr ["pwd"]', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    assert.deepEqual(claims(tokens.access_token).amr, ['pwd']);
  });

  test('a backup code signs in once, with amr ["pwd","backup_code"], and is audited and mailed', async () => {
    const { account, backupCodes, tokens } = await enrolled();
    const code = backupCodes[0] as string;
    // Case- and hyphen-insensitive.
    const res = await loginMfa({
      mfa_token: await mfaToken(account),
      backup_code: code.toUpperCase().replace('-', ''),
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(claims(json<Tokens>(res).access_token).amr, ['pwd', 'backup_code']);
    assert.equal((await me(tokens.access_token)).mfa.backup_codes_left, 9);
    assert.ok((await auditActions(account.id)).includes('mfa_backup_code_used'));
    assert.ok((await mailTemplates(account.email)).includes('mfa_backup_code_used'));
    assertProblem(await loginMfa({ mfa_token: await mfaToken(account), backup_code: code }), 401, 'INVALID_MFA_CODE');
    // `code` takes a backup code too.
    const again = await loginMfa({ mfa_token: await mfaToken(account), code: backupCodes[1] });
    assert.equal(again.statusCode, 200, again.body);
  });

  test('a code is accepted once per time step, with ±1 step of skew and no more', async () => {
    const { account, authenticator } = await enrolled();
    // Two steps past the one that confirmed the setup: step-1 is unused.
    authenticator.nextStep();
    const token = await mfaToken(account);
    assertProblem(await loginMfa({ mfa_token: token, code: authenticator.code(-2) }), 401, 'INVALID_MFA_CODE');
    assertProblem(await loginMfa({ mfa_token: token, code: authenticator.code(2) }), 401, 'INVALID_MFA_CODE');
    const early = await loginMfa({ mfa_token: token, code: authenticator.code(-1) });
    assert.equal(early.statusCode, 200, early.body);
    const late = await loginMfa({ mfa_token: await mfaToken(account), code: authenticator.code(1) });
    assert.equal(late.statusCode, 200, late.body);
    // Replay of a code already used, and of one older than the last used, is refused.
    assertProblem(
      await loginMfa({ mfa_token: await mfaToken(account), code: authenticator.code(1) }),
      401,
      'INVALID_MFA_CODE',
    );
    assertProblem(
      await loginMfa({ mfa_token: await mfaToken(account), code: authenticator.code(0) }),
      401,
      'INVALID_MFA_CODE',
    );
  });

  test('wrong codes are audited, recorded and count toward the lockout: then 423 even with the right code', async () => {
    const { account, authenticator } = await enrolled();
    const token = await mfaToken(account);
    const wrong = String((Number(authenticator.code()) + 500_000) % 1_000_000).padStart(6, '0');
    for (let i = 0; i < 5; i++) {
      assertProblem(await loginMfa({ mfa_token: token, code: wrong }), 401, 'INVALID_MFA_CODE');
    }
    const locked = assertProblem(
      await loginMfa({ mfa_token: token, code: authenticator.code() }),
      423,
      'ACCOUNT_LOCKED',
    );
    assert.ok(Number(locked.retry_after) > 0);
    const actions = await auditActions(account.id);
    assert.equal(actions.filter((a) => a === 'mfa_challenge_failed').length, 5);
    assert.ok(actions.includes('account_locked'));
    const failures = await app.gatehouse.db
      .selectFrom('login_attempts')
      .select('failure_reason')
      .where('user_id', '=', account.id)
      .where('failure_reason', '=', 'invalid_mfa_code')
      .execute();
    assert.equal(failures.length, 5);
    // The right password does not reset the count of wrong codes.
    assertProblem(await loginRequest(app, account.username, account.password), 423, 'ACCOUNT_LOCKED');
  });

  test('the right password does not clear wrong codes counted against the account', async () => {
    const { account, authenticator } = await enrolled();
    const wrong = String((Number(authenticator.code()) + 500_000) % 1_000_000).padStart(6, '0');
    for (let i = 0; i < 4; i++) {
      assertProblem(await loginMfa({ mfa_token: await mfaToken(account), code: wrong }), 401, 'INVALID_MFA_CODE');
    }
    assertProblem(await loginMfa({ mfa_token: await mfaToken(account), code: wrong }), 401, 'INVALID_MFA_CODE');
    assertProblem(await loginRequest(app, account.username, account.password), 423, 'ACCOUNT_LOCKED');
  });

  test('an expired or unknown mfa_token is 401 TOKEN_INVALID', async () => {
    const { account, authenticator } = await enrolled();
    const token = await mfaToken(account);
    clock.advance(301_000);
    assertProblem(await loginMfa({ mfa_token: token, code: authenticator.code() }), 401, 'TOKEN_INVALID');
    assertProblem(await loginMfa({ mfa_token: 'x'.repeat(43), code: authenticator.code() }), 401, 'TOKEN_INVALID');
  });

  test('an mfa_token is neither a bearer token nor a refresh token', async () => {
    const { account } = await enrolled();
    const token = await mfaToken(account);
    assertProblem(await app.inject({ url: '/api/v1/me', headers: bearer(token) }), 401, 'TOKEN_INVALID');
    assertProblem(await postJson(app, '/api/v1/refresh', { refresh_token: token }), 401, 'TOKEN_INVALID');
    const grant = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token }).toString(),
    });
    assertProblem(grant, 401, 'TOKEN_INVALID');
  });

  test('bad input to the second step is 422 with field errors (400 for wrong types), never 500', async () => {
    const { account, authenticator } = await enrolled();
    const token = await mfaToken(account);
    const cases: [Body, number, string][] = [
      [{ mfa_token: token }, 422, 'code'],
      [{ code: authenticator.code() }, 422, 'mfa_token'],
      [{ mfa_token: token, code: 'abcdef' }, 422, 'code'],
      [{ mfa_token: token, code: '12345' }, 422, 'code'],
      [{ mfa_token: token, code: '9'.repeat(65) }, 422, 'code'],
      [{ mfa_token: 'x'.repeat(129), code: '123456' }, 422, 'mfa_token'],
      [{ mfa_token: token, backup_code: '123456' }, 422, 'backup_code'],
      [{ mfa_token: token, code: '123456', backup_code: 'abcd-efgh' }, 422, 'backup_code'],
      [{ mfa_token: token, code: 123456 }, 400, 'code'],
      [{ mfa_token: ['x'], code: '123456' }, 400, 'mfa_token'],
    ];
    for (const [payload, status, field] of cases) {
      const body = assertProblem(
        await loginMfa(payload),
        status,
        status === 422 ? 'VALIDATION_ERROR' : 'MALFORMED_REQUEST',
      );
      const errors = body.errors as { field: string }[];
      assert.ok(
        errors.some((e) => e.field === field),
        `${JSON.stringify(payload)} → ${JSON.stringify(body)}`,
      );
    }
    // The token survived the bad requests.
    const res = await loginMfa({ mfa_token: token, code: authenticator.code() });
    assert.equal(res.statusCode, 200, res.body);
  });

  test('bad input to the management routes is 422 with field errors', async () => {
    const { tokens } = await enrolled();
    const auth = bearer(tokens.access_token);
    for (const [url, payload, field] of [
      ['/api/v1/mfa/totp/confirm', {}, 'code'],
      ['/api/v1/mfa/backup-codes', { code: 'not-a-code!' }, 'code'],
      ['/api/v1/reauthenticate', { code: '123456' }, 'password'],
    ] as const) {
      const body = assertProblem(await postJson(app, url, payload, auth), 422, 'VALIDATION_ERROR');
      assert.ok(
        (body.errors as { field: string }[]).some((e) => e.field === field),
        JSON.stringify(body),
      );
    }
    const del = await postJson(app, '/api/v1/mfa/totp', { password: 'x' }, auth, 'DELETE');
    assertProblem(del, 422, 'VALIDATION_ERROR');
  });

  test('setup, disabling and new backup codes need a recent authentication; POST /reauthenticate gives one', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const auth = bearer(tokens.access_token);
    clock.advance(301_000);
    assertProblem(await postJson(app, '/api/v1/mfa/totp/setup', {}, auth), 403, 'REAUTHENTICATION_REQUIRED');
    assertProblem(
      await postJson(app, '/api/v1/reauthenticate', { password: strongPassword() }, auth),
      401,
      'INVALID_CREDENTIALS',
    );
    const step = await postJson(app, '/api/v1/reauthenticate', { password: account.password }, auth);
    assert.equal(step.statusCode, 200, step.body);
    const { authenticator } = await enrol(app, tokens.access_token, clock);

    clock.advance(301_000);
    assertProblem(
      await postJson(app, '/api/v1/mfa/backup-codes', { code: authenticator.code() }, auth),
      403,
      'REAUTHENTICATION_REQUIRED',
    );
    assertProblem(
      await postJson(
        app,
        '/api/v1/mfa/totp',
        { password: account.password, code: authenticator.code() },
        auth,
        'DELETE',
      ),
      403,
      'REAUTHENTICATION_REQUIRED',
    );
    // With TOTP on, the step-up needs a code too.
    assertProblem(
      await postJson(app, '/api/v1/reauthenticate', { password: account.password }, auth),
      422,
      'VALIDATION_ERROR',
    );
    const again = await postJson(
      app,
      '/api/v1/reauthenticate',
      { password: account.password, code: authenticator.code() },
      auth,
    );
    assert.equal(again.statusCode, 200, again.body);
    assert.ok((await auditActions(account.id)).includes('reauthenticated'));
  });

  test('new backup codes replace the old set', async () => {
    const { account, tokens, authenticator, backupCodes } = await enrolled();
    const res = await postJson(
      app,
      '/api/v1/mfa/backup-codes',
      { code: authenticator.code() },
      bearer(tokens.access_token),
    );
    assert.equal(res.statusCode, 200, res.body);
    const fresh = json<{ backup_codes: string[] }>(res).backup_codes;
    assert.equal(fresh.length, 10);
    assert.ok(fresh.every((c) => !backupCodes.includes(c)));
    assertProblem(
      await loginMfa({ mfa_token: await mfaToken(account), backup_code: backupCodes[2] }),
      401,
      'INVALID_MFA_CODE',
    );
    const ok = await loginMfa({ mfa_token: await mfaToken(account), backup_code: fresh[0] });
    assert.equal(ok.statusCode, 200, ok.body);
  });

  test('DELETE /mfa/totp with the password and a code turns it off, audited and mailed', async () => {
    const { account, tokens, authenticator } = await enrolled();
    const auth = bearer(tokens.access_token);
    assertProblem(
      await postJson(
        app,
        '/api/v1/mfa/totp',
        { password: strongPassword(), code: authenticator.code() },
        auth,
        'DELETE',
      ),
      401,
      'INVALID_CREDENTIALS',
    );
    const res = await postJson(
      app,
      '/api/v1/mfa/totp',
      { password: account.password, code: authenticator.code() },
      auth,
      'DELETE',
    );
    assert.equal(res.statusCode, 204, res.body);
    assert.deepEqual((await me(tokens.access_token)).mfa, { totp: false, backup_codes_left: 0 });
    assert.ok((await auditActions(account.id)).includes('mfa_disabled'));
    assert.ok((await mailTemplates(account.email)).includes('mfa_disabled'));
    assert.equal((await loginRequest(app, account.username, account.password)).statusCode, 200);
  });

  test('change-password and account deletion: unchanged without TOTP; with TOTP they need the window', async () => {
    const plain = await createAccount(app);
    const plainTokens = await login(app, plain);
    clock.advance(301_000);
    const next = strongPassword();
    const changed = await postJson(
      app,
      '/api/v1/change-password',
      { current_password: plain.password, new_password: next, confirm_password: next },
      bearer(plainTokens.access_token),
    );
    assert.equal(changed.statusCode, 204, changed.body);

    const { account, tokens, authenticator } = await enrolled();
    const auth = bearer(tokens.access_token);
    clock.advance(301_000);
    const password = strongPassword();
    const change = () =>
      postJson(
        app,
        '/api/v1/change-password',
        { current_password: account.password, new_password: password, confirm_password: password },
        auth,
      );
    assertProblem(await change(), 403, 'REAUTHENTICATION_REQUIRED');
    assertProblem(
      await postJson(app, '/api/v1/me', { password: account.password }, auth, 'DELETE'),
      403,
      'REAUTHENTICATION_REQUIRED',
    );
    const step = await postJson(
      app,
      '/api/v1/reauthenticate',
      { password: account.password, code: authenticator.code() },
      auth,
    );
    assert.equal(step.statusCode, 200, step.body);
    assert.equal((await change()).statusCode, 204);
    const deleted = await postJson(app, '/api/v1/me', { password }, auth, 'DELETE');
    assert.equal(deleted.statusCode, 204, deleted.body);
  });

  test('a login completed with the factor counts as recent for change-password', async () => {
    const { account, authenticator } = await enrolled();
    const res = await loginMfa({ mfa_token: await mfaToken(account), code: authenticator.code() });
    const tokens = json<Tokens>(res);
    const password = strongPassword();
    const changed = await postJson(
      app,
      '/api/v1/change-password',
      { current_password: account.password, new_password: password, confirm_password: password },
      bearer(tokens.access_token),
    );
    assert.equal(changed.statusCode, 204, changed.body);
  });

  test('the OpenAPI document describes the new routes, and each new problem has its page', async () => {
    const doc = json<{ paths: Record<string, Record<string, unknown>> }>(await app.inject('/openapi.json'));
    for (const [path, method] of [
      ['/api/v1/mfa/totp/setup', 'post'],
      ['/api/v1/mfa/totp/confirm', 'post'],
      ['/api/v1/mfa/totp', 'delete'],
      ['/api/v1/mfa/backup-codes', 'post'],
      ['/api/v1/reauthenticate', 'post'],
      ['/api/v1/login/mfa', 'post'],
      ['/api/v1/admin/users/{uuid}/mfa/reset', 'post'],
    ] as const) {
      assert.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} in /openapi.json`);
    }
    for (const code of [
      'mfa-required',
      'mfa-required-by-organization',
      'reauthentication-required',
      'invalid-mfa-code',
    ]) {
      const page = await app.inject(`/problems/${code}`);
      assert.equal(page.statusCode, 200, code);
    }
  });

  test('a stolen access token and the password cannot guess codes at the step-up: the password does not reset the count', async () => {
    const { account, tokens, authenticator } = await enrolled();
    const auth = bearer(tokens.access_token);
    const wrong = String((Number(authenticator.code()) + 500_000) % 1_000_000).padStart(6, '0');
    for (let i = 0; i < 5; i++) {
      assertProblem(
        await postJson(app, '/api/v1/reauthenticate', { password: account.password, code: wrong }, auth),
        401,
        'INVALID_MFA_CODE',
      );
    }
    assertProblem(
      await postJson(app, '/api/v1/reauthenticate', { password: account.password, code: authenticator.code() }, auth),
      423,
      'ACCOUNT_LOCKED',
    );
  });
});
