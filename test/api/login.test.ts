import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OAuth2Client, OAuth2HttpError } from '@badgateway/oauth2-client';
import * as argon2 from '@node-rs/argon2';
import * as bcrypt from '@node-rs/bcrypt';
import type { FastifyInstance } from 'fastify';
import { json, newUser, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import { type Body, bearer, createAccount, login, loginRequest, startAuthApp, type Tokens } from './auth-helpers.ts';

describe('POST /api/v1/login', () => {
  let app: FastifyInstance;

  before(async () => {
    app = await startAuthApp();
  });
  after(() => app.close());

  const form = (fields: Record<string, string>, url = '/api/v1/login') =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'login-test/1.0' },
      payload: new URLSearchParams(fields).toString(),
    });
  const jsonPost = (payload: unknown, url = '/api/v1/login') =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });

  function assertTokenResponse(res: { statusCode: number; headers: Record<string, unknown>; body: string }): Tokens {
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = json<Tokens>(res);
    assert.deepEqual(Object.keys(body).sort(), [
      'access_token',
      'expires_in',
      'refresh_expires_in',
      'refresh_token',
      'token_type',
    ]);
    assert.equal(body.token_type, 'bearer');
    assert.equal(body.expires_in, 1800);
    assert.equal(body.refresh_expires_in, 604800);
    assert.match(body.access_token, /^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/);
    assert.match(body.refresh_token, /^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/);
    return body;
  }

  test('a form password grant answers 200 with the token body and Cache-Control: no-store', async () => {
    const account = await createAccount(app);
    const tokens = assertTokenResponse(
      await form({ grant_type: 'password', username: account.username, password: account.password, scope: '' }),
    );
    const me = await app.inject({ url: '/api/v1/me', headers: bearer(tokens.access_token) });
    assert.equal(me.statusCode, 200, me.body);
    assert.equal(json(me).uuid, account.uuid);
  });

  test('grant_type is optional on the form', async () => {
    const account = await createAccount(app);
    assertTokenResponse(await form({ username: account.username, password: account.password }));
  });

  test('username accepts the email, in any case and with surrounding spaces', async () => {
    const account = await createAccount(app);
    assertTokenResponse(await form({ username: ` ${account.email.toUpperCase()} `, password: account.password }));
  });

  test('a JSON body with username or with email answers 200', async () => {
    const account = await createAccount(app);
    assertTokenResponse(await jsonPost({ username: account.username, password: account.password }));
    assertTokenResponse(await jsonPost({ email: account.email, password: account.password }));
  });

  test('/api/v1/login/json is the JSON alias and refuses form bodies with 415', async () => {
    const account = await createAccount(app);
    assertTokenResponse(await jsonPost({ username: account.email, password: account.password }, '/api/v1/login/json'));
    assertTokenResponse(await jsonPost({ email: account.email, password: account.password }, '/api/v1/login/json'));
    const body = assertProblem(
      await form({ username: account.username, password: account.password }, '/api/v1/login/json'),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
    assert.equal(body.error, 'invalid_request');
  });

  test('a wrong password answers 401 INVALID_CREDENTIALS with error=invalid_grant', async () => {
    const account = await createAccount(app);
    const body = assertProblem(
      await form({ username: account.username, password: `${account.password}x` }),
      401,
      'INVALID_CREDENTIALS',
    );
    assert.equal(body.detail, 'Invalid username or password');
    assert.equal(body.error, 'invalid_grant');
  });

  test('every 401 of the token endpoint carries a WWW-Authenticate challenge', async () => {
    const account = await createAccount(app);
    const wrong = await form({ username: account.username, password: `${account.password}x` });
    assert.equal(wrong.headers['www-authenticate'], 'Bearer');
  });

  test('unknown user and wrong password: byte-identical status and body, one password hash each', async () => {
    const account = await createAccount(app);
    const pool = app.gatehouse.hashPool;

    let before = pool.completed;
    const wrong = await form({ username: account.username, password: `${account.password}x` });
    const wrongHashes = pool.completed - before;

    before = pool.completed;
    const unknown = await form({ username: uniqueName('nobody'), password: account.password });
    const unknownHashes = pool.completed - before;

    before = pool.completed;
    const unknownEmail = await form({ username: `${uniqueName('nobody')}@example.com`, password: account.password });
    const unknownEmailHashes = pool.completed - before;

    assert.equal(wrong.statusCode, 401);
    assert.equal(unknown.statusCode, wrong.statusCode);
    assert.equal(unknownEmail.statusCode, wrong.statusCode);
    assert.equal(unknown.body, wrong.body);
    assert.equal(unknownEmail.body, wrong.body);
    assert.equal(unknown.headers['content-type'], wrong.headers['content-type']);
    assert.equal(wrongHashes, 1);
    assert.equal(unknownHashes, 1, 'the unknown-user path must verify against the dummy hash');
    assert.equal(unknownEmailHashes, 1);
  });

  test('unsupported grant types answer 400 with error=unsupported_grant_type', async () => {
    const body = assertProblem(await form({ grant_type: 'client_credentials' }), 400, 'MALFORMED_REQUEST');
    assert.equal(body.error, 'unsupported_grant_type');
  });

  test('missing fields answer 422 VALIDATION_ERROR with error=invalid_request', async () => {
    const body = assertProblem(await form({ grant_type: 'password' }), 422, 'VALIDATION_ERROR');
    assert.equal(body.error, 'invalid_request');
    assert.deepEqual((body.errors as Body[]).map((e) => e.field).sort(), ['password', 'username']);
    const empty = assertProblem(await jsonPost({ username: '  ', password: '' }), 422, 'VALIDATION_ERROR');
    assert.deepEqual((empty.errors as Body[]).map((e) => e.field).sort(), ['password', 'username']);
    assertProblem(await jsonPost({ password: 'x' }, '/api/v1/login/json'), 422, 'VALIDATION_ERROR');
  });

  test('hostile bodies answer 4xx problems with an RFC 6749 error, never 500', async () => {
    const wrongTypes = assertProblem(await jsonPost({ username: 123, password: ['a'] }), 400, 'MALFORMED_REQUEST');
    assert.equal(wrongTypes.error, 'invalid_request');
    assert.equal(assertProblem(await jsonPost('{"username":'), 400, 'MALFORMED_REQUEST').error, 'invalid_request');
    assertProblem(await jsonPost('{"__proto__":{"x":1},"username":"a","password":"b"}'), 400, 'MALFORMED_REQUEST');
    const repeated = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'username=a&username=b&password=x',
    });
    assertProblem(repeated, 400, 'MALFORMED_REQUEST');
    const nul = assertProblem(await jsonPost({ username: 'ab\u0000cd', password: 'x' }), 422, 'VALIDATION_ERROR');
    assert.equal((nul.errors as Body[])[0]?.field, 'username');
    assertProblem(await jsonPost({ username: 'a'.repeat(400), password: 'x' }), 422, 'VALIDATION_ERROR');
    assertProblem(await jsonPost({ username: 'abc', password: 'x'.repeat(2000) }), 422, 'VALIDATION_ERROR');
    const big = assertProblem(
      await jsonPost({ username: 'abc', password: 'x'.repeat(20_000) }),
      413,
      'PAYLOAD_TOO_LARGE',
    );
    assert.equal(big.error, 'invalid_request');
    const xml = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      headers: { 'content-type': 'application/xml' },
      payload: '<a/>',
    });
    assert.equal(assertProblem(xml, 415, 'UNSUPPORTED_MEDIA_TYPE').error, 'invalid_request');
  });

  test('every attempt leaves a login_attempts row with identifier, user, IP, user agent, success and reason', async () => {
    const account = await createAccount(app);
    const stranger = uniqueName('stranger');
    await form({ username: stranger, password: 'Whatever1!xyz' });
    await form({ username: account.username.toUpperCase(), password: 'Wrong-password-1!' });
    await form({ username: account.email, password: account.password });
    const db = app.gatehouse.db;
    const rows = await db
      .selectFrom('login_attempts')
      .selectAll()
      .where('identifier', 'in', [stranger, account.username, account.email])
      .orderBy('id')
      .execute();
    assert.deepEqual(
      rows.map((r) => [r.identifier, r.user_id, r.success, r.failure_reason]),
      [
        [stranger, null, false, 'unknown_user'],
        [account.username, account.id, false, 'invalid_password'],
        [account.email, account.id, true, null],
      ],
    );
    for (const row of rows) {
      assert.equal(row.ip_address, '127.0.0.1');
      assert.equal(row.user_agent, 'login-test/1.0');
      assert.ok(row.attempted_at instanceof Date);
    }
  });

  test('an attempt refused by the lockout is on the record too', async () => {
    const account = await createAccount(app);
    for (let i = 0; i < 5; i++) await form({ username: account.username, password: 'Wrong-password-1!' });
    assertProblem(await form({ username: account.username, password: account.password }), 423, 'ACCOUNT_LOCKED');
    const rows = await app.gatehouse.db
      .selectFrom('login_attempts')
      .select(['success', 'failure_reason'])
      .where('identifier', '=', account.username)
      .orderBy('id')
      .execute();
    assert.deepEqual(
      rows.map((r) => r.failure_reason),
      [...Array(5).fill('invalid_password'), 'account_locked'],
    );
    assert.ok(rows.every((r) => !r.success));
  });

  test('login writes login_success and login_failure audit rows and sets last_login_at', async () => {
    const account = await createAccount(app);
    const db = app.gatehouse.db;
    const beforeLogin = await db
      .selectFrom('users')
      .select('last_login_at')
      .where('id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.equal(beforeLogin.last_login_at, null);
    await form({ username: account.username, password: 'Wrong-password-1!' });
    await login(app, account);
    const audit = await db
      .selectFrom('audit_logs')
      .select(['action', 'details', 'ip_address', 'user_agent'])
      .where('user_id', '=', account.id)
      .where('action', 'in', ['login_success', 'login_failure'])
      .orderBy('id')
      .execute();
    assert.deepEqual(
      audit.map((a) => a.action),
      ['login_failure', 'login_success'],
    );
    assert.equal((audit[0]?.details as Body | undefined)?.reason, 'invalid_password');
    assert.equal(audit[0]?.ip_address, '127.0.0.1');
    const afterLogin = await db
      .selectFrom('users')
      .select('last_login_at')
      .where('id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.ok(afterLogin.last_login_at instanceof Date);
    const me = json(await app.inject({ url: '/api/v1/me', headers: bearer((await login(app, account)).access_token) }));
    assert.ok(Date.parse(String(me.last_login_at)) >= afterLogin.last_login_at.getTime());
  });

  test('each login creates its own sessions row', async () => {
    const account = await createAccount(app);
    await login(app, account);
    await login(app, account);
    const sessions = await app.gatehouse.db
      .selectFrom('sessions')
      .select(['uuid', 'refresh_token_hash', 'revoked_at', 'kind'])
      .where('user_id', '=', account.id)
      .execute();
    assert.equal(sessions.length, 2);
    assert.notEqual(sessions[0]?.uuid, sessions[1]?.uuid);
    for (const s of sessions) {
      assert.match(s.refresh_token_hash, /^[0-9a-f]{64}$/);
      assert.equal(s.revoked_at, null);
      assert.equal(s.kind, 'api');
    }
  });

  test('an outdated argon2id hash is upgraded to the current parameters on the next successful login', async () => {
    const account = await createAccount(app);
    const db = app.gatehouse.db;
    const weak = await argon2.hash(account.password, { algorithm: 2, memoryCost: 4096, timeCost: 1, parallelism: 1 });
    await db.updateTable('users').set({ password_hash: weak }).where('id', '=', account.id).execute();
    // A failed login leaves it alone.
    await form({ username: account.username, password: 'Wrong-password-1!' });
    let row = await db
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.password_hash, weak);
    await login(app, account);
    row = await db.selectFrom('users').select('password_hash').where('id', '=', account.id).executeTakeFirstOrThrow();
    assert.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    await login(app, account);
  });

  test('a bcrypt hash is re-hashed with argon2id on the next successful login', async () => {
    const account = await createAccount(app);
    const db = app.gatehouse.db;
    await db
      .updateTable('users')
      .set({ password_hash: await bcrypt.hash(account.password, 4) })
      .where('id', '=', account.id)
      .execute();
    await login(app, account);
    const row = await db
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const audit = await db
      .selectFrom('audit_logs')
      .select('details')
      .where('user_id', '=', account.id)
      .where('action', '=', 'login_success')
      .executeTakeFirstOrThrow();
    assert.equal((audit.details as Body).hash_upgraded, true);
    await login(app, account);
  });

  test('passwords are compared in NFC, as they were hashed', async () => {
    const password = `Kx9#Caf\u00e9-${uniqueName('p')}!`;
    const account = await createAccount(app, { password });
    assertTokenResponse(await form({ username: account.username, password: password.normalize('NFD') }));
  });

  describe('the verification gate', () => {
    test('an unverified account with the right password answers 403 EMAIL_NOT_VERIFIED', async () => {
      const account = await createAccount(app, {}, { verified: false });
      const body = assertProblem(
        await form({ username: account.username, password: account.password }),
        403,
        'EMAIL_NOT_VERIFIED',
      );
      assert.equal(body.error, 'invalid_grant');
      const attempt = await app.gatehouse.db
        .selectFrom('login_attempts')
        .select(['success', 'failure_reason'])
        .where('user_id', '=', account.id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(attempt, { success: false, failure_reason: 'email_not_verified' });
      assert.equal(
        (await app.gatehouse.db.selectFrom('sessions').select('id').where('user_id', '=', account.id).execute()).length,
        0,
      );
    });

    test('an unverified account with a wrong password gets the ordinary 401', async () => {
      const account = await createAccount(app, {}, { verified: false });
      const wrong = await form({ username: account.username, password: 'Wrong-password-1!' });
      const unknown = await form({ username: uniqueName('nobody'), password: 'Wrong-password-1!' });
      assertProblem(wrong, 401, 'INVALID_CREDENTIALS');
      assert.equal(wrong.body, unknown.body);
    });

    test('an inactive account answers 403 ACCOUNT_DISABLED only to the right password', async () => {
      const account = await createAccount(app);
      await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', account.id).execute();
      assertProblem(await form({ username: account.username, password: account.password }), 403, 'ACCOUNT_DISABLED');
      assertProblem(
        await form({ username: account.username, password: 'Wrong-password-1!' }),
        401,
        'INVALID_CREDENTIALS',
      );
    });
  });
});

describe('login without the verification requirement', () => {
  test('REQUIRE_EMAIL_VERIFICATION=false lets an unverified account log in; it stays unverified until verified', async () => {
    const app = await startAuthApp({ REQUIRE_EMAIL_VERIFICATION: 'false' });
    try {
      const registered = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      assert.equal(registered.statusCode, 201, registered.body);
      assert.equal(json(registered).email_verified, false);
      const account = await createAccount(app, {}, { verified: false });
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select('email_verified_at')
        .where('id', '=', account.id)
        .executeTakeFirstOrThrow();
      assert.equal(row.email_verified_at, null);
      const res = await loginRequest(app, account.username, account.password);
      assert.equal(res.statusCode, 200, res.body);
      const me = await app.inject({ url: '/api/v1/me', headers: bearer(String(json(res).access_token)) });
      assert.equal(json(me).email_verified, false);
    } finally {
      await app.close();
    }
  });
});

describe('OAuth2 clients', () => {
  let app: FastifyInstance;
  let server: string;

  before(async () => {
    app = await startAuthApp();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    assert.ok(address && typeof address === 'object');
    server = `http://127.0.0.1:${address.port}`;
  });
  after(() => app.close());

  test('@badgateway/oauth2-client logs in with the password grant and refreshes', async () => {
    const account = await createAccount(app);
    const client = new OAuth2Client({ server, tokenEndpoint: '/api/v1/login', clientId: 'gatehouse-test' });
    const token = await client.password({ username: account.username, password: account.password });
    assert.match(token.accessToken, /^eyJ/);
    assert.ok(token.refreshToken);
    assert.ok(token.expiresAt && token.expiresAt > Date.now());

    const me = await fetch(`${server}/api/v1/me`, { headers: bearer(token.accessToken) });
    assert.equal(me.status, 200);
    assert.equal(((await me.json()) as Body).username, account.username);

    const refreshed = await client.refreshToken(token);
    assert.notEqual(refreshed.refreshToken, token.refreshToken);
    assert.equal((await fetch(`${server}/api/v1/me`, { headers: bearer(refreshed.accessToken) })).status, 200);

    // The same grant against the dedicated refresh endpoint.
    const viaRefresh = new OAuth2Client({ server, tokenEndpoint: '/api/v1/refresh', clientId: 'gatehouse-test' });
    const again = await viaRefresh.refreshToken(refreshed);
    assert.ok(again.refreshToken && again.refreshToken !== refreshed.refreshToken);
  });

  test('the client sees invalid_grant for a wrong password', async () => {
    const account = await createAccount(app);
    const client = new OAuth2Client({ server, tokenEndpoint: '/api/v1/login', clientId: 'gatehouse-test' });
    await assert.rejects(client.password({ username: account.username, password: 'Wrong-password-1!' }), (error) => {
      assert.ok(error instanceof OAuth2HttpError);
      assert.equal(error.oauth2Code, 'invalid_grant');
      assert.equal(error.httpCode, 401);
      assert.equal((error.parsedBody as Body).code, 'INVALID_CREDENTIALS');
      return true;
    });
  });

  test('the docs page: /openapi.json declares the OAuth2 password flow at /api/v1/login', async () => {
    const doc = json(await app.inject({ url: '/openapi.json' }));
    const schemes = (doc.components as Body).securitySchemes as Record<string, Body>;
    const password = ((schemes.oauth2 as Body).flows as Body).password as Body;
    assert.equal((schemes.oauth2 as Body).type, 'oauth2');
    assert.equal(password.tokenUrl, '/api/v1/login');
    const meGet = ((doc.paths as Body)['/api/v1/me'] as Body).get as Body;
    assert.deepEqual(meGet.security, [{ bearer: [] }, { oauth2: [] }]);
  });

  test("the docs page's Authorize dialog request (Swagger UI's form POST) logs in", async () => {
    const account = await createAccount(app);
    // What Swagger UI sends for the password flow without a client id.
    const res = await fetch(`${server}/api/v1/login`, {
      method: 'POST',
      headers: {
        accept: 'application/json, text/plain, */*',
        'content-type': 'application/x-www-form-urlencoded',
        'x-requested-with': 'XMLHttpRequest',
      },
      body: `grant_type=password&username=${encodeURIComponent(account.username)}&password=${encodeURIComponent(account.password)}&scope=`,
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const tokens = (await res.json()) as Tokens;
    assert.equal(tokens.token_type, 'bearer');
    const me = await fetch(`${server}/api/v1/me`, { headers: bearer(tokens.access_token) });
    assert.equal(me.status, 200);
  });
});
