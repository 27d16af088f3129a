import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { requireUser } from '../../src/plugin.ts';
import { reachable, requireService, testConfig, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import { redisUnavailable, ThrowawayRedis } from '../support/redis.ts';
import { bearer, createAccount, login, type TestAccount } from './auth-helpers.ts';

const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432';
const LOCAL_REDIS = { host: '127.0.0.1', port: 6379 };

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (condition()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting until ${what}`);
}

/**
 * Two app instances must share one PostgreSQL. With DATABASE_URL that is it;
 * on the embedded default (one PGlite per process) a throwaway database on
 * the local PostgreSQL stands in.
 */
describe('revocation reaches every instance', () => {
  let databaseUrl: string | undefined;
  let throwaway: string | undefined;
  let skip: string | false = false;

  before(async () => {
    if (process.env.DATABASE_URL) {
      databaseUrl = process.env.DATABASE_URL;
      return;
    }
    skip = requireService('PostgreSQL at 127.0.0.1:5432', await reachable('127.0.0.1', 5432));
    if (skip) return;
    throwaway = `gatehouse_test_${uniqueName('revocation').toLowerCase()}`;
    const admin = new pg.Client({ connectionString: `${LOCAL_POSTGRES}/postgres` });
    await admin.connect();
    await admin.query(`create database ${throwaway}`);
    await admin.end();
    databaseUrl = `${LOCAL_POSTGRES}/${throwaway}`;
  });

  after(async () => {
    if (!throwaway) return;
    const admin = new pg.Client({ connectionString: `${LOCAL_POSTGRES}/postgres` });
    await admin.connect();
    await admin.query(`drop database if exists ${throwaway} with (force)`);
    await admin.end();
  });

  async function twoInstances(redisUrl: string): Promise<[FastifyInstance, FastifyInstance]> {
    // One key prefix for both: they share Redis the way two production instances do.
    const env = { DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: `t:${uniqueName('rev')}:` };
    const a = await startGuardedApp(env);
    try {
      return [a, await startGuardedApp(env)];
    } catch (error) {
      await a.close();
      throw error;
    }
  }

  /** An instance with a host route behind the exported guard, as an application mounts it. */
  async function startGuardedApp(env: Record<string, string | undefined>): Promise<FastifyInstance> {
    const app = await buildApp(testConfig(env));
    app.get('/guarded', { preHandler: requireUser }, async (request) => ({ user: request.auth.userUuid }));
    await app.ready();
    return app;
  }

  /** The guard alone: token, then revocation check (Redis when trusted, else PostgreSQL), no other read. */
  const guarded = (app: FastifyInstance, token: string) => app.inject({ url: '/guarded', headers: bearer(token) });
  const me = (app: FastifyInstance, token: string) => app.inject({ url: '/api/v1/me', headers: bearer(token) });

  /** The first check on an instance reads PostgreSQL; from then on the instance answers from Redis. */
  async function warm(app: FastifyInstance, token: string): Promise<void> {
    assert.equal((await guarded(app, token)).statusCode, 200);
    assert.equal((await guarded(app, token)).statusCode, 200);
  }

  test('with one Redis: logout, logout-all and DELETE /sessions on one instance are refused on the other at once', async (t) => {
    if (skip) return t.skip(skip);
    const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    if (!process.env.REDIS_URL) {
      const missing = requireService('Redis at 127.0.0.1:6379', await reachable(LOCAL_REDIS.host, LOCAL_REDIS.port));
      if (missing) return t.skip(missing);
    }
    const [a, b] = await twoInstances(redisUrl);
    try {
      assert.equal(a.gatehouse.revocations.redisTrusted, true);
      assert.equal(b.gatehouse.revocations.redisTrusted, true);
      const account: TestAccount = await createAccount(a);

      const one = await login(a, account);
      await warm(b, one.access_token);
      assert.equal(
        (await a.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(one.access_token) })).statusCode,
        204,
      );
      assertProblem(await guarded(b, one.access_token), 401, 'TOKEN_INVALID');

      const two = await login(b, account);
      const three = await login(b, account);
      await warm(a, two.access_token);
      await warm(a, three.access_token);
      const sid = String(decodeJwt(two.access_token).sid);
      const del = await b.inject({
        method: 'DELETE',
        url: `/api/v1/sessions/${sid}`,
        headers: bearer(three.access_token),
      });
      assert.equal(del.statusCode, 204);
      assertProblem(await guarded(a, two.access_token), 401, 'TOKEN_INVALID');
      assert.equal((await guarded(a, three.access_token)).statusCode, 200);

      const out = await b.inject({ method: 'POST', url: '/api/v1/logout-all', headers: bearer(three.access_token) });
      assert.equal(out.statusCode, 204);
      assertProblem(await guarded(a, three.access_token), 401, 'TOKEN_INVALID');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('a revocation written only to PostgreSQL reaches the Redis fast path at the next sync', async (t) => {
    if (skip) return t.skip(skip);
    const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    if (!process.env.REDIS_URL) {
      const missing = requireService('Redis at 127.0.0.1:6379', await reachable(LOCAL_REDIS.host, LOCAL_REDIS.port));
      if (missing) return t.skip(missing);
    }
    const [a, b] = await twoInstances(redisUrl);
    try {
      const account = await createAccount(a);
      const tokens = await login(a, account);
      await warm(b, tokens.access_token);
      // Written behind Gatehouse's back: Redis does not know yet, and the fast path does not read PostgreSQL.
      await a.gatehouse.db
        .updateTable('sessions')
        .set({ revoked_at: new Date(), revoked_reason: 'admin' })
        .where('uuid', '=', String(decodeJwt(tokens.access_token).sid))
        .execute();
      assert.equal((await guarded(b, tokens.access_token)).statusCode, 200);
      // GET /me reads the account and the session's revocation from PostgreSQL in one statement: refused at once.
      assertProblem(await me(b, tokens.access_token), 401, 'TOKEN_INVALID');
      await a.gatehouse.revocations.sync();
      assertProblem(await guarded(b, tokens.access_token), 401, 'TOKEN_INVALID');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('with Redis stopped: logout on one instance is refused on the other, and still refused after Redis returns empty', async (t) => {
    if (skip) return t.skip(skip);
    const missing = redisUnavailable();
    if (missing) return t.skip(missing);

    const redis = await ThrowawayRedis.start();
    const port = redis.port;
    const [a, b] = await twoInstances(redis.url);
    let c: FastifyInstance | undefined;
    try {
      assert.equal(b.gatehouse.revocations.redisTrusted, true);
      const account = await createAccount(a);
      const doomed = await login(a, account);
      const survivor = await login(a, account);
      await warm(b, doomed.access_token);
      await warm(b, survivor.access_token);

      await redis.kill();
      const out = await a.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(doomed.access_token) });
      assert.equal(out.statusCode, 204, out.body);
      assertProblem(await guarded(b, doomed.access_token), 401, 'TOKEN_INVALID');
      assertProblem(await guarded(a, doomed.access_token), 401, 'TOKEN_INVALID');
      assert.equal((await guarded(b, survivor.access_token)).statusCode, 200, 'PostgreSQL answers while Redis is down');
      assert.equal(b.gatehouse.revocations.redisTrusted, false);
      // The instance that revoked goes away before Redis returns: only PostgreSQL remembers the revocation.
      await a.close();

      // Redis returns with nothing in it: the revocation made during the outage must not be forgotten.
      await redis.resume();
      await until('the other instance trusts Redis again', () => b.gatehouse.revocations.redisTrusted);
      assertProblem(await guarded(b, doomed.access_token), 401, 'TOKEN_INVALID');
      assert.equal((await guarded(b, survivor.access_token)).statusCode, 200);
      const sid = String(decodeJwt(doomed.access_token).sid);
      const direct = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
      try {
        await direct.connect();
        assert.equal(await direct.exists(`${b.gatehouse.config.redisKeyPrefix}revoked-session:${sid}`), 1);
      } finally {
        direct.disconnect();
      }

      // A new instance knows it too, and a logout made now is refused on the other instance as before.
      c = await startGuardedApp({
        DATABASE_URL: databaseUrl,
        REDIS_URL: redis.url,
        REDIS_KEY_PREFIX: b.gatehouse.config.redisKeyPrefix,
      });
      assert.equal(c.gatehouse.revocations.redisTrusted, true);
      assertProblem(await guarded(c, doomed.access_token), 401, 'TOKEN_INVALID');
      await warm(c, survivor.access_token);
      const out2 = await b.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(survivor.access_token) });
      assert.equal(out2.statusCode, 204);
      assertProblem(await guarded(c, survivor.access_token), 401, 'TOKEN_INVALID');
    } finally {
      await Promise.all([a.close(), b.close(), c?.close()]);
      await redis.kill();
    }
  });
});
