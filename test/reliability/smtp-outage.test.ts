import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { newUser, startApp } from '../helpers.ts';
import { TestMailServer } from '../mail-server.ts';
import { waitUntil } from '../support/ports.ts';
import { postgresUnavailable, ThrowawayPostgres } from '../support/postgres.ts';

/**
 * test/infra/outbox.test.ts covers one instance riding out an SMTP outage.
 * This is the deployment variant: two instances share the outbox, one of them
 * is restarted while mail is waiting, and each mail still goes out once.
 */
describe('SMTP down with two instances, one restarted meanwhile', { skip: postgresUnavailable() }, () => {
  let cluster: ThrowawayPostgres;
  let smtp: TestMailServer;
  let dataDir: string;
  let env: Record<string, string | undefined>;
  const apps: FastifyInstance[] = [];
  const start = async () => {
    const app = await startApp(env);
    apps.push(app);
    return app;
  };

  before(async () => {
    cluster = await ThrowawayPostgres.start();
    smtp = await TestMailServer.start();
    dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-data-'));
    env = {
      DATABASE_URL: await cluster.createDatabase('gatehouse'),
      REDIS_URL: undefined,
      DATA_DIR: dataDir,
      SMTP_URL: smtp.url,
      OUTBOX_POLL_MS: '50',
      OUTBOX_RETRY_BASE_MS: '50',
      OUTBOX_MAX_ATTEMPTS: '30',
    };
  });
  after(async () => {
    for (const app of apps) await app.close();
    await smtp?.stop();
    await cluster?.destroy();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('mail queued while SMTP is down is delivered after it returns, exactly once, by whichever instance', async () => {
    const a = await start();
    const b = await start();
    await smtp.stop();
    const users = Array.from({ length: 10 }, () => newUser());
    for (const [i, user] of users.entries()) {
      const res = await (i % 2 ? b : a).inject({ method: 'POST', url: '/api/v1/register', payload: user });
      assert.equal(res.statusCode, 201, res.body);
    }
    const rows = () =>
      b.gatehouse.db
        .selectFrom('email_outbox')
        .select(['to_address', 'status', 'attempts', 'last_error'])
        .where(
          'to_address',
          'in',
          users.map((u) => String(u.email)),
        )
        .execute();
    await waitUntil('every mail to have failed at least once', async () => {
      const list = await rows();
      return list.length === users.length && list.every((r) => r.last_error !== null);
    });
    for (const r of await rows()) assert.equal(r.status, 'pending', 'a failed delivery keeps the mail');

    // One instance goes away for good, a fresh one takes its place.
    await a.close();
    apps.splice(apps.indexOf(a), 1);
    const c = await start();

    await smtp.restart();
    for (const user of users) await smtp.waitFor(String(user.email), 1, 30_000);
    // Every instance polls again a few times: nothing goes out a second time.
    await Promise.all([b.gatehouse.outbox.drain(), c.gatehouse.outbox.drain()]);
    await Promise.all([b.gatehouse.outbox.deliverDue(), c.gatehouse.outbox.deliverDue()]);
    for (const user of users) assert.equal(smtp.to(String(user.email)).length, 1, String(user.email));
    const list = await rows();
    assert.deepEqual(
      list.filter((r) => r.status !== 'sent'),
      [],
    );
    assert.ok(
      list.every((r) => r.attempts >= 2),
      'each mail was tried during the outage and again after it',
    );
  });
});
