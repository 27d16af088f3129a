import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { type DatabaseHandle, openDatabase } from '../../src/db/index.ts';
import { SYSTEM_CONTEXT } from '../../src/domain/request-context.ts';
import { lockoutSubject, unlockAccount } from '../../src/infra/lockout.ts';
import { type SiteverifyServer, startSiteverifyServer, TOKENS } from '../fixtures/siteverify-server.ts';
import { json, startApp, strongPassword, uniqueName } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { assertProblem } from '../support/problem.ts';
import { createAccount, loginRequest, type TestAccount } from './auth-helpers.ts';

function assertLocked(res: LightMyRequestResponse, maxSeconds = 15 * 60): number {
  const body = assertProblem(res, 423, 'ACCOUNT_LOCKED');
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(retryAfter > 0 && retryAfter <= maxSeconds, `Retry-After ${retryAfter}`);
  assert.equal(body.retry_after, retryAfter);
  assert.equal(body.error, 'invalid_grant');
  return retryAfter;
}

describe('account lockout through POST /api/v1/login', () => {
  let dataDir: string;
  let database: DatabaseHandle;
  let app: FastifyInstance;
  let other: FastifyInstance;
  let account: TestAccount;
  const clock = testClock();

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-lockout-api-'));
    database = await openDatabase(process.env.DATABASE_URL ?? 'memory://', dataDir);
    const env = { REDIS_KEY_PREFIX: `t:${uniqueName()}:` };
    app = await startApp(env, { database, clock });
    other = await startApp(env, { database, clock });
  });
  after(async () => {
    await app.close();
    await other.close();
    await database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const wrong = (instance: FastifyInstance, identifier: string) => loginRequest(instance, identifier, strongPassword());

  test('five wrong passwords answer 401; then 423 ACCOUNT_LOCKED with Retry-After, even with the right password', async () => {
    account = await createAccount(app);
    for (let i = 0; i < 5; i++) assertProblem(await wrong(app, account.username), 401, 'INVALID_CREDENTIALS');
    const locked = await loginRequest(app, account.username, account.password);
    assert.equal(assertLocked(locked), 15 * 60);
    assert.match(String(locked.headers['cache-control']), /no-store/);
    // The JSON alias shares the lock.
    const viaJson = await app.inject({
      method: 'POST',
      url: '/api/v1/login/json',
      payload: { username: account.username, password: account.password },
    });
    assertLocked(viaJson);
  });

  test('the lock is audited as account_locked, with the user, and visible in SQL', async () => {
    const row = await app.gatehouse.db
      .selectFrom('audit_logs')
      .selectAll()
      .where('action', '=', 'account_locked')
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(row.details, {
      identifier: `user:${account.id}`,
      source: 'untrusted',
      lock_count: 1,
      locked_minutes: 15,
    });
    const lock = await app.gatehouse.db
      .selectFrom('lockouts')
      .selectAll()
      .where('identifier', '=', `user:${account.id}`)
      .executeTakeFirstOrThrow();
    assert.equal(lock.source, 'untrusted');
    assert.ok(lock.locked_until && lock.locked_until > clock.now());
  });

  test('an identifier that belongs to nobody locks the same way: the lock reveals nothing', async () => {
    const nobody = uniqueName('nobody');
    const known = await createAccount(app);
    const answers: string[] = [];
    for (const identifier of [nobody, known.username]) {
      for (let i = 0; i < 5; i++) assertProblem(await wrong(app, identifier), 401, 'INVALID_CREDENTIALS');
      const res = await wrong(app, identifier);
      assertLocked(res);
      const { retry_after: _r, ...body } = json(res);
      answers.push(JSON.stringify(body));
    }
    assert.equal(answers[0], answers[1]);
  });

  test('the count is per account: failures by username and by email add up and lock both', async () => {
    const user = await createAccount(app);
    const typed = [user.username, user.email.toUpperCase(), ` ${user.email} `, user.username.toUpperCase(), user.email];
    for (const identifier of typed) assertProblem(await wrong(app, identifier), 401, 'INVALID_CREDENTIALS');
    assertLocked(await loginRequest(app, user.email, user.password));
    assertLocked(await loginRequest(app, user.username, user.password));
  });

  test('a name without an account is counted as typed, case-insensitively', async () => {
    const nobody = uniqueName('Nobody');
    for (let i = 0; i < 5; i++) await wrong(app, i % 2 ? nobody.toUpperCase() : ` ${nobody} `);
    assertLocked(await wrong(app, nobody.toLowerCase()));
    assert.equal((await app.gatehouse.lockout.check(lockoutSubject(undefined, nobody))).locked, true);
  });

  test('a success resets the count: only consecutive failures lock', async () => {
    const user = await createAccount(app);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) assertProblem(await wrong(app, user.username), 401, 'INVALID_CREDENTIALS');
      assert.equal((await loginRequest(app, user.username, user.password)).statusCode, 200);
    }
  });

  test('failures on two instances add up, and both refuse once locked', async () => {
    const user = await createAccount(app);
    for (let i = 0; i < 5; i++) {
      assertProblem(await wrong(i % 2 ? other : app, user.username), 401, 'INVALID_CREDENTIALS');
    }
    assertLocked(await loginRequest(app, user.username, user.password));
    assertLocked(await loginRequest(other, user.username, user.password));
  });

  test('the lock lifts after 15 minutes; the next one lasts 30; an admin unlock or success resets', async () => {
    const user = await createAccount(app);
    const lockNow = async () => {
      for (let i = 0; i < 5; i++) await wrong(app, user.username);
      return assertLocked(await loginRequest(app, user.username, user.password), 60 * 60);
    };
    assert.equal(await lockNow(), 15 * 60);
    clock.advance(15 * 60_000);
    assert.equal(await lockNow(), 30 * 60);
    clock.advance(30 * 60_000);
    assert.equal((await loginRequest(app, user.username, user.password)).statusCode, 200);
    assert.equal(await lockNow(), 15 * 60, 'a success forgot the earlier locks');

    const admin = await unlockAccount(app.gatehouse, user, { byUserId: null, via: 'cli' }, SYSTEM_CONTEXT);
    assert.equal(admin, true);
    assert.equal((await loginRequest(other, user.username, user.password)).statusCode, 200);
  });

  test('an account that is disabled or unverified does not count: the right password was given', async () => {
    const user = await createAccount(app, {}, { verified: false });
    for (let i = 0; i < 6; i++) {
      assertProblem(await loginRequest(app, user.username, user.password), 403, 'EMAIL_NOT_VERIFIED');
    }
    assert.equal((await app.gatehouse.lockout.check(lockoutSubject(user, user.username))).failures, 0);
  });
});

describe('login rate limit', () => {
  test('10 login attempts per 15 minutes per client IP by default, then 429 with Retry-After and RateLimit-*', async () => {
    const app = await startApp({ RATE_LIMIT_LOGIN: undefined, REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    try {
      for (let i = 0; i < 10; i++) {
        // A new identifier each time, so that the lockout is not what stops it.
        const res = await loginRequest(app, uniqueName('spray'), strongPassword());
        assertProblem(res, 401, 'INVALID_CREDENTIALS');
        assert.equal(res.headers['ratelimit-limit'], '10');
        assert.equal(res.headers['ratelimit-remaining'], String(9 - i));
      }
      const limited = await loginRequest(app, uniqueName('spray'), strongPassword());
      const body = assertProblem(limited, 429, 'RATE_LIMIT_EXCEEDED');
      assert.equal(body.detail, 'Rate limit exceeded. Please try again later.');
      const retryAfter = Number(limited.headers['retry-after']);
      assert.ok(retryAfter > 0 && retryAfter <= 15 * 60);
      assert.equal(limited.headers['ratelimit-remaining'], '0');
      assert.equal(limited.headers['ratelimit-reset'], String(retryAfter));
      const json = await app.inject({
        method: 'POST',
        url: '/api/v1/login/json',
        payload: { username: 'x', password: 'y' },
      });
      assertProblem(json, 429, 'RATE_LIMIT_EXCEEDED');
    } finally {
      await app.close();
    }
  });

  test('refresh has its own limit (RATE_LIMIT_REFRESH)', async () => {
    const app = await startApp({ RATE_LIMIT_REFRESH: '2/1m', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    try {
      for (let i = 0; i < 2; i++) {
        const res = await app.inject({ method: 'POST', url: '/api/v1/refresh', payload: { refresh_token: 'x' } });
        assert.equal(res.statusCode, 401, res.body);
      }
      const res = await app.inject({ method: 'POST', url: '/api/v1/refresh', payload: { refresh_token: 'x' } });
      assertProblem(res, 429, 'RATE_LIMIT_EXCEEDED');
      assert.equal(res.headers['ratelimit-policy'], '2;w=60');
    } finally {
      await app.close();
    }
  });
});

describe('CAPTCHA on login after repeated failures', () => {
  let server: SiteverifyServer;
  let app: FastifyInstance;
  before(async () => {
    server = await startSiteverifyServer('hcaptcha', 'login-secret');
    app = await startApp({
      CAPTCHA_PROVIDER: 'hcaptcha',
      CAPTCHA_SECRET_KEY: 'login-secret',
      CAPTCHA_VERIFY_URL: server.url,
      CAPTCHA_LOGIN_AFTER_FAILURES: '2',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
    });
  });
  after(async () => {
    await app.close();
    await server.close();
  });

  const attempt = (username: string, password: string, token?: string) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({
        username,
        password,
        ...(token === undefined ? {} : { 'h-captcha-response': token }),
      }).toString(),
    });

  test('no CAPTCHA is asked before CAPTCHA_LOGIN_AFTER_FAILURES failures', async () => {
    const user = await createAccount(app, { captcha_token: TOKENS.valid });
    server.requests.length = 0;
    assertProblem(await attempt(user.username, 'wrong-1'), 401, 'INVALID_CREDENTIALS');
    assert.equal((await attempt(user.username, user.password)).statusCode, 200);
    assert.equal(server.requests.length, 0);
  });

  test('after them the token is required (422 CAPTCHA_FAILED), verified, and a missing one does not count', async () => {
    const user = await createAccount(app, { captcha_token: TOKENS.valid });
    assertProblem(await attempt(user.username, 'wrong-1'), 401, 'INVALID_CREDENTIALS');
    assertProblem(await attempt(user.username, 'wrong-2'), 401, 'INVALID_CREDENTIALS');
    for (let i = 0; i < 5; i++) assertProblem(await attempt(user.username, user.password), 422, 'CAPTCHA_FAILED');
    assertProblem(await attempt(user.username, user.password, 'forged'), 422, 'CAPTCHA_FAILED');
    const { lockout } = app.gatehouse;
    assert.equal(
      (await lockout.check(lockoutSubject(user, user.username))).failures,
      2,
      'refused CAPTCHAs are not failures',
    );
    const ok = await attempt(user.username, user.password, TOKENS.valid);
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(server.requests.at(-1)?.form.response, TOKENS.valid);
    assert.equal((await attempt(user.username, user.password)).statusCode, 200, 'the success reset the count');
  });
});
