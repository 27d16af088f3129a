import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { startApp, uniqueName } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { assertKeys, exampleName, FORM_HEADERS, JSON_HEADERS, send } from './support.ts';

// 002_…: Fastpy's authentication guide, its /api/auth/* paths and its success/data/error envelope.
// Its example password `securepassword123` ("minimum 8 characters") needs PASSWORD_POLICY=nist PASSWORD_MIN_LENGTH=8.

const FASTPY = {
  COMPAT: 'fastpy',
  PASSWORD_POLICY: 'nist',
  PASSWORD_MIN_LENGTH: '8',
  REQUIRE_EMAIL_VERIFICATION: 'false',
  REGISTER_RETURNS_TOKENS: 'true',
};

describe('COMPAT=fastpy: the requests of 002_…, as printed', () => {
  let app: FastifyInstance;
  const clock = testClock();
  const email = `${exampleName('user')}@example.com`;
  let tokens: Record<string, unknown> = {};
  before(async () => {
    app = await startApp({ ...FASTPY, REDIS_KEY_PREFIX: `t:${uniqueName()}:` }, { clock });
  });
  after(() => app.close());

  test('POST /api/auth/register {"email","password","name"}: success, data.user and the tokens', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/api/auth/register',
      headers: JSON_HEADERS,
      payload: JSON.stringify({ email, password: 'securepassword123', name: 'John Doe' }),
    });
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.body.success, true);
    const data = res.body.data as Record<string, unknown>;
    const user = data.user as Record<string, unknown>;
    assert.equal(typeof user.id, 'number');
    assert.equal(user.email, email);
    assert.equal(user.name, 'John Doe');
    assert.equal(data.token_type, 'bearer');
    assert.equal(typeof data.access_token, 'string');
    assert.equal(typeof data.refresh_token, 'string');
    const row = await sql<{ name: string }>`select name from users where email = ${email}`.execute(app.gatehouse.db);
    assert.equal(row.rows[0]?.name, 'John Doe', 'the name is stored');
  });

  test('POST /api/auth/login (form, as Swagger UI sends it): the token body inside data', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/api/auth/login',
      headers: FORM_HEADERS,
      payload: `username=${encodeURIComponent(email)}&password=securepassword123`,
    });
    assert.equal(res.status, 200, res.raw);
    assert.equal(res.body.success, true);
    const data = res.body.data as Record<string, unknown>;
    assert.equal(data.token_type, 'bearer');
    assert.equal(data.expires_in, 1800);
  });

  test('POST /api/auth/login/json {"email","password"}', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/api/auth/login/json',
      headers: JSON_HEADERS,
      payload: { email, password: 'securepassword123' },
    });
    assert.equal(res.status, 200, res.raw);
    tokens = res.body.data as Record<string, unknown>;
    for (const key of ['access_token', 'refresh_token', 'token_type', 'expires_in']) assert.ok(key in tokens, key);
  });

  test('POST /api/auth/refresh {"refresh_token"} and GET /api/auth/me with the bearer', async () => {
    const refreshed = await send(app, {
      method: 'POST',
      url: '/api/auth/refresh',
      headers: JSON_HEADERS,
      payload: { refresh_token: tokens.refresh_token },
    });
    assert.equal(refreshed.status, 200, refreshed.raw);
    tokens = refreshed.body.data as Record<string, unknown>;
    const me = await send(app, {
      method: 'GET',
      url: '/api/auth/me',
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    assert.equal(me.status, 200);
    assert.equal(me.body.success, true);
    assert.equal((me.body.data as { email: string }).email, email);
  });

  test('its three error responses: INVALID_CREDENTIALS, TOKEN_EXPIRED, UNAUTHORIZED', async () => {
    const wrong = await send(app, {
      method: 'POST',
      url: '/api/auth/login/json',
      headers: JSON_HEADERS,
      payload: { email, password: 'wrongpassword123' },
    });
    assert.equal(wrong.status, 401);
    assert.deepEqual(wrong.body, {
      success: false,
      error: { message: 'Invalid email or password', code: 'INVALID_CREDENTIALS' },
    });
    const anonymous = await send(app, { method: 'GET', url: '/api/auth/me' });
    assert.equal(anonymous.status, 401);
    assert.deepEqual(anonymous.body, { success: false, error: { message: 'Not authenticated', code: 'UNAUTHORIZED' } });
    clock.advance(31 * 60 * 1000);
    const expired = await send(app, {
      method: 'GET',
      url: '/api/auth/me',
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    assert.equal(expired.status, 401);
    assert.deepEqual(expired.body, { success: false, error: { message: 'Token has expired', code: 'TOKEN_EXPIRED' } });
  });

  test('change-password, forgot-password, logout: the envelope, a body where Gatehouse answers 204', async () => {
    const login = await send(app, {
      method: 'POST',
      url: '/api/auth/login/json',
      headers: JSON_HEADERS,
      payload: { email, password: 'securepassword123' },
    });
    const bearer = { authorization: `Bearer ${(login.body.data as { access_token: string }).access_token}` };
    const changed = await send(app, {
      method: 'POST',
      url: '/api/auth/change-password',
      headers: { ...JSON_HEADERS, ...bearer },
      payload: {
        current_password: 'securepassword123',
        new_password: 'newsecurepassword456',
        confirm_password: 'newsecurepassword456',
      },
    });
    assert.equal(changed.status, 200, changed.raw);
    assert.deepEqual(changed.body, { success: true, data: null });
    const forgot = await send(app, {
      method: 'POST',
      url: '/api/auth/forgot-password',
      headers: JSON_HEADERS,
      payload: { email },
    });
    assert.equal(forgot.status, 202);
    assert.equal(forgot.body.success, true);
    const again = await send(app, {
      method: 'POST',
      url: '/api/auth/login/json',
      headers: JSON_HEADERS,
      payload: { email, password: 'newsecurepassword456' },
    });
    const out = await send(app, {
      method: 'POST',
      url: '/api/auth/logout',
      headers: { authorization: `Bearer ${(again.body.data as { access_token: string }).access_token}` },
    });
    assert.deepEqual([out.status, out.body], [200, { success: true, data: null }]);
    const reset = await send(app, {
      method: 'POST',
      url: '/api/auth/reset-password',
      headers: JSON_HEADERS,
      payload: { token: 'nope', new_password: 'x', confirm_password: 'x' },
    });
    assert.equal(reset.body.success, false);
    const verify = await send(app, {
      method: 'POST',
      url: '/api/auth/verify-email',
      headers: JSON_HEADERS,
      payload: { token: 'nope' },
    });
    assert.equal(verify.body.success, false);
    assertKeys(verify.body.error, ['message', 'code']);
  });

  test("only the document's paths are aliased; /api/v1 keeps problem+json", async () => {
    assert.equal((await send(app, { method: 'POST', url: '/api/auth/logout-all' })).status, 404);
    assert.equal(
      (await send(app, { method: 'DELETE', url: '/api/auth/me', headers: JSON_HEADERS, payload: {} })).status,
      404,
    );
    const v1 = await send(app, { method: 'GET', url: '/api/v1/me' });
    assert.match(String(v1.headers['content-type']), /^application\/problem\+json/);
  });
});

describe('COMPAT=fastpy with the default policy', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ COMPAT: 'fastpy', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  });
  after(() => app.close());

  test("securepassword123 is refused in the document's error shape, and no tokens without REGISTER_RETURNS_TOKENS", async () => {
    const email = `${exampleName('user')}@example.com`;
    const res = await send(app, {
      method: 'POST',
      url: '/api/auth/register',
      headers: JSON_HEADERS,
      payload: { email, password: 'securepassword123', name: 'John Doe' },
    });
    assert.equal(res.status, 422);
    assert.equal(res.body.success, false);
    const error = res.body.error as { message: string; code: string; details: string[] };
    assert.equal(error.code, 'PASSWORD_POLICY');
    assert.equal(error.message, 'Password does not meet security requirements');
    assert.ok(error.details.includes('Password must contain at least one uppercase letter'));
    const ok = await send(app, {
      method: 'POST',
      url: '/api/auth/register',
      headers: JSON_HEADERS,
      payload: { email, password: 'Tangerine#Sky42!x', name: 'John Doe' },
    });
    assert.equal(ok.status, 201, ok.raw);
    assertKeys(ok.body.data, ['user']);
  });
});
