import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { sql } from 'kysely';
import { newUser, startApp, uniqueName } from '../helpers.ts';
import { redisUnavailable, ThrowawayRedis } from '../support/redis.ts';

/** Redis stays paused this long: far longer than any request may wait for it. */
const PAUSE_MS = 30_000;
/** A request that needed Redis must have its answer well within the pause. */
const ANSWER_WITHIN_MS = 10_000;

/**
 * A Redis that accepts connections and commands but never answers (paused,
 * swapped out, stuck behind a slow script): commands time out and every use
 * of Redis falls back, instead of requests waiting as long as Redis does.
 */
describe('Redis that hangs', { skip: redisUnavailable() }, () => {
  let redis: ThrowawayRedis;
  let control: Redis;
  let app: FastifyInstance;

  before(async () => {
    redis = await ThrowawayRedis.start();
    control = redis.client();
    app = await startApp({
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      REQUIRE_EMAIL_VERIFICATION: 'false',
    });
  });
  after(async () => {
    await control?.call('CLIENT', 'UNPAUSE').catch(() => {});
    control?.disconnect();
    await app?.close();
    await redis?.kill();
  });

  function withinPause<T>(what: string, request: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} waited for the paused Redis`)), ANSWER_WITHIN_MS);
    });
    return Promise.race([request, late]).finally(() => clearTimeout(timer));
  }

  test('registration and login answer on the fallbacks while every Redis command hangs', async () => {
    const user = newUser();
    const registered = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(registered.statusCode, 201, registered.body);
    assert.equal(app.gatehouse.redis?.status, 'ready');

    // Every client's commands wait until the pause ends; connections stay open.
    assert.equal(await control.call('CLIENT', 'PAUSE', String(PAUSE_MS), 'ALL'), 'OK');

    const other = newUser();
    const registeredMeanwhile = await withinPause(
      'registration',
      app.inject({ method: 'POST', url: '/api/v1/register', payload: other }),
    );
    assert.equal(registeredMeanwhile.statusCode, 201, registeredMeanwhile.body);
    const wrong = await withinPause(
      'a failed login',
      app.inject({ method: 'POST', url: '/api/v1/login/json', payload: { ...user, password: `${user.password}x` } }),
    );
    assert.equal(wrong.statusCode, 401, wrong.body);
    // The failure was counted on the fallback, PostgreSQL, so it still counts toward a lockout.
    const counted = await app.gatehouse.db
      .selectFrom('lockouts')
      .innerJoin('users', (join) => join.on(sql<boolean>`lockouts.identifier = 'user:' || users.id`))
      .select('lockouts.failures')
      .where('users.username', '=', String(user.username))
      .where('lockouts.source', '=', 'untrusted')
      .executeTakeFirst();
    assert.equal(counted?.failures, 1);

    const right = await withinPause(
      'a login',
      app.inject({
        method: 'POST',
        url: '/api/v1/login/json',
        payload: { username: user.username, password: user.password },
      }),
    );
    assert.equal(right.statusCode, 200, right.body);
    const { access_token } = right.json() as { access_token: string };
    const sessions = await withinPause(
      'a guarded request',
      app.inject({ url: '/api/v1/sessions', headers: { authorization: `Bearer ${access_token}` } }),
    );
    assert.equal(sessions.statusCode, 200, sessions.body);
  });
});
