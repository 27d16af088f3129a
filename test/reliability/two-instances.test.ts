import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { newUser, requireService, startApp, uniqueName, urlReachable } from '../helpers.ts';
import { type Answer, postJson, send } from '../support/load.ts';

const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

interface Instance {
  app: FastifyInstance;
  url: string;
}

/**
 * Two Gatehouse instances behind nothing but their own ports, on one
 * PostgreSQL and one Redis with one REDIS_KEY_PREFIX, configured with the
 * production limits: whatever one instance counts or revokes, the other
 * enforces. On the embedded default there is no shared database, so a
 * throwaway database on the machine's PostgreSQL stands in.
 */
describe('two instances on one PostgreSQL and one Redis', () => {
  let databaseUrl: string | undefined;
  let throwaway: string | undefined;
  let skip: string | false = false;
  const running: Instance[] = [];

  before(async () => {
    skip = requireService(`Redis at ${REDIS_URL}`, await urlReachable(REDIS_URL, 6379));
    if (process.env.DATABASE_URL) databaseUrl = process.env.DATABASE_URL;
    else {
      skip ||= requireService('PostgreSQL at 127.0.0.1:5432', await urlReachable(LOCAL_POSTGRES, 5432));
      if (skip) return;
      throwaway = `gatehouse_two_${uniqueName('i').toLowerCase()}`;
      const admin = new pg.Client({ connectionString: `${LOCAL_POSTGRES}/postgres` });
      await admin.connect();
      await admin.query(`create database ${throwaway}`);
      await admin.end();
      databaseUrl = `${LOCAL_POSTGRES}/${throwaway}`;
    }
  });
  after(async () => {
    for (const instance of running) await instance.app.close();
    if (!throwaway) return;
    const admin = new pg.Client({ connectionString: `${LOCAL_POSTGRES}/postgres` });
    await admin.connect();
    await admin.query(`drop database if exists ${throwaway} with (force)`);
    await admin.end();
  });

  /** A fresh pair with its own shared key prefix, so that each test starts from zero counts. */
  async function pair(): Promise<[Instance, Instance]> {
    const env = {
      DATABASE_URL: databaseUrl,
      REDIS_URL,
      REDIS_KEY_PREFIX: `t:${uniqueName('pair')}:`,
      RATE_LIMIT_REGISTER: '5/1h',
      RATE_LIMIT_LOGIN: '10/15m',
      LOCKOUT_THRESHOLD: '5',
      LOCKOUT_MINUTES: '15',
      REQUIRE_EMAIL_VERIFICATION: 'false',
      REFRESH_REUSE_INTERVAL_SECONDS: '0',
    };
    const start = async (): Promise<Instance> => {
      const app = await startApp(env);
      running.push({ app, url: '' });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const address = app.server.address();
      const instance = { app, url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}` };
      running[running.length - 1] = instance;
      return instance;
    };
    return [await start(), await start()];
  }

  const code = (a: Answer) => (JSON.parse(a.body) as { code?: string }).code;
  const login = (i: Instance, username: string, password: string) =>
    postJson(`${i.url}/api/v1/login/json`, { username, password });
  const me = (i: Instance, token: string) =>
    send(`${i.url}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } });

  test('the registration limit (5 per hour per client) is one budget across both instances', async (t) => {
    if (skip) return t.skip(skip);
    const [a, b] = await pair();
    const answers: Answer[] = [];
    for (const i of [a, b, a, b, a, b, a]) answers.push(await postJson(`${i.url}/api/v1/register`, newUser()));
    assert.deepEqual(
      answers.map((r) => r.status),
      [201, 201, 201, 201, 201, 429, 429],
    );
    assert.deepEqual(
      answers.slice(0, 5).map((r) => r.headers?.get('ratelimit-remaining')),
      ['4', '3', '2', '1', '0'],
      'each instance sees the count the other left',
    );
    for (const refused of answers.slice(5)) {
      assert.equal(code(refused), 'RATE_LIMIT_EXCEEDED');
      assert.ok(Number(refused.headers?.get('retry-after')) > 0);
    }
  });

  test('the login limit (10 per 15 minutes per client) is one budget across both instances', async (t) => {
    if (skip) return t.skip(skip);
    const [a, b] = await pair();
    const statuses: number[] = [];
    // Unknown, different users: no lockout gets in the way of counting attempts.
    for (let n = 0; n < 12; n++) {
      statuses.push((await login(n % 2 ? b : a, `nobody_${uniqueName()}`, 'Wrong-password-1!')).status as number);
    }
    assert.deepEqual(statuses, [...Array(10).fill(401), 429, 429]);
  });

  test('failures on both instances add up to one lockout, enforced on both', async (t) => {
    if (skip) return t.skip(skip);
    const [a, b] = await pair();
    const user = newUser();
    assert.equal((await postJson(`${a.url}/api/v1/register`, user)).status, 201);
    const username = String(user.username);
    const statuses: number[] = [];
    for (const i of [a, b, a, b]) statuses.push((await login(i, username, 'Wrong-password-1!')).status as number);
    assert.deepEqual(statuses, [401, 401, 401, 401]);
    // The fifth failure, on B, locks the identifier for both.
    const fifth = await login(b, username, 'Wrong-password-1!');
    assert.ok(fifth.status === 401 || fifth.status === 423, fifth.body);
    for (const i of [a, b]) {
      const locked = await login(i, username, String(user.password));
      assert.equal(locked.status, 423, `locked on ${i.url} even with the right password: ${locked.body}`);
      assert.equal(code(locked), 'ACCOUNT_LOCKED');
      assert.ok(Number(locked.headers?.get('retry-after')) > 0);
    }
  });

  test('a logout on one instance and a refresh-token reuse on the other revoke everywhere at once', async (t) => {
    if (skip) return t.skip(skip);
    const [a, b] = await pair();
    const user = newUser();
    assert.equal((await postJson(`${a.url}/api/v1/register`, user)).status, 201);

    const first = JSON.parse((await login(a, String(user.username), String(user.password))).body) as {
      access_token: string;
      refresh_token: string;
    };
    for (const i of [a, b]) assert.equal((await me(i, first.access_token)).status, 200);
    const out = await send(`${b.url}/api/v1/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${first.access_token}` },
    });
    assert.equal(out.status, 204, out.body);
    for (const i of [a, b]) {
      const refused = await me(i, first.access_token);
      assert.equal(refused.status, 401, `revoked on ${i.url}`);
      assert.equal(code(refused), 'TOKEN_INVALID');
    }

    // Rotate on A; the spent token presented on B revokes the family, and A refuses the new pair.
    const second = JSON.parse((await login(b, String(user.username), String(user.password))).body) as {
      access_token: string;
      refresh_token: string;
    };
    const rotated = await postJson(`${a.url}/api/v1/refresh`, { refresh_token: second.refresh_token });
    assert.equal(rotated.status, 200, rotated.body);
    const fresh = JSON.parse(rotated.body) as { access_token: string; refresh_token: string };
    assert.equal((await me(a, fresh.access_token)).status, 200);
    const reused = await postJson(`${b.url}/api/v1/refresh`, { refresh_token: second.refresh_token });
    assert.equal(reused.status, 401, reused.body);
    assert.equal(code(reused), 'REFRESH_TOKEN_REUSED');
    assert.equal((await me(a, fresh.access_token)).status, 401, 'the family is revoked on the other instance');
    assert.equal((await postJson(`${a.url}/api/v1/refresh`, { refresh_token: fresh.refresh_token })).status, 401);
  });
});
