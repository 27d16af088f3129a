import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { json, newUser, scrapeMetrics, startApp, TEST_METRICS_TOKEN, uniqueName } from '../helpers.ts';
import { waitUntil } from '../support/ports.ts';
import { testWebhookSecret, WebhookReceiver } from '../support/webhook-receiver.ts';

/**
 * A receiver that goes away loses nothing: deliveries wait with retries, and
 * once it is back each event arrives once, in the order the changes committed.
 */
describe('webhook receiver down', () => {
  const secret = testWebhookSecret();
  const receiver = new WebhookReceiver(secret);
  let app: FastifyInstance;

  before(async () => {
    await receiver.start();
    app = await startApp({
      REQUIRE_EMAIL_VERIFICATION: 'false',
      WEBHOOK_URLS: receiver.url,
      WEBHOOK_SECRET: secret,
      WEBHOOK_RETRY_BASE_MS: '20',
      METRICS_TOKEN: TEST_METRICS_TOKEN,
      REDIS_KEY_PREFIX: `t:${uniqueName('webhooks-down')}:`,
    });
  });
  after(async () => {
    await app.close();
    await receiver.stop();
  });

  const pending = () =>
    app.gatehouse.db
      .selectFrom('webhook_deliveries')
      .select(['msg_id', 'attempts', 'status'])
      .where('status', '=', 'pending')
      .orderBy('seq')
      .execute();

  async function registerAndLogin(): Promise<string> {
    const user = newUser();
    const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(res.statusCode, 201, res.body);
    const login = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      payload: { username: user.username, password: user.password },
    });
    assert.equal(login.statusCode, 200, login.body);
    return String(json(res).uuid);
  }

  /** Makes the receiver's next retry due now, as if the backoff had run out. */
  async function retryNow(): Promise<void> {
    await app.gatehouse.db
      .updateTable('webhook_deliveries')
      .set({ next_attempt_at: sql`now()` })
      .where('status', '=', 'pending')
      .execute();
    app.gatehouse.webhooks.kick();
  }

  test('events made while the receiver is down arrive after it returns, once each, in order of commit', async () => {
    const warmUp = await registerAndLogin();
    await waitUntil('the warm-up events', () =>
      receiver.ofType('session.created').some((e) => e.payload.data.user === warmUp),
    );
    await receiver.stop();
    const already = receiver.events.length;

    const users: string[] = [];
    for (let i = 0; i < 5; i++) users.push(await registerAndLogin());
    // Retries happen and fail while it is down; the later events wait behind the first.
    await waitUntil(
      'retries against the stopped receiver',
      async () => {
        const rows = await pending();
        return rows.length === 10 && (rows[0]?.attempts ?? 0) >= 3;
      },
      30_000,
    );
    const rows = await pending();
    assert.ok(
      rows.slice(1).every((r) => r.attempts === 0),
      'one attempt at a time per receiver',
    );
    assert.match((await scrapeMetrics(app)).body, /^gatehouse_webhook_backlog 10$/m);
    // An hour down: the events are an hour old, far from being given up.
    await app.gatehouse.db
      .updateTable('webhook_deliveries')
      .set({ created_at: sql`created_at - interval '1 hour'` })
      .where('status', '=', 'pending')
      .execute();

    await receiver.start();
    await retryNow();
    await waitUntil('every event delivered', () => receiver.events.length >= already + 10, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300));

    const arrived = receiver.events.slice(already);
    assert.equal(arrived.length, 10);
    assert.deepEqual(
      arrived.map((e) => `${e.payload.type} ${e.payload.data.user}`),
      users.flatMap((u) => [`user.created ${u}`, `session.created ${u}`]),
    );
    assert.equal(new Set(arrived.map((e) => e.id)).size, 10);
    assert.deepEqual(
      arrived.map((e) => e.id),
      rows.map((r) => r.msg_id),
    );
    assert.deepEqual(receiver.refused, []);
    const left = await pending();
    assert.deepEqual(left, []);
    assert.match((await scrapeMetrics(app)).body, /^gatehouse_webhook_backlog 0$/m);
  });

  test('a delivery still failing a day after its event is given up, and the next one goes', async () => {
    await receiver.stop();
    const first = await registerAndLogin();
    await waitUntil('the first attempts', async () => ((await pending())[0]?.attempts ?? 0) >= 1);
    await app.gatehouse.db
      .updateTable('webhook_deliveries')
      .set({ created_at: sql`created_at - interval '25 hours'` })
      .where('status', '=', 'pending')
      .execute();
    await retryNow();
    await waitUntil('both deliveries given up', async () => (await pending()).length === 0);
    const failed = await app.gatehouse.db
      .selectFrom('webhook_deliveries')
      .select(['status', 'last_error'])
      .where('status', '=', 'failed')
      .execute();
    assert.equal(failed.length, 2);
    assert.ok(failed.every((f) => f.last_error && !f.last_error.includes(secret)));

    await receiver.start();
    const second = await registerAndLogin();
    await waitUntil('the next event', () =>
      receiver.ofType('session.created').some((e) => e.payload.data.user === second),
    );
    assert.equal(
      receiver.events.some((e) => e.payload.data.user === first),
      false,
    );
  });
});

/**
 * Two instances on one database (the second shares the first's connection
 * pool, or its embedded database) both send: each delivery is claimed by one
 * of them, so the receiver gets every event once, still in order of commit.
 */
describe('two instances sending webhooks from one database', () => {
  const secret = testWebhookSecret();
  const receiver = new WebhookReceiver(secret);
  const apps: FastifyInstance[] = [];

  before(async () => {
    await receiver.start();
    const env = {
      REQUIRE_EMAIL_VERIFICATION: 'false',
      WEBHOOK_URLS: receiver.url,
      WEBHOOK_SECRET: secret,
      WEBHOOK_RETRY_BASE_MS: '20',
      REDIS_KEY_PREFIX: `t:${uniqueName('webhooks-two')}:`,
    };
    apps.push(await startApp(env));
    apps.push(await startApp(env, { database: apps[0]?.gatehouse.database }));
  });
  after(async () => {
    await apps[1]?.close();
    await apps[0]?.close();
    await receiver.stop();
  });

  test('each event is sent once, by one instance or the other', async () => {
    await receiver.stop();
    const users: string[] = [];
    for (let i = 0; i < 6; i++) {
      const app = apps[i % 2] as FastifyInstance;
      const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      assert.equal(res.statusCode, 201, res.body);
      users.push(String(json(res).uuid));
    }
    const db = (apps[0] as FastifyInstance).gatehouse.db;
    await waitUntil(
      'six deliveries waiting',
      async () =>
        (await db.selectFrom('webhook_deliveries').select('id').where('status', '=', 'pending').execute()).length === 6,
    );
    await receiver.start();
    await db
      .updateTable('webhook_deliveries')
      .set({ next_attempt_at: sql`now()` })
      .where('status', '=', 'pending')
      .execute();
    for (const app of apps) app.gatehouse.webhooks.kick();
    await waitUntil('every event delivered', () => receiver.events.length >= 6, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(
      receiver.events.map((e) => e.payload.data.user),
      users,
    );
    assert.equal(new Set(receiver.events.map((e) => e.id)).size, 6);
  });
});
