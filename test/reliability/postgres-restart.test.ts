import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { logCapture, newUser, startApp } from '../helpers.ts';
import { type Answer, closedLoop, postJson, send, tally } from '../support/load.ts';
import { sleep, waitUntil } from '../support/ports.ts';
import { postgresUnavailable, ThrowawayPostgres } from '../support/postgres.ts';

/**
 * A registration's answer must come before this: the pool gives up on a new
 * connection after 5 s, so a request that waits longer is hanging.
 */
const DEADLINE_MS = 8_000;

interface Sent extends Answer {
  username: string;
  sentAt: number;
}

describe('PostgreSQL restarted during a registration load', { skip: postgresUnavailable() }, () => {
  let cluster: ThrowawayPostgres;
  let app: FastifyInstance;
  let base: string;
  let dataDir: string;
  let admin: pg.Client;
  const logs = logCapture();

  before(async () => {
    cluster = await ThrowawayPostgres.start();
    const url = await cluster.createDatabase('gatehouse');
    dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-data-'));
    app = await startApp(
      { DATABASE_URL: url, REDIS_URL: undefined, DATA_DIR: dataDir },
      { logger: { level: 'error', stream: logs.stream } },
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    admin = new pg.Client({ connectionString: url });
  });
  after(async () => {
    await admin?.end().catch(() => {});
    await app?.close();
    await cluster?.destroy();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('every 201 user exists afterwards, the outage answers 503 with Retry-After at once, and service resumes alone', async () => {
    let running = true;
    let stoppedAt = Number.POSITIVE_INFINITY;
    let resumingAt = Number.POSITIVE_INFINITY;
    const register = async (): Promise<Sent> => {
      const user = newUser({ organization_name: `Org ${Math.random().toString(36).slice(2)}` });
      const sentAt = performance.now();
      const answer = await postJson(`${base}/api/v1/register`, user, {}, DEADLINE_MS);
      return { ...answer, username: String(user.username), sentAt };
    };
    const load = closedLoop(4, () => running, register);
    let answers: Sent[] = [];
    try {
      await sleep(1_500);
      await cluster.stop();
      stoppedAt = performance.now();
      const down = await send(`${base}/readyz`, {}, DEADLINE_MS);
      assert.equal(down.status, 503, 'readiness reports the database down');
      assert.equal((JSON.parse(down.body) as { checks: Record<string, string> }).checks.database, 'down');
      assert.equal((await send(`${base}/healthz`, {}, DEADLINE_MS)).status, 200, 'the process itself is up');
      await sleep(2_000);
      resumingAt = performance.now();
      await cluster.resume();
      // Recovery needs no restart of Gatehouse: the pool reconnects on the next request.
      await waitUntil('a registration to succeed again', async () => {
        const answer = await postJson(`${base}/api/v1/register`, newUser(), {}, DEADLINE_MS);
        return answer.status === 201;
      });
      await sleep(1_500);
    } finally {
      running = false;
      answers = await load;
    }

    const counts = tally(answers);
    // Nothing but success or a clean 503: no 500, no hang, no dropped connection.
    assert.deepEqual(
      Object.keys(counts).filter((s) => s !== '201' && s !== '503'),
      [],
      JSON.stringify(counts),
    );
    const outage = answers.filter((a) => a.sentAt > stoppedAt && a.sentAt + a.ms < resumingAt);
    assert.ok(outage.length > 0, `no request fell inside the outage: ${JSON.stringify(counts)}`);
    for (const a of answers.filter((x) => x.status === 503)) {
      assert.match(String(a.headers?.get('content-type')), /^application\/problem\+json/);
      const body = JSON.parse(a.body) as { code: string; retry_after: number };
      assert.equal(body.code, 'SERVICE_UNAVAILABLE');
      assert.ok(Number(a.headers?.get('retry-after')) > 0, 'Retry-After');
      assert.equal(body.retry_after, Number(a.headers?.get('retry-after')));
      assert.doesNotMatch(a.body, /ECONNREFUSED|terminat|57P0|postgres|sql/i, 'no internal detail leaks');
    }
    for (const a of outage) assert.equal(a.status, 503, `during the outage: ${a.status} ${a.body}`);
    assert.ok(
      answers.some((a) => a.status === 201 && a.sentAt > resumingAt),
      `no registration succeeded after the restart under load: ${JSON.stringify(counts)}`,
    );

    await admin.connect();
    const created = answers.filter((a) => a.status === 201).map((a) => a.username);
    const { rows } = await admin.query<{ username: string }>('select username from users where username = any($1)', [
      created,
    ]);
    assert.equal(rows.length, created.length, 'every user answered 201 is in the database');

    // A 503 may have come after a commit whose acknowledgement was lost; either way the user is whole.
    const { rows: broken } = await admin.query(
      `
      select u.username from users u
      where u.username = any($1)
        and (not exists (select 1 from memberships m join roles r on r.id = m.role_id
                         where m.user_id = u.id and r.name = 'admin')
             or (select count(*) from roles r join memberships m on m.organization_id = r.organization_id
                 where m.user_id = u.id) <> 3
             or not exists (select 1 from audit_logs a where a.user_id = u.id and a.action = 'user_registration'))`,
      [answers.map((a) => a.username)],
    );
    assert.deepEqual(broken, []);

    // The operator's log names the fault the client is not told about (a refused or reset connection, a shutdown).
    const failures = logs.lines
      .filter((l) => l.includes('"request failed"'))
      .map((l) => (JSON.parse(l) as { err: { message: string } }).err.message);
    assert.ok(failures.length > 0);
    assert.deepEqual(
      failures.filter((m) => m === 'Service temporarily unavailable'),
      [],
    );

    const ready = await send(`${base}/readyz`);
    assert.equal(ready.status, 200, ready.body);
  });
});
