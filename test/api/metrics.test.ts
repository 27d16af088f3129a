import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { openDatabase } from '../../src/db/index.ts';
import { json, newUser, scrapeMetrics, startApp, TEST_METRICS_TOKEN, uniqueName } from '../helpers.ts';
import { recordFailures } from '../support/lockout.ts';

/** The value of one sample in Prometheus text format; 0 when the series does not exist yet. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(/,(?=[a-zA-Z_]+=")/).filter(Boolean);
    if (wanted.every((w) => have.includes(w)) && have.length === wanted.length) return Number(m[3]);
  }
  return 0;
}

describe('GET /metrics', () => {
  let app: FastifyInstance;
  const scrape = async (target = app) => {
    const res = await scrapeMetrics(target);
    assert.equal(res.statusCode, 200);
    return res.body;
  };

  before(async () => {
    app = await startApp({
      REQUIRE_EMAIL_VERIFICATION: 'false',
      HASH_CONCURRENCY: '1',
      OUTBOX_POLL_MS: '3600000',
      REDIS_KEY_PREFIX: `t:${uniqueName('metrics')}:`,
      METRICS_TOKEN: TEST_METRICS_TOKEN,
    });
  });
  after(() => app.close());

  test('serves the Prometheus text format with every documented instrument', async () => {
    const res = await scrapeMetrics(app);
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    for (const [name, type] of [
      ['gatehouse_http_requests_total', 'counter'],
      ['gatehouse_http_request_duration_seconds', 'histogram'],
      ['gatehouse_registrations_total', 'counter'],
      ['gatehouse_logins_total', 'counter'],
      ['gatehouse_lockouts_total', 'counter'],
      ['gatehouse_rate_limited_total', 'counter'],
      ['gatehouse_hash_queue_depth', 'gauge'],
      ['gatehouse_hash_running', 'gauge'],
      ['gatehouse_hash_queue_wait_seconds', 'histogram'],
      ['gatehouse_outbox_backlog', 'gauge'],
      ['gatehouse_breach_check_failures_total', 'counter'],
      ['gatehouse_audit_rows_sealed_total', 'counter'],
      ['gatehouse_process_cpu_seconds_total', 'counter'],
    ]) {
      assert.match(res.body, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), name);
    }
  });

  test('requests are counted and timed by route template and status, not by raw URL', async () => {
    const before = await scrape();
    const labels = { method: 'POST', route: '/api/v1/register', status: '201' };
    await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
    await app.inject({ method: 'GET', url: `/api/v1/admin/users/${crypto.randomUUID()}` });
    await app.inject({ method: 'GET', url: `/no/such/page/${uniqueName()}` });
    const after = await scrape();
    assert.equal(
      sample(after, 'gatehouse_http_requests_total', labels),
      sample(before, 'gatehouse_http_requests_total', labels) + 1,
    );
    assert.equal(
      sample(after, 'gatehouse_http_request_duration_seconds_count', labels),
      sample(before, 'gatehouse_http_request_duration_seconds_count', labels) + 1,
    );
    assert.ok(sample(after, 'gatehouse_http_request_duration_seconds_sum', labels) > 0);
    assert.equal(sample(after, 'gatehouse_registrations_total'), sample(before, 'gatehouse_registrations_total') + 1);
    assert.doesNotMatch(after, /route="\/no\/such/);
    assert.doesNotMatch(after, /route="\/api\/v1\/admin\/users\/[0-9a-f]{8}-/);
  });

  test('logins are counted by outcome', async () => {
    const user = newUser();
    await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    const before = await scrape();
    const ok = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      payload: { username: user.username, password: user.password },
    });
    assert.equal(ok.statusCode, 200, ok.body);
    const bad = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      payload: { username: user.username, password: 'Wrong-Passw0rd!' },
    });
    assert.equal(bad.statusCode, 401);
    const after = await scrape();
    for (const outcome of ['success', 'invalid_credentials']) {
      assert.equal(
        sample(after, 'gatehouse_logins_total', { outcome }),
        sample(before, 'gatehouse_logins_total', { outcome }) + 1,
        outcome,
      );
    }
  });

  test('the hashing queue depth, running count and wait are visible', async () => {
    const pool = app.gatehouse.hashPool;
    let release = () => {};
    const held = pool.run(() => new Promise<void>((resolve) => (release = resolve)));
    const waiting = pool.run(async () => {});
    const during = await scrape();
    assert.equal(sample(during, 'gatehouse_hash_running'), 1);
    assert.equal(sample(during, 'gatehouse_hash_queue_depth'), 1);
    const waitsBefore = sample(during, 'gatehouse_hash_queue_wait_seconds_count');
    const sumBefore = sample(during, 'gatehouse_hash_queue_wait_seconds_sum');
    release();
    await Promise.all([held, waiting]);
    const afterwards = await scrape();
    assert.equal(sample(afterwards, 'gatehouse_hash_queue_depth'), 0);
    assert.equal(sample(afterwards, 'gatehouse_hash_queue_wait_seconds_count'), waitsBefore + 1);
    assert.ok(sample(afterwards, 'gatehouse_hash_queue_wait_seconds_sum') > sumBefore, 'the queued task waited');
  });

  test('the outbox backlog counts pending mail when scraped', async () => {
    const before = sample(await scrape(), 'gatehouse_outbox_backlog');
    const later = new Date(Date.now() + 3_600_000);
    const rows = await app.gatehouse.db
      .insertInto('email_outbox')
      .values(
        [1, 2, 3].map((n) => ({
          to_address: `backlog${n}@example.com`,
          subject: 's',
          text_body: 't',
          html_body: 'h',
          template: 'verify_email',
          next_attempt_at: later,
        })),
      )
      .returning('id')
      .execute();
    try {
      assert.equal(sample(await scrape(), 'gatehouse_outbox_backlog'), before + 3);
    } finally {
      await app.gatehouse.db
        .deleteFrom('email_outbox')
        .where(
          'id',
          'in',
          rows.map((r) => r.id),
        )
        .execute();
    }
  });

  test('audit rows sealed by this process are counted', async () => {
    const before = sample(await scrape(), 'gatehouse_audit_rows_sealed_total');
    await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
    await app.gatehouse.auditSealer.sealNow();
    assert.ok(sample(await scrape(), 'gatehouse_audit_rows_sealed_total') >= before + 1);
  });

  test('rate-limited requests, lockouts and breach-check failures are counted', async () => {
    // A breach API that always fails, with the check failing open, so registrations still go through.
    const broken = createServer((_req, res) => {
      res.statusCode = 500;
      res.end();
    });
    await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
    const strict = await startApp({
      RATE_LIMIT_REGISTER: '1/1h',
      LOCKOUT_THRESHOLD: '2',
      BREACH_CHECK: 'api',
      HIBP_API_URL: `http://127.0.0.1:${(broken.address() as AddressInfo).port}`,
      REDIS_KEY_PREFIX: `t:${uniqueName('metrics')}:`,
      METRICS_TOKEN: TEST_METRICS_TOKEN,
    });
    try {
      const first = await strict.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      assert.equal(first.statusCode, 201, first.body);
      const second = await strict.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      assert.equal(second.statusCode, 429);
      for (let i = 0; i < 2; i++) await recordFailures(strict.gatehouse.lockout, `name:nobody-${uniqueName()}`, 1);
      await recordFailures(strict.gatehouse.lockout, `name:${uniqueName('locked')}`, 2);
      const text = await scrape(strict);
      assert.equal(sample(text, 'gatehouse_rate_limited_total', { limiter: 'register' }), 1);
      assert.equal(sample(text, 'gatehouse_lockouts_total'), 1);
      assert.ok(sample(text, 'gatehouse_breach_check_failures_total') >= 1);
    } finally {
      await strict.close();
      broken.close();
    }
  });
});

describe('GET /readyz', () => {
  test('answers 503 naming the database when PostgreSQL is unreachable', async () => {
    const database = await openDatabase(process.env.DATABASE_URL ?? 'memory://', './data');
    const app = await startApp({}, { database });
    try {
      assert.equal((await app.inject('/readyz')).statusCode, 200);
      await database.close();
      const res = await app.inject('/readyz');
      assert.equal(res.statusCode, 503);
      const body = json<{ status: string; checks: Record<string, string> }>(res);
      assert.equal(body.status, 'unavailable');
      assert.equal(body.checks.database, 'down');
      assert.equal((await app.inject('/healthz')).statusCode, 200, 'the process itself is still up');
    } finally {
      await app.close();
    }
  });

  test('answers 503 naming Redis when a configured Redis is unreachable', async () => {
    const app = await startApp({ REDIS_URL: 'redis://127.0.0.1:1', REDIS_KEY_PREFIX: `t:${uniqueName('ready')}:` });
    try {
      const res = await app.inject('/readyz');
      assert.equal(res.statusCode, 503);
      const body = json<{ status: string; checks: Record<string, string> }>(res);
      assert.equal(body.status, 'unavailable');
      assert.equal(body.checks.redis, 'down');
      assert.equal(body.checks.database, 'ok');
    } finally {
      await app.close();
    }
  });
});
