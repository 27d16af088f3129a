import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { type DatabaseHandle, openDatabase } from '../../src/db/index.ts';
import { logCapture, newUser, scrapeMetrics, startApp, TEST_METRICS_TOKEN, uniqueName } from '../helpers.ts';
import { recordFailure } from '../support/lockout.ts';
import { redisUnavailable, ThrowawayRedis } from '../support/redis.ts';

/**
 * Two instances on one database and one Redis of the test's own, which the
 * test kills and restarts: limits keep working in process, lockout counters
 * move to PostgreSQL (so that the instances still share them), and both come
 * back to Redis when it returns.
 */
describe('Redis outage', () => {
  const skip = redisUnavailable();
  let redis: ThrowawayRedis;
  let inspect: Redis;
  let dataDir: string;
  let database: DatabaseHandle;
  let a: FastifyInstance;
  let b: FastifyInstance;
  const logsA = logCapture();
  const logsB = logCapture();
  const prefix = `t:${uniqueName()}:`;

  before(async () => {
    if (skip) return;
    redis = await ThrowawayRedis.start();
    inspect = new Redis(redis.url, { lazyConnect: true, retryStrategy: () => 100 });
    // The test's own client sees the outage too; its reconnect errors are expected.
    inspect.on('error', () => {});
    dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-outage-'));
    database = await openDatabase(process.env.DATABASE_URL ?? 'memory://', dataDir);
    const env = {
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: prefix,
      RATE_LIMIT_REGISTER: '3/1h',
      METRICS_TOKEN: TEST_METRICS_TOKEN,
    };
    a = await startApp(env, { database, logger: { level: 'info', stream: logsA.stream } });
    b = await startApp(env, { database, logger: { level: 'info', stream: logsB.stream } });
  });
  after(async () => {
    if (skip) return;
    await a?.close();
    await b?.close();
    inspect?.disconnect();
    await redis?.kill();
    await database?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const register = (app: FastifyInstance, ip: string) =>
    app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser(), remoteAddress: ip });
  const lockoutRow = (identifier: string) =>
    database.db.selectFrom('lockouts').selectAll().where('identifier', '=', identifier).executeTakeFirst();
  const fallbacks = async (app: FastifyInstance, use: string) => {
    const metric = await app.gatehouse.metrics.registry.getSingleMetric('gatehouse_redis_fallback_total')?.get();
    return metric?.values.find((v) => v.labels.use === use)?.value ?? 0;
  };
  const redisStatus = (...apps: FastifyInstance[]) => apps.map((app) => app.gatehouse.redis?.status);
  async function waitFor(condition: () => boolean): Promise<void> {
    while (!condition()) await sleep(20);
  }

  const outageIdentifier = `name:${uniqueName('outage')}`;
  /** Three failures counted in PostgreSQL during the outage, two more once Redis is back. */
  const carriedIdentifier = `name:${uniqueName('carried')}`;

  test('with Redis up, limits and lockout counters live in Redis', async (t) => {
    if (skip) return t.skip(skip);
    await inspect.connect();
    assert.equal((await register(a, '198.51.100.1')).statusCode, 201);
    assert.equal(await inspect.get(`${prefix}rl:register:198.51.100.1`), '1');

    const id = `name:${uniqueName('up')}`;
    await recordFailure(a.gatehouse.lockout, id);
    await recordFailure(b.gatehouse.lockout, id);
    assert.equal(await inspect.hget(`${prefix}lockout:${id}`, 'f:untrusted'), '2');
    assert.equal(await lockoutRow(id), undefined, 'no PostgreSQL write per failure while Redis is up');
    assert.equal(await fallbacks(a, 'rate_limit'), 0);
    assert.equal(await fallbacks(a, 'lockout'), 0);
  });

  test('with Redis down, requests are still served and limited in process, with a warning and a metric', async (t) => {
    if (skip) return t.skip(skip);
    await redis.kill();
    await waitFor(() => redisStatus(a, b).every((s) => s !== 'ready'));

    for (let i = 0; i < 3; i++) assert.equal((await register(a, '198.51.100.2')).statusCode, 201);
    const limited = await register(a, '198.51.100.2');
    assert.equal(limited.statusCode, 429, 'the in-process fallback still limits');
    assert.ok((await fallbacks(a, 'rate_limit')) >= 4);
    const warning = logsA.lines
      .map((l) => JSON.parse(l))
      .find((l) => l.msg?.includes('rate limits are counted in process'));
    assert.equal(warning?.level, 40);

    const metrics = await scrapeMetrics(a);
    assert.match(metrics.body, /gatehouse_redis_fallback_total\{use="rate_limit"\} [1-9]/);
  });

  test('with Redis down, lockout counters fall back to PostgreSQL and are still shared by both instances', async (t) => {
    if (skip) return t.skip(skip);
    for (let i = 0; i < 4; i++) {
      assert.equal(await recordFailure((i % 2 === 0 ? a : b).gatehouse.lockout, outageIdentifier), undefined);
      const state = await (i % 2 === 0 ? b : a).gatehouse.lockout.check(outageIdentifier);
      assert.equal(state.failures, i + 1, 'each instance sees the other one’s failures');
    }
    const fifth = await recordFailure(b.gatehouse.lockout, outageIdentifier);
    assert.ok(fifth, 'five failures over two instances lock, not five on each');
    assert.equal((await a.gatehouse.lockout.check(outageIdentifier)).locked, true);
    const row = await lockoutRow(outageIdentifier);
    assert.ok(row?.locked_until && row.locked_until > new Date());
    assert.ok((await fallbacks(b, 'lockout')) >= 1);
    assert.ok(logsB.lines.some((l) => l.includes('lockout counters are kept in PostgreSQL')));
    for (let i = 0; i < 3; i++) await recordFailure(a.gatehouse.lockout, carriedIdentifier);
  });

  const loginIdentifier = uniqueName('outage-login');
  const login = (app: FastifyInstance, password: string) =>
    app.inject({ method: 'POST', url: '/api/v1/login/json', payload: { username: loginIdentifier, password } });

  test('with Redis down, failed logins spread over both instances still lock after five (423)', async (t) => {
    if (skip) return t.skip(skip);
    for (let i = 0; i < 5; i++) {
      const res = await login(i % 2 === 0 ? a : b, `Wrong-password-${i}!`);
      assert.equal(res.statusCode, 401, res.body);
    }
    for (const app of [a, b]) {
      const res = await login(app, 'Another-guess-1!');
      assert.equal(res.statusCode, 423, res.body);
      assert.ok(Number(res.headers['retry-after']) > 0);
    }
  });

  test('when Redis returns it is used again, and the lock from the outage still holds', async (t) => {
    if (skip) return t.skip(skip);
    await redis.resume();
    await waitFor(() => redisStatus(a, b).every((s) => s === 'ready'));
    const before = { rateLimit: await fallbacks(a, 'rate_limit'), lockout: await fallbacks(a, 'lockout') };

    assert.equal((await a.gatehouse.lockout.check(outageIdentifier)).locked, true);
    assert.equal((await b.gatehouse.lockout.check(outageIdentifier)).locked, true);
    assert.equal((await login(b, 'Another-guess-2!')).statusCode, 423);

    assert.equal((await register(a, '198.51.100.3')).statusCode, 201);
    assert.equal((await register(b, '198.51.100.3')).statusCode, 201);
    assert.equal(await inspect.get(`${prefix}rl:register:198.51.100.3`), '2', 'both instances count in Redis again');

    const id = `name:${uniqueName('after')}`;
    await recordFailure(a.gatehouse.lockout, id);
    await recordFailure(b.gatehouse.lockout, id);
    assert.equal(await inspect.hget(`${prefix}lockout:${id}`, 'f:untrusted'), '2');
    assert.equal(await lockoutRow(id), undefined);

    // Failures counted in PostgreSQL during the outage still count: two more lock.
    assert.equal((await b.gatehouse.lockout.check(carriedIdentifier)).failures, 3);
    assert.equal(await recordFailure(b.gatehouse.lockout, carriedIdentifier), undefined);
    assert.deepEqual(await recordFailure(a.gatehouse.lockout, carriedIdentifier), { lockCount: 1, minutes: 15 });
    await assert.rejects(b.gatehouse.lockout.reserve(carriedIdentifier, 'untrusted'), /Too many failed login attempts/);

    assert.equal(await fallbacks(a, 'rate_limit'), before.rateLimit);
    assert.equal(await fallbacks(a, 'lockout'), before.lockout);
  });
});
