import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { startApp, testConfig, uniqueName } from '../helpers.ts';
import { Browser } from '../support/browser.ts';
import { exampleName, FORM_HEADERS, JSON_HEADERS, send } from './support.ts';

// 001_…: piccolo_api's register endpoint, mounted at '/register/' with redirect_to="/login/".

const PASSWORD = 'Tangerine#Sky42!';

function registration() {
  const username = exampleName('piccolo');
  return { username, email: `${username}@example.com`, password: PASSWORD, confirm_password: PASSWORD };
}

describe('COMPAT=piccolo: the register endpoint of 001_…', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({
      COMPAT: 'piccolo',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      // user_defaults={"active": True} and the RateLimitingMiddleware of the document.
      PAGES_USER_DEFAULTS: '{"active": true}',
      RATE_LIMIT_REGISTER: '20/1h,block=24h',
    });
  });
  after(() => app.close());

  test('GET /register/ renders the registration form', async () => {
    const res = await send(app, { method: 'GET', url: '/register/' });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.match(res.raw, /<form[^>]*method="post"/i);
  });

  test('a JSON POST to /register/ registers and redirects to /login/ (303)', async () => {
    const user = registration();
    const res = await send(app, { method: 'POST', url: '/register/', headers: JSON_HEADERS, payload: user });
    assert.equal(res.status, 303, res.raw);
    assert.equal(res.headers.location, '/login/');
    const login = await send(app, {
      method: 'POST',
      url: '/api/v1/login',
      payload: { username: user.username, password: PASSWORD },
    });
    assert.equal(login.status, 403, 'the account exists (and waits for its e-mail verification)');
    assert.equal(login.body.code, 'EMAIL_NOT_VERIFIED');
  });

  test('a form POST by a program (no CSRF cookie, no Origin) registers the same way', async () => {
    const user = registration();
    const res = await send(app, {
      method: 'POST',
      url: '/register/',
      headers: FORM_HEADERS,
      payload: new URLSearchParams(user).toString(),
    });
    assert.equal(res.status, 303, res.raw);
    assert.equal(res.headers.location, '/login/');
    const form = new FormData();
    for (const [key, value] of Object.entries(registration())) form.append(key, value);
    const request = new Request('http://x/', { method: 'POST', body: form });
    const multipart = await send(app, {
      method: 'POST',
      url: '/register',
      headers: { 'content-type': String(request.headers.get('content-type')) },
      payload: Buffer.from(await request.arrayBuffer()),
    });
    assert.equal(multipart.status, 303, multipart.raw);
  });

  test('its refusals: 401 {"detail": …} in piccolo_api words', async () => {
    const user = registration();
    await send(app, { method: 'POST', url: '/register/', headers: JSON_HEADERS, payload: user });
    const again = await send(app, { method: 'POST', url: '/register/', headers: JSON_HEADERS, payload: user });
    assert.equal(again.status, 401);
    assert.deepEqual(again.body, { detail: 'User with email or username already exists.' });
    const missing = await send(app, {
      method: 'POST',
      url: '/register/',
      headers: JSON_HEADERS,
      payload: { username: 'x' },
    });
    assert.deepEqual([missing.status, missing.body], [401, { detail: 'Form is invalid. Missing one or more fields.' }]);
    const mismatch = await send(app, {
      method: 'POST',
      url: '/register/',
      headers: JSON_HEADERS,
      payload: { ...registration(), confirm_password: 'Other#Sky42!xx' },
    });
    assert.deepEqual([mismatch.status, mismatch.body], [401, { detail: 'Passwords do not match.' }]);
    const weak = await send(app, {
      method: 'POST',
      url: '/register/',
      headers: JSON_HEADERS,
      payload: { ...registration(), password: 'short', confirm_password: 'short' },
    });
    assert.equal(weak.status, 401);
    assert.match(
      String(weak.body.detail),
      /^Password does not meet security requirements: Password must be at least 12/,
    );
  });

  test('a browser form post still needs its CSRF token: cross-site or without the token it is refused', async () => {
    const crossSite = await send(app, {
      method: 'POST',
      url: '/register',
      headers: { ...FORM_HEADERS, origin: 'https://evil.example' },
      payload: new URLSearchParams(registration()).toString(),
    });
    assert.equal(crossSite.status, 403);
    assert.match(String(crossSite.headers['content-type']), /^text\/html/);
    const browser = new Browser(app);
    await browser.get('/register');
    const noToken = await browser.post('/register', registration());
    assert.equal(noToken.statusCode, 403);
    assert.match(noToken.body, /This form has expired/);
  });
});

describe('COMPAT=piccolo: the rate limit with a block period', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({
      COMPAT: 'piccolo',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      RATE_LIMIT_REGISTER: '2/1h,block=24h',
    });
  });
  after(() => app.close());

  test('past the limit the program is refused for the block period', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      statuses.push(
        (await send(app, { method: 'POST', url: '/register/', headers: JSON_HEADERS, payload: registration() })).status,
      );
    }
    assert.deepEqual(statuses, [303, 303, 429]);
    const blocked = await send(app, {
      method: 'POST',
      url: '/register/',
      headers: JSON_HEADERS,
      payload: registration(),
    });
    assert.equal(blocked.status, 429);
    assert.ok(
      Number(blocked.headers['retry-after']) > 3600,
      `blocked for a day, not the window: ${blocked.headers['retry-after']}`,
    );
    assert.equal(blocked.body.detail, 'Rate limit exceeded. Please try again later.');
  });
});

describe('COMPAT: profiles that claim the same path', () => {
  test('piccolo and simple-endpoints both answer POST /register: start-up refuses, naming both', () => {
    assert.throws(
      () => testConfig({ COMPAT: 'piccolo,simple-endpoints' }),
      (error: Error) => {
        assert.match(error.message, /^COMPAT: /);
        assert.match(error.message, /"piccolo"/);
        assert.match(error.message, /"simple-endpoints"/);
        assert.match(error.message, /POST \/register/);
        return true;
      },
    );
  });

  test('an unknown profile is named, with the known ones', () => {
    assert.throws(
      () => testConfig({ COMPAT: 'depin,kratos' }),
      /unknown profile "kratos"; known: depin, piccolo, fastpy, simple-endpoints, fastapi-tutorial/,
    );
  });

  test('every profile but the colliding pair can be on at once', async () => {
    const config = testConfig({ COMPAT: ' depin , fastpy,simple-endpoints,fastapi-tutorial,depin' });
    assert.deepEqual(config.compat, ['depin', 'fastpy', 'simple-endpoints', 'fastapi-tutorial']);
  });

  test('PAGES_USER_DEFAULTS {"active": false} is refused with a reason', () => {
    assert.throws(() => testConfig({ PAGES_USER_DEFAULTS: '{"active": false}' }), /"active" can only be true/);
  });
});
