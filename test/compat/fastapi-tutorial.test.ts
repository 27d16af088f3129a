import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { startApp, uniqueName } from '../helpers.ts';
import { exampleName, FORM_HEADERS, JSON_HEADERS, send } from './support.ts';

// 004_…: the FastAPI tutorial's POST /auth/signup {"username","email","hashed_password"} (the plain password,
// despite the name) and POST /auth/login (OAuth2PasswordRequestForm), FastAPI's {"detail": …} bodies.

describe("COMPAT=fastapi-tutorial with the tutorial's password rules (nist, 8)", () => {
  let app: FastifyInstance;
  const username = exampleName('enrico');
  before(async () => {
    app = await startApp({
      COMPAT: 'fastapi-tutorial',
      PASSWORD_POLICY: 'nist',
      PASSWORD_MIN_LENGTH: '8',
      REQUIRE_EMAIL_VERIFICATION: 'false',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
    });
  });
  after(() => app.close());

  test('POST /auth/signup as printed: 201 {"message": "User created", "user_id"}', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/auth/signup',
      headers: JSON_HEADERS,
      payload: { username, email: `${username}@example.com`, hashed_password: 'plaintextpassword' },
    });
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.body.message, 'User created');
    assert.equal(typeof res.body.user_id, 'number');
  });

  test('the same username again: 400 {"detail": "Username already exists"}', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/auth/signup',
      headers: JSON_HEADERS,
      payload: { username, email: `${exampleName('other')}@example.com`, hashed_password: 'plaintextpassword' },
    });
    assert.deepEqual([res.status, res.body], [400, { detail: 'Username already exists' }]);
  });

  test("a body its model refuses: FastAPI's 422 with loc and msg per field", async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/auth/signup',
      headers: JSON_HEADERS,
      payload: { username: exampleName('x') },
    });
    assert.equal(res.status, 422);
    const detail = res.body.detail as { loc: string[]; msg: string; type: string }[];
    assert.ok(
      detail.some((d) => d.loc.join('.') === 'body.hashed_password' && d.type === 'missing'),
      JSON.stringify(detail),
    );
    assert.ok(detail.some((d) => d.loc.join('.') === 'body.email'));
  });

  test('POST /auth/login, form as OAuth2PasswordRequestForm reads it: "Login successful", user_id, the tokens', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/auth/login',
      headers: FORM_HEADERS,
      payload: `username=${username}&password=plaintextpassword`,
    });
    assert.equal(res.status, 200, res.raw);
    assert.equal(res.body.message, 'Login successful');
    assert.equal(typeof res.body.user_id, 'number');
    assert.equal(res.body.token_type, 'bearer');
    assert.equal(typeof res.body.access_token, 'string');
  });

  test("multipart, as FastAPI's form parsing accepts it", async () => {
    const form = new FormData();
    form.append('username', username);
    form.append('password', 'plaintextpassword');
    const request = new Request('http://x/', { method: 'POST', body: form });
    const res = await send(app, {
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': String(request.headers.get('content-type')) },
      payload: Buffer.from(await request.arrayBuffer()),
    });
    assert.equal(res.status, 200, res.raw);
  });

  test('the tutorial\'s wrong password (username=enrico&password=secret123): 401 {"detail": "Invalid credentials"}', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/auth/login',
      headers: FORM_HEADERS,
      payload: `username=${username}&password=secret123`,
    });
    assert.deepEqual([res.status, res.body], [401, { detail: 'Invalid credentials' }]);
    assert.ok(res.headers['www-authenticate']);
  });
});

describe('COMPAT=fastapi-tutorial with the default policy', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ COMPAT: 'fastapi-tutorial', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  });
  after(() => app.close());

  test('plaintextpassword is refused in FastAPI\'s shape: 400 {"detail": "…"} naming the rules', async () => {
    const name = exampleName('enrico');
    const res = await send(app, {
      method: 'POST',
      url: '/auth/signup',
      headers: JSON_HEADERS,
      payload: { username: name, email: `${name}@example.com`, hashed_password: 'plaintextpassword' },
    });
    assert.equal(res.status, 400);
    assert.match(
      String(res.body.detail),
      /^Password does not meet security requirements: .*at least one uppercase letter/,
    );
    assert.deepEqual(Object.keys(res.body), ['detail']);
  });

  test('before the e-mail is verified, login answers 403 {"detail": …}', async () => {
    const name = exampleName('enrico');
    const password = 'Tangerine#Sky42!';
    await send(app, {
      method: 'POST',
      url: '/auth/signup',
      headers: JSON_HEADERS,
      payload: { username: name, email: `${name}@example.com`, hashed_password: password },
    });
    const res = await send(app, {
      method: 'POST',
      url: '/auth/login',
      headers: FORM_HEADERS,
      payload: `username=${name}&password=${encodeURIComponent(password)}`,
    });
    assert.equal(res.status, 403);
    assert.deepEqual(Object.keys(res.body), ['detail']);
  });
});
