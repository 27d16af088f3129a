import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { startApp, uniqueName } from '../helpers.ts';
import { exampleName, FORM_HEADERS, JSON_HEADERS, send } from './support.ts';

// 000_…: the DePIN Scanner guide. Its paths are Gatehouse's own; COMPAT=depin changes the bodies of /api/v1 errors.
// Its example address is printed as "[email protected]" (an e-mail obfuscation artefact); a real address stands in.

describe('COMPAT=depin: the requests of 000_…, as printed', () => {
  let app: FastifyInstance;
  const username = exampleName('johndoe');
  const registration = (organization: string) => ({
    email: `${username}@example.com`,
    username,
    password: 'MySecureP@ssw0rd123!',
    confirm_password: 'MySecureP@ssw0rd123!',
    first_name: 'John',
    last_name: 'Doe',
    organization_name: organization,
  });
  before(async () => {
    app = await startApp({
      COMPAT: 'depin',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      REQUIRE_EMAIL_VERIFICATION: 'false',
    });
  });
  after(() => app.close());

  test('curl POST /api/v1/register: 201 with the documented members', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/api/v1/register',
      headers: JSON_HEADERS,
      payload: registration('Acme Corporation'),
    });
    assert.equal(res.status, 201, res.raw);
    for (const key of [
      'id',
      'uuid',
      'email',
      'username',
      'first_name',
      'last_name',
      'is_active',
      'email_verified',
      'created_at',
      'message',
    ]) {
      assert.ok(key in res.body, `${key} in ${res.raw}`);
    }
    assert.equal(res.body.username, username);
    assert.equal(res.body.email_verified, false);
    assert.equal(res.body.is_active, true);
    assert.match(String(res.body.message), /^User account created successfully/);
    assert.deepEqual((res.body.organization as { role: string }).role, 'admin');
  });

  test('the same request again (the Python and JavaScript examples): 409 {"detail": "Email address is already registered"}', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/api/v1/register',
      headers: JSON_HEADERS,
      payload: registration('Acme Corporation'),
    });
    assert.equal(res.status, 409);
    assert.equal(res.body.detail, 'Email address is already registered');
    assert.equal(res.body.error_code, 'EMAIL_TAKEN');
    assert.equal(res.body.code, 'EMAIL_TAKEN');
    const taken = await send(app, {
      method: 'POST',
      url: '/api/v1/register',
      headers: JSON_HEADERS,
      payload: { ...registration('My Organization'), email: `${exampleName('other')}@example.com` },
    });
    assert.equal(taken.body.detail, 'Username is already taken');
  });

  test('a weak password: detail.message and detail.issues, as its clients read them', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/api/v1/register',
      headers: JSON_HEADERS,
      payload: {
        ...registration('My Organization'),
        username: exampleName('weak'),
        email: `${exampleName('weak')}@example.com`,
        password: 'Short1',
        confirm_password: 'Short1',
      },
    });
    assert.equal(res.status, 422);
    const detail = res.body.detail as { message: string; issues: string[] };
    assert.equal(detail.message, 'Password does not meet security requirements');
    assert.ok(detail.issues.includes('Password must be at least 12 characters long'), JSON.stringify(detail));
    assert.ok(detail.issues.includes('Password must contain at least one special character'));
    assert.equal(res.body.error_code, 'PASSWORD_POLICY');
  });

  test('a leetspeak common word is refused; the example password is not', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/api/v1/register',
      headers: JSON_HEADERS,
      payload: {
        email: `${exampleName('leet')}@example.com`,
        username: exampleName('leet'),
        password: 'P@ssw0rd1234!',
      },
    });
    assert.equal(res.status, 422);
    assert.ok((res.body.detail as { issues: string[] }).issues.includes('Password must not contain common patterns'));
  });

  test('a breached password: detail.message and detail.recommendation', async () => {
    const name = exampleName('breach');
    const res = await send(app, {
      method: 'POST',
      url: '/api/v1/register',
      headers: JSON_HEADERS,
      payload: { email: `${name}@example.com`, username: name, password: 'S0nyer1c$$0n' },
    });
    assert.equal(res.status, 422, res.raw);
    assert.deepEqual(res.body.detail, {
      message: 'Password has been found in data breaches',
      recommendation: 'Please choose a different password that has not been compromised',
    });
    assert.equal(res.body.error_code, 'PASSWORD_BREACHED');
  });

  test('curl POST /api/v1/login (form) then GET /api/v1/me with the bearer', async () => {
    const login = await send(app, {
      method: 'POST',
      url: '/api/v1/login',
      headers: FORM_HEADERS,
      payload: `username=${username}&password=MySecureP@ssw0rd123!`,
    });
    assert.equal(login.status, 200, login.raw);
    const me = await send(app, {
      method: 'GET',
      url: '/api/v1/me',
      headers: { authorization: `Bearer ${login.body.access_token}` },
    });
    assert.equal(me.status, 200);
    assert.equal(me.body.username, username);
    const wrong = await send(app, {
      method: 'POST',
      url: '/api/v1/login',
      headers: FORM_HEADERS,
      payload: `username=${username}&password=nope`,
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error_code, 'INVALID_CREDENTIALS');
    assert.equal(typeof wrong.body.detail, 'string');
  });

  test('its audit queries run as printed, and refused registrations are kept', async () => {
    const db = app.gatehouse.db;
    const attempts =
      await sql`SELECT * FROM login_attempts WHERE attempted_at > NOW() - INTERVAL '24 hours' ORDER BY attempted_at DESC;`.execute(
        db,
      );
    assert.ok(attempts.rows.length > 0);
    const audit = await sql<{
      action: string;
    }>`SELECT * FROM audit_logs WHERE action = 'user_registration' ORDER BY created_at DESC LIMIT 10;`.execute(db);
    assert.ok(audit.rows.length > 0);
    assert.ok(audit.rows.every((row) => row.action === 'user_registration'));
    const refused = await sql<{
      reason: string;
    }>`SELECT * FROM registration_attempts WHERE attempted_at > NOW() - INTERVAL '24 hours' AND username = ${username} ORDER BY attempted_at DESC;`.execute(
      db,
    );
    assert.ok(
      refused.rows.some((row) => row.reason === 'EMAIL_TAKEN'),
      JSON.stringify(refused.rows),
    );
  });
});

describe('COMPAT=depin: the rate limit answer', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ COMPAT: 'depin', REDIS_KEY_PREFIX: `t:${uniqueName()}:`, RATE_LIMIT_REGISTER: '1/1h' });
  });
  after(() => app.close());

  test('429 {"detail": "Rate limit exceeded. Please try again later.", "error_code": "RATE_LIMIT_EXCEEDED"}', async () => {
    const body = { email: 'x', username: 'x', password: 'x' };
    await send(app, { method: 'POST', url: '/api/v1/register', headers: JSON_HEADERS, payload: body });
    const res = await send(app, { method: 'POST', url: '/api/v1/register', headers: JSON_HEADERS, payload: body });
    assert.equal(res.status, 429);
    assert.equal(res.body.detail, 'Rate limit exceeded. Please try again later.');
    assert.equal(res.body.error_code, 'RATE_LIMIT_EXCEEDED');
    assert.ok(res.headers['retry-after']);
  });
});

describe('without COMPAT, /api/v1 keeps problem+json', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  });
  after(() => app.close());

  test('no error_code, detail a string, application/problem+json', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/api/v1/register',
      headers: JSON_HEADERS,
      payload: { email: 'a@example.com', username: exampleName('p'), password: 'short' },
    });
    assert.equal(res.status, 422);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(typeof res.body.detail, 'string');
    assert.equal('error_code' in res.body, false);
  });
});
