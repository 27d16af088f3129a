import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, newUser, startApp, uniqueName } from '../helpers.ts';
import { Browser, csrfTokenOf } from '../support/browser.ts';
import { assertProblem } from '../support/problem.ts';

const JSON_HEADERS = { 'content-type': 'application/json' };

describe('page endpoints posted with JSON answer as the API', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ REQUIRE_EMAIL_VERIFICATION: 'false', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  });
  after(() => app.close());

  test('JSON POST /register: 201 with the body of POST /api/v1/register, no CSRF token needed', async () => {
    const user = newUser({ first_name: 'Ada' });
    const res = await app.inject({ method: 'POST', url: '/register', headers: JSON_HEADERS, payload: user });
    assert.equal(res.statusCode, 201, res.body);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = json(res);
    assert.equal(body.username, user.username);
    assert.equal(body.email, user.email);
    assert.equal(body.first_name, 'Ada');
    assert.equal(typeof body.uuid, 'string');
    assert.equal(res.headers['ratelimit-policy'] !== undefined, true, 'the register rate limit counts it');

    const api = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
    assert.deepEqual(Object.keys(json(api)).sort(), Object.keys(body).sort());
  });

  test('JSON POST /register errors are problem+json with the API status', async () => {
    const user = newUser();
    await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    const again = await app.inject({
      method: 'POST',
      url: '/register',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      payload: JSON.stringify({ ...user, username: `${user.username}x` }),
    });
    assertProblem(again, 409, 'EMAIL_TAKEN');
    const weak = await app.inject({
      method: 'POST',
      url: '/register',
      headers: JSON_HEADERS,
      payload: newUser({ password: 'short' }),
    });
    assertProblem(weak, 422, 'PASSWORD_POLICY');
    const broken = await app.inject({ method: 'POST', url: '/register', headers: JSON_HEADERS, payload: '{"email":' });
    assertProblem(broken, 400, 'MALFORMED_REQUEST');
  });

  test('JSON POST /login answers tokens; wrong credentials 401 problem+json', async () => {
    const user = newUser();
    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/register', payload: user })).statusCode, 201);
    const res = await app.inject({
      method: 'POST',
      url: '/login',
      headers: JSON_HEADERS,
      payload: { username: user.username, password: user.password },
    });
    assert.equal(res.statusCode, 200, res.body);
    const body = json(res);
    assert.equal(body.token_type, 'bearer');
    assert.equal(typeof body.access_token, 'string');
    assert.equal(typeof body.refresh_token, 'string');
    assert.equal(res.headers['cache-control'], 'no-store');
    const byEmail = await app.inject({
      method: 'POST',
      url: '/login',
      headers: JSON_HEADERS,
      payload: { email: user.email, password: user.password },
    });
    assert.equal(byEmail.statusCode, 200, byEmail.body);
    const wrong = await app.inject({
      method: 'POST',
      url: '/login',
      headers: JSON_HEADERS,
      payload: { username: user.username, password: 'not-the-password' },
    });
    assertProblem(wrong, 401, 'INVALID_CREDENTIALS');
  });

  test('JSON POST /forgot-password answers as the API', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/forgot-password',
      headers: JSON_HEADERS,
      payload: { email: 'nobody@example.com' },
    });
    const api = await app.inject({
      method: 'POST',
      url: '/api/v1/forgot-password',
      payload: { email: 'nobody@example.com' },
    });
    assert.equal(res.statusCode, api.statusCode, res.body);
    assert.deepEqual(json(res), json(api));
  });

  test('a form post without a CSRF token is still refused with 403, and a form with another Origin too', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const res = await app.inject({
      method: 'POST',
      url: '/register',
      headers: form,
      payload: new URLSearchParams(newUser() as Record<string, string>).toString(),
    });
    assert.equal(res.statusCode, 403, res.body);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    const crossSite = await app.inject({
      method: 'POST',
      url: '/login',
      headers: { ...form, origin: 'https://evil.example' },
      payload: 'username=a&password=b',
    });
    assert.equal(crossSite.statusCode, 403);
    // text/plain is what a cross-site form can send without a preflight: still the page, still refused.
    const plain = await app.inject({
      method: 'POST',
      url: '/login',
      headers: { 'content-type': 'text/plain' },
      payload: '{"username":"a","password":"b"}',
    });
    assert.notEqual(plain.statusCode, 200);
    assert.match(String(plain.headers['content-type']), /^text\/html/);
  });

  test('a JSON POST with a cross-site Origin gets no CORS grant: a browser could not have sent or read it', async () => {
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/register',
      headers: {
        origin: 'https://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    });
    assert.equal(preflight.headers['access-control-allow-origin'], undefined);
    assert.notEqual(preflight.statusCode, 204);
    const res = await app.inject({
      method: 'POST',
      url: '/login',
      headers: { ...JSON_HEADERS, origin: 'https://evil.example' },
      payload: { username: 'nobody', password: 'x' },
    });
    assertProblem(res, 401, 'INVALID_CREDENTIALS');
    assert.equal(res.headers['access-control-allow-origin'], undefined);
  });

  test('GET pages are unchanged, and the OpenAPI document lists each route once, under the API prefix', async () => {
    const page = await app.inject({ method: 'GET', url: '/register', headers: JSON_HEADERS });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    const doc = json(await app.inject({ method: 'GET', url: '/openapi.json' }));
    const paths = Object.keys(doc.paths as Record<string, unknown>);
    assert.ok(paths.includes('/api/v1/register'));
    assert.ok(paths.includes('/api/v1/login'));
    for (const path of [
      '/register',
      '/login',
      '/verify-email',
      '/resend-verification',
      '/forgot-password',
      '/reset-password',
    ]) {
      assert.ok(!paths.includes(path), `${path} in the OpenAPI document`);
    }
    assert.equal(new Set(paths).size, paths.length);
    assert.ok(!paths.some((path) => path.endsWith('/')), 'no trailing-slash twins');
  });
});

describe('trailing slashes', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ REQUIRE_EMAIL_VERIFICATION: 'false', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  });
  after(() => app.close());

  test('/register/, /login/ and /api/v1/login/ answer as without the slash', async () => {
    for (const url of ['/register/', '/login/']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
      assert.match(String(res.headers['content-type']), /^text\/html/);
    }
    const user = newUser();
    const created = await app.inject({ method: 'POST', url: '/api/v1/register/', payload: user });
    assert.equal(created.statusCode, 201, created.body);
    const viaPage = await app.inject({ method: 'POST', url: '/register/', headers: JSON_HEADERS, payload: newUser() });
    assert.equal(viaPage.statusCode, 201, viaPage.body);
    const login = await app.inject({
      method: 'POST',
      url: '/api/v1/login/',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ username: user.username, password: user.password }).toString(),
    });
    assert.equal(login.statusCode, 200, login.body);
    const loginPage = await app.inject({
      method: 'POST',
      url: '/login/',
      headers: JSON_HEADERS,
      payload: { username: user.username, password: user.password },
    });
    assert.equal(loginPage.statusCode, 200, loginPage.body);
  });

  test('a registration form with redirect_to="/login/" lands on a page that exists', async () => {
    const browser = new Browser(app);
    const user = newUser();
    const res = await browser.submit('/register/', {
      email: user.email,
      username: user.username,
      password: user.password,
      confirm_password: user.password,
      redirect_to: '/login/',
    });
    assert.equal(res.statusCode, 303, res.body);
    assert.equal(res.headers.location, '/login/');
    const next = await app.inject({ method: 'GET', url: '/login/' });
    assert.equal(next.statusCode, 200);
  });
});

/** A real multipart/form-data body, as a browser or an HTTP client library encodes it. */
async function multipart(
  fields: Record<string, string | Blob>,
): Promise<{ headers: Record<string, string>; payload: Buffer }> {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  const request = new Request('http://gatehouse.test/', { method: 'POST', body: form });
  return {
    headers: { 'content-type': String(request.headers.get('content-type')) },
    payload: Buffer.from(await request.arrayBuffer()),
  };
}

describe('multipart/form-data bodies', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ REQUIRE_EMAIL_VERIFICATION: 'false', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  });
  after(() => app.close());

  test('POST /api/v1/register and /api/v1/login accept multipart fields', async () => {
    const user = newUser();
    const created = await app.inject({ method: 'POST', url: '/api/v1/register', ...(await multipart(user)) });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(json(created).username, user.username);
    const login = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      ...(await multipart({ grant_type: 'password', username: user.username, password: user.password })),
    });
    assert.equal(login.statusCode, 200, login.body);
    assert.equal(typeof json(login).access_token, 'string');
    const wrong = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      ...(await multipart({ username: user.username, password: 'wrong' })),
    });
    assertProblem(wrong, 401, 'INVALID_CREDENTIALS');
  });

  test('the JSON-only /api/v1/login/json refuses multipart with 415', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/login/json',
      ...(await multipart({ username: 'a', password: 'b' })),
    });
    assertProblem(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('a file part, a broken body or a missing boundary is 400 MALFORMED_REQUEST; an oversized one 413', async () => {
    const file = await multipart({ username: 'a', password: 'b', avatar: new File(['x'], 'a.png') });
    assertProblem(await app.inject({ method: 'POST', url: '/api/v1/login', ...file }), 400, 'MALFORMED_REQUEST');
    const good = await multipart({ username: 'a', password: 'b' });
    const truncated = { headers: good.headers, payload: good.payload.subarray(0, good.payload.length - 20) };
    assertProblem(await app.inject({ method: 'POST', url: '/api/v1/login', ...truncated }), 400, 'MALFORMED_REQUEST');
    const noBoundary = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': 'multipart/form-data' },
      payload: 'garbage',
    });
    assertProblem(noBoundary, 400, 'MALFORMED_REQUEST');
    const big = await multipart({ username: 'a', password: 'x'.repeat(20_000) });
    assertProblem(await app.inject({ method: 'POST', url: '/api/v1/login', ...big }), 413, 'PAYLOAD_TOO_LARGE');
  });

  test('the register page takes a multipart form with its CSRF token, and refuses one without', async () => {
    const browser = new Browser(app);
    const page = await browser.get('/register');
    const token = csrfTokenOf(page.body);
    const user = newUser();
    const body = await multipart({ ...user, confirm_password: user.password, csrf_token: token });
    const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    const res = await app.inject({
      method: 'POST',
      url: '/register',
      headers: { ...body.headers, cookie },
      payload: body.payload,
    });
    assert.equal(res.statusCode, 303, res.body);
    const other = await multipart(newUser());
    const without = await app.inject({
      method: 'POST',
      url: '/register',
      headers: { ...other.headers, cookie },
      payload: other.payload,
    });
    assert.equal(without.statusCode, 403, without.body);
    assert.match(String(without.headers['content-type']), /^text\/html/);
  });
});

test('with read-only pages a JSON post to a page path is refused with 405 like a form', async () => {
  const app = await startApp({ PAGES_READ_ONLY: 'true', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  try {
    const res = await app.inject({ method: 'POST', url: '/register', headers: JSON_HEADERS, payload: newUser() });
    assert.equal(res.statusCode, 405, res.body);
    assert.equal(res.headers.allow, 'GET, HEAD');
  } finally {
    await app.close();
  }
});
