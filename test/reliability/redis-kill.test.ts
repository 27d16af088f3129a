import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { newUser, startApp, TEST_METRICS_TOKEN, uniqueName } from '../helpers.ts';
import { type Answer, closedLoop, postJson, send, tally } from '../support/load.ts';
import { sleep, waitUntil } from '../support/ports.ts';
import { postgresUnavailable, ThrowawayPostgres } from '../support/postgres.ts';
import { redisUnavailable, ThrowawayRedis } from '../support/redis.ts';

/** With the offline queue off, a Redis command fails at once; no request waits anywhere near this. */
const DEADLINE_MS = 8_000;

interface Sent extends Answer {
  kind: 'login' | 'me';
  sentAt: number;
}

describe('Redis killed during a login load', { skip: postgresUnavailable() || redisUnavailable() }, () => {
  let cluster: ThrowawayPostgres;
  let redis: ThrowawayRedis;
  let app: FastifyInstance;
  let base: string;
  let dataDir: string;
  const prefix = `t:${uniqueName()}:`;

  before(async () => {
    [cluster, redis] = await Promise.all([ThrowawayPostgres.start(), ThrowawayRedis.start()]);
    dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-data-'));
    app = await startApp({
      DATABASE_URL: await cluster.createDatabase('gatehouse'),
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: prefix,
      DATA_DIR: dataDir,
      REQUIRE_EMAIL_VERIFICATION: 'false',
      LOCKOUT_THRESHOLD: '3',
      METRICS_TOKEN: TEST_METRICS_TOKEN,
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  after(async () => {
    await app?.close();
    await Promise.all([redis?.kill(), cluster?.destroy()]);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const login = (username: string, password: string) =>
    postJson(`${base}/api/v1/login/json`, { username, password }, {}, DEADLINE_MS);
  const me = (token: string) =>
    send(`${base}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } }, DEADLINE_MS);

  test('logins and /me are served on the fallbacks throughout, a revocation made meanwhile holds, and Redis is used again', async () => {
    const users = Array.from({ length: 3 }, () => newUser());
    for (const user of users) {
      const res = await postJson(`${base}/api/v1/register`, user);
      assert.equal(res.status, 201, res.body);
    }
    const first = await login(String(users[0]?.username), String(users[0]?.password));
    assert.equal(first.status, 200, first.body);
    const { access_token: token } = JSON.parse(first.body) as { access_token: string };
    await waitUntil('revocations to be served from Redis', () => app.gatehouse.revocations.redisTrusted);

    let running = true;
    let killedAt = Number.POSITIVE_INFINITY;
    let resumingAt = Number.POSITIVE_INFINITY;
    let answers: Sent[] = [];
    let victimToken = '';
    const target = `nobody_${uniqueName()}`;
    const load = closedLoop(
      4,
      () => running,
      async (worker): Promise<Sent> => {
        const sentAt = performance.now();
        if (worker === 0) return { ...(await me(token)), kind: 'me', sentAt };
        const user = users[worker % users.length] as { username: string; password: string };
        return { ...(await login(user.username, user.password)), kind: 'login', sentAt };
      },
    );

    try {
      await sleep(1_500);
      await redis.kill();
      killedAt = performance.now();

      // While Redis is away: a logout (revocation) and a run of failures that must lock.
      const victim = await login(String(users[1]?.username), String(users[1]?.password));
      assert.equal(victim.status, 200, victim.body);
      victimToken = (JSON.parse(victim.body) as { access_token: string }).access_token;
      const loggedOut = await send(`${base}/api/v1/logout`, {
        method: 'POST',
        headers: { authorization: `Bearer ${victimToken}` },
      });
      assert.equal(loggedOut.status, 204, loggedOut.body);
      assert.equal((await me(victimToken)).status, 401, 'revoked at once, with Redis down');
      const failures: Answer['status'][] = [];
      for (let i = 0; i < 4; i++) failures.push((await login(target, 'Wrong-password-1!')).status);
      // LOCKOUT_THRESHOLD=3: the third failure locks; the fourth attempt is refused whatever the password.
      assert.equal(failures[0], 401);
      assert.ok(
        failures.slice(1, 3).every((s) => s === 401 || s === 423),
        String(failures),
      );
      assert.equal(failures[3], 423, `the lockout still counts, in PostgreSQL: ${failures}`);

      await sleep(1_500);
      resumingAt = performance.now();
      await redis.resume();
      await waitUntil('readiness to report Redis again', async () => (await send(`${base}/readyz`)).status === 200);
      await waitUntil('revocations to be served from Redis again', () => app.gatehouse.revocations.redisTrusted);
      await sleep(1_000);
    } finally {
      running = false;
      answers = await load;
    }

    assert.deepEqual(tally(answers), { 200: answers.length }, 'every login and /me answered 200');
    const outage = answers.filter((a) => a.sentAt > killedAt && a.sentAt + a.ms < resumingAt);
    assert.ok(
      outage.some((a) => a.kind === 'login'),
      'logins ran during the outage',
    );
    assert.ok(
      outage.some((a) => a.kind === 'me'),
      '/me ran during the outage',
    );

    // The new Redis started empty: the revocation made during the outage was copied back from PostgreSQL.
    const client = redis.client();
    try {
      assert.equal(await client.exists(`${prefix}revocations:synced`), 1);
      const revoked = await client.keys(`${prefix}revoked-session:*`);
      assert.equal(revoked.length, 1, 'the logged-out session is published in Redis again');
      assert.equal((await login(String(users[2]?.username), String(users[2]?.password))).status, 200);
      const limits = await client.keys(`${prefix}rl:login*`);
      assert.ok(limits.length > 0, 'login attempts are counted in Redis again');
    } finally {
      client.disconnect();
    }
    const after = await me(victimToken);
    assert.equal(after.status, 401, after.body);
    assert.equal((JSON.parse(after.body) as { code: string }).code, 'TOKEN_INVALID');
    assert.equal((await me(token)).status, 200);
    assert.equal((await login(target, 'Wrong-password-1!')).status, 423, 'still locked after Redis returned');

    const metrics = await send(`${base}/metrics`, { headers: { authorization: `Bearer ${TEST_METRICS_TOKEN}` } });
    for (const use of ['lockout', 'rate_limit']) {
      const fallbacks = new RegExp(`gatehouse_redis_fallback_total\\{use="${use}"\\} (\\d+)`).exec(metrics.body);
      assert.ok(Number(fallbacks?.[1]) > 0, `the ${use} fallback was counted`);
    }
  });
});
