import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { startApp, uniqueName } from '../helpers.ts';
import { Browser } from '../support/browser.ts';
import { exampleName, JSON_HEADERS, send } from './support.ts';

// 003_…: POST /register and POST /login with JSON, `{"message": …}` bodies, 400 for every refused input.

const PASSWORD = 'Tangerine#Sky42!';

describe('COMPAT=simple-endpoints: the requests of 003_…', () => {
  let app: FastifyInstance;
  const username = exampleName('simple');
  const email = `${username}@example.com`;
  before(async () => {
    app = await startApp({
      COMPAT: 'simple-endpoints',
      REQUIRE_EMAIL_VERIFICATION: 'false',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
    });
  });
  after(() => app.close());

  test('POST /register {"username","email","password","language_code"}: 201 {"message": "User created successfully"}', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/register',
      headers: JSON_HEADERS,
      payload: { username, email, password: PASSWORD, language_code: 'pt-BR' },
    });
    assert.deepEqual([res.status, res.body], [201, { message: 'User created successfully' }], res.raw);
    const row = await sql<{ language_code: string }>`select language_code from users where email = ${email}`.execute(
      app.gatehouse.db,
    );
    assert.equal(row.rows[0]?.language_code, 'pt-BR');
  });

  test('language_code defaults to en', async () => {
    const name = exampleName('simple');
    const res = await send(app, {
      method: 'POST',
      url: '/register',
      headers: JSON_HEADERS,
      payload: { username: name, email: `${name}@example.com`, password: PASSWORD },
    });
    assert.equal(res.status, 201);
    const row = await sql<{ language_code: string }>`select language_code from users where username = ${name}`.execute(
      app.gatehouse.db,
    );
    assert.equal(row.rows[0]?.language_code, 'en');
  });

  test('its four 400 answers', async () => {
    const missing = await send(app, {
      method: 'POST',
      url: '/register',
      headers: JSON_HEADERS,
      payload: { username: exampleName('m') },
    });
    assert.deepEqual([missing.status, missing.body], [400, { message: 'Username, email, and password are required' }]);
    const weakName = exampleName('weak');
    const weak = await send(app, {
      method: 'POST',
      url: '/register',
      headers: JSON_HEADERS,
      payload: { username: weakName, email: `${weakName}@example.com`, password: 'password' },
    });
    assert.equal(weak.status, 400);
    assert.equal(weak.body.message, 'Password does not meet security requirements');
    const takenName = await send(app, {
      method: 'POST',
      url: '/register',
      headers: JSON_HEADERS,
      payload: { username, email: `${exampleName('o')}@example.com`, password: PASSWORD },
    });
    assert.deepEqual([takenName.status, takenName.body], [400, { message: 'User name already exists' }]);
    const takenEmail = await send(app, {
      method: 'POST',
      url: '/register',
      headers: JSON_HEADERS,
      payload: { username: exampleName('o'), email, password: PASSWORD },
    });
    assert.deepEqual([takenEmail.status, takenEmail.body], [400, { message: 'Email already exists' }]);
  });

  test('POST /login {"email","password"}: 200 with access_token (and the refresh token)', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/login',
      headers: JSON_HEADERS,
      payload: { email, password: PASSWORD },
    });
    assert.equal(res.status, 200, res.raw);
    assert.equal(typeof res.body.access_token, 'string');
    assert.equal(typeof res.body.refresh_token, 'string');
    // With a refresh token instead of credentials, /login issues a new access token.
    const refreshed = await send(app, {
      method: 'POST',
      url: '/login',
      headers: JSON_HEADERS,
      payload: { refresh_token: res.body.refresh_token },
    });
    assert.equal(refreshed.status, 200, refreshed.raw);
    assert.equal(typeof refreshed.body.access_token, 'string');
    const bearer = await send(app, {
      method: 'POST',
      url: '/login',
      headers: { ...JSON_HEADERS, authorization: `Bearer ${refreshed.body.refresh_token}` },
      payload: {},
    });
    assert.equal(bearer.status, 200, bearer.raw);
  });

  test('a bad token: 401 {"message": "Invalid token"}; bad credentials: 401 {"message": …}', async () => {
    const token = await send(app, {
      method: 'POST',
      url: '/login',
      headers: JSON_HEADERS,
      payload: { refresh_token: 'not-a-token' },
    });
    assert.deepEqual([token.status, token.body], [401, { message: 'Invalid token' }]);
    const bearer = await send(app, {
      method: 'POST',
      url: '/login',
      headers: { ...JSON_HEADERS, authorization: 'Bearer not.a.token' },
      payload: {},
    });
    assert.deepEqual([bearer.status, bearer.body], [401, { message: 'Invalid token' }]);
    const wrong = await send(app, {
      method: 'POST',
      url: '/login',
      headers: JSON_HEADERS,
      payload: { email, password: 'Wrong#Sky42!xx' },
    });
    assert.deepEqual([wrong.status, wrong.body], [401, { message: 'Invalid email or password' }]);
    const missing = await send(app, { method: 'POST', url: '/login', headers: JSON_HEADERS, payload: { email } });
    assert.deepEqual([missing.status, missing.body], [400, { message: 'Email and password are required' }]);
  });

  test('the pages keep their forms: a browser form post still goes to the page with its CSRF token', async () => {
    const browser = new Browser(app);
    const name = exampleName('page');
    const res = await browser.submit('/register', {
      username: name,
      email: `${name}@example.com`,
      password: PASSWORD,
      confirm_password: PASSWORD,
    });
    assert.equal(res.statusCode, 303, res.body);
    assert.match(String(res.headers.location), /^\/login/);
  });
});
