import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { json, newUser, startApp, uniqueName } from '../helpers.ts';
import { waitUntil } from '../support/ports.ts';
import { testWebhookSecret, WebhookReceiver } from '../support/webhook-receiver.ts';
import { type IsolatedDatabase, isolatedDatabase, runCli } from './support.ts';

describe('gatehouse webhooks', () => {
  const secret = testWebhookSecret();
  const receiver = new WebhookReceiver(secret);
  let iso: IsolatedDatabase;
  let env: Record<string, string | undefined>;
  let first: string;
  let second: string;
  let between: string;

  before(async () => {
    iso = await isolatedDatabase();
    await receiver.start();
    env = {
      ENVIRONMENT: 'test',
      SECRET_KEY: randomBytes(32).toString('base64url'),
      DATABASE_URL: iso.url,
      DATA_DIR: iso.dataDir,
      REDIS_URL: process.env.REDIS_URL,
      REDIS_KEY_PREFIX: `t:${uniqueName('cli-webhooks')}:`,
      LOG_LEVEL: 'warn',
      REQUIRE_EMAIL_VERIFICATION: 'false',
      WEBHOOK_URLS: receiver.url,
      WEBHOOK_SECRET: secret,
    };
    // The server sends the events first; the CLI then runs on the same database, the server stopped.
    const app = await startApp(env);
    try {
      const register = async () => {
        const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
        assert.equal(res.statusCode, 201, res.body);
        return String(json(res).uuid);
      };
      first = await register();
      await waitUntil('the first event', () => receiver.events.length === 1);
      await new Promise((resolve) => setTimeout(resolve, 20));
      between = new Date().toISOString();
      await new Promise((resolve) => setTimeout(resolve, 20));
      second = await register();
      await waitUntil('the second event', () => receiver.events.length === 2);
    } finally {
      await app.close();
    }
  });
  after(async () => {
    await receiver.stop();
    await iso.cleanup();
  });

  test('replay --since <duration> sends every event again with its webhook-id', async () => {
    const original = receiver.events.map((e) => e.id);
    const res = await runCli(['webhooks', 'replay', '--since', '1h'], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^Queued 2 webhook deliveries of events since /);
    await waitUntil('the replayed events', () => receiver.events.length === 4);
    const replayed = receiver.events.slice(2);
    assert.deepEqual(
      replayed.map((e) => e.id),
      original,
    );
    assert.deepEqual(
      replayed.map((e) => e.payload.data.user),
      [first, second],
    );
    assert.deepEqual(
      replayed.map((e) => e.body),
      receiver.events.slice(0, 2).map((e) => e.body),
    );
    assert.deepEqual(receiver.refused, []);
  });

  test('replay --since <RFC 3339> sends only the events since then', async () => {
    const before = receiver.events.length;
    const res = await runCli(['webhooks', 'replay', '--since', between], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^Queued 1 webhook deliveries/);
    await waitUntil('the replayed event', () => receiver.events.length === before + 1);
    assert.equal(receiver.events.at(-1)?.payload.data.user, second);
  });

  test('replay --since a time still to come queues nothing', async () => {
    const res = await runCli(['webhooks', 'replay', '--since', '2999-01-01T00:00:00Z'], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^Queued 0 webhook deliveries/);
  });

  for (const args of [[], ['--since', 'yesterday'], ['--since', '2026-13-45'], ['--since', '5 minutes']]) {
    test(`replay ${args.join(' ') || 'without --since'} is a usage error (exit 2)`, async () => {
      const res = await runCli(['webhooks', 'replay', ...args], env);
      assert.equal(res.code, 2, res.stdout + res.stderr);
      assert.match(res.stderr, /--since/);
    });
  }

  test('list shows the receivers, never a secret', async () => {
    const res = await runCli(['webhooks', 'list'], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`WEBHOOK_URLS {2}${receiver.url.replaceAll('.', '\\.')} {2}all events`));
    assert.doesNotMatch(res.stdout, /whsec_/);
  });
});
