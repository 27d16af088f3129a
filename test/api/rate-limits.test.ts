import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { newUser, requireService, startApp, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

async function redisReachable(): Promise<boolean> {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

function register(app: FastifyInstance, remoteAddress = '198.51.100.10'): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser(), remoteAddress });
}

function assertRateLimited(res: LightMyRequestResponse, limit: number, windowSeconds: number): void {
  const body = assertProblem(res, 429, 'RATE_LIMIT_EXCEEDED');
  assert.equal(body.detail, 'Rate limit exceeded. Please try again later.');
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(retryAfter >= 1 && retryAfter <= windowSeconds, `Retry-After ${retryAfter}`);
  assert.equal(body.retry_after, retryAfter);
  assert.equal(res.headers['ratelimit-limit'], String(limit));
  assert.equal(res.headers['ratelimit-remaining'], '0');
  assert.equal(res.headers['ratelimit-reset'], String(retryAfter));
  assert.equal(res.headers['ratelimit-policy'], `${limit};w=${windowSeconds}`);
}

describe('rate limits', () => {
  describe('registration with the default limit (5 per hour per client IP)', () => {
    let app: FastifyInstance;
    before(async () => {
      // undefined: the shipped default, not the test suite's relaxed one.
      app = await startApp({ RATE_LIMIT_REGISTER: undefined, REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    });
    after(() => app.close());

    test('five registrations succeed with RateLimit-* headers, the sixth answers 429 RATE_LIMIT_EXCEEDED', async () => {
      for (let i = 0; i < 5; i++) {
        const res = await register(app);
        assert.equal(res.statusCode, 201, res.body);
        assert.equal(res.headers['ratelimit-limit'], '5');
        assert.equal(res.headers['ratelimit-remaining'], String(4 - i));
        const reset = Number(res.headers['ratelimit-reset']);
        assert.ok(reset >= 1 && reset <= 3600);
      }
      const user = newUser();
      const refused = await app.inject({
        method: 'POST',
        url: '/api/v1/register',
        payload: user,
        remoteAddress: '198.51.100.10',
      });
      assertRateLimited(refused, 5, 3600);
      const created = await app.gatehouse.db
        .selectFrom('users')
        .select('id')
        .where('username', '=', String(user.username))
        .execute();
      assert.equal(created.length, 0, 'a refused request never reaches the flow');
    });

    test('another client IP has its own budget', async () => {
      assert.equal((await register(app, '198.51.100.11')).statusCode, 201);
    });

    test('bad requests count too: the limit is on attempts, and is checked before the body is read', async () => {
      for (let i = 0; i < 5; i++) {
        const res = await app.inject({
          method: 'POST',
          url: '/api/v1/register',
          headers: { 'content-type': 'application/json' },
          payload: '{not json',
          remoteAddress: '198.51.100.12',
        });
        assert.equal(res.statusCode, 400);
      }
      assertRateLimited(await register(app, '198.51.100.12'), 5, 3600);
    });

    test('IPv6 clients are counted per /64, so one host cannot rotate addresses past the limit', async () => {
      for (let i = 1; i <= 5; i++) {
        const res = await register(app, `2001:db8:1:2::${i.toString(16)}`);
        assert.equal(res.statusCode, 201, res.body);
      }
      assertRateLimited(await register(app, '2001:db8:1:2:ffff:1:2:3'), 5, 3600);
      assert.equal((await register(app, '2001:db8:1:3::1')).statusCode, 201);
    });
  });

  test('RATE_LIMIT_REGISTER tunes the limit and window', async () => {
    const app = await startApp({ RATE_LIMIT_REGISTER: '2/30s', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    try {
      assert.equal((await register(app)).statusCode, 201);
      assert.equal((await register(app)).statusCode, 201);
      assertRateLimited(await register(app), 2, 30);
    } finally {
      await app.close();
    }
  });

  test('without REDIS_URL the counters are in process: two instances count separately', async () => {
    const a = await startApp({ REDIS_URL: undefined, RATE_LIMIT_REGISTER: '1/1h' });
    const b = await startApp({ REDIS_URL: undefined, RATE_LIMIT_REGISTER: '1/1h' });
    try {
      assert.equal(a.gatehouse.redis, undefined);
      assert.equal((await register(a)).statusCode, 201);
      assert.equal((await register(b)).statusCode, 201);
      assert.equal((await register(a)).statusCode, 429);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('the HTML page and the API of one flow share one budget', async () => {
    const app = await startApp({ RATE_LIMIT_LOGIN: '2/1h', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    try {
      const apiLogin = () =>
        app.inject({
          method: 'POST',
          url: '/api/v1/login/json',
          payload: { username: uniqueName(), password: 'Not-the-password-1!' },
          remoteAddress: '198.51.100.30',
        });
      assert.equal((await apiLogin()).statusCode, 401);
      const page = await app.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'username=someone&password=guess',
        remoteAddress: '198.51.100.30',
      });
      assert.equal(page.headers['ratelimit-remaining'], '0', page.body);
      assertRateLimited(await apiLogin(), 2, 3600);
    } finally {
      await app.close();
    }
  });

  describe('with REDIS_URL', () => {
    let skip: string | false = false;
    before(async () => {
      skip = requireService('Redis', await redisReachable());
    });

    test('two instances on one Redis share the counters, under REDIS_KEY_PREFIX', async (t) => {
      if (skip) return t.skip(skip);
      const prefix = `t:${uniqueName()}:`;
      const env = { REDIS_URL, REDIS_KEY_PREFIX: prefix, RATE_LIMIT_REGISTER: '3/1h' };
      const a = await startApp(env);
      const b = await startApp(env);
      const inspect = new Redis(REDIS_URL);
      try {
        assert.equal((await register(a, '203.0.113.50')).statusCode, 201);
        assert.equal((await register(b, '203.0.113.50')).statusCode, 201);
        const third = await register(a, '203.0.113.50');
        assert.equal(third.statusCode, 201);
        assert.equal(third.headers['ratelimit-remaining'], '0');
        assertRateLimited(await register(b, '203.0.113.50'), 3, 3600);
        // rate-limiter-flexible's key, with the client's keyPrefix in front.
        assert.equal(await inspect.get(`${prefix}rl:register:203.0.113.50`), '4');
        const ttl = await inspect.ttl(`${prefix}rl:register:203.0.113.50`);
        assert.ok(ttl > 0 && ttl <= 3600);
      } finally {
        await inspect.del(`${prefix}rl:register:203.0.113.50`);
        inspect.disconnect();
        await a.close();
        await b.close();
      }
    });
  });

  describe('a block period past the limit (COUNT/WINDOW,block=DURATION)', () => {
    function login(app: FastifyInstance, remoteAddress: string): Promise<LightMyRequestResponse> {
      return app.inject({
        method: 'POST',
        url: '/api/v1/login/json',
        payload: { username: uniqueName(), password: 'wrong-password' },
        remoteAddress,
      });
    }

    test('past 2/1s,block=1h the client is refused for the hour, not just until the window resets', async () => {
      const app = await startApp({ RATE_LIMIT_LOGIN: '2/1s,block=1h', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
      try {
        assert.equal((await login(app, '192.0.2.70')).statusCode, 401);
        assert.equal((await login(app, '192.0.2.70')).statusCode, 401);
        const refused = await login(app, '192.0.2.70');
        assertProblem(refused, 429, 'RATE_LIMIT_EXCEEDED');
        const retryAfter = Number(refused.headers['retry-after']);
        assert.ok(retryAfter > 3500 && retryAfter <= 3600, `Retry-After ${retryAfter}: the rest of the block`);
        await new Promise((resolve) => setTimeout(resolve, 1300));
        const later = await login(app, '192.0.2.70');
        assertProblem(later, 429, 'RATE_LIMIT_EXCEEDED');
        const remaining = Number(later.headers['retry-after']);
        assert.ok(remaining > 3500 && remaining <= retryAfter, `Retry-After ${remaining} counts down the block`);
        assert.equal((await login(app, '192.0.2.71')).statusCode, 401, 'another client is not blocked');
      } finally {
        await app.close();
      }
    });

    test('without a block, the client may try again once the window resets', async () => {
      const app = await startApp({ RATE_LIMIT_LOGIN: '2/1s', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
      try {
        await login(app, '192.0.2.72');
        await login(app, '192.0.2.72');
        const refused = await login(app, '192.0.2.72');
        assertProblem(refused, 429, 'RATE_LIMIT_EXCEEDED');
        assert.equal(refused.headers['retry-after'], '1');
        await new Promise((resolve) => setTimeout(resolve, 1300));
        assert.equal((await login(app, '192.0.2.72')).statusCode, 401);
      } finally {
        await app.close();
      }
    });
  });
});
