import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance, type InjectOptions } from 'fastify';
import { loggerOptions, RequestLog } from '../../src/app.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { gatehouse, requireUser } from '../../src/plugin.ts';
import { logCapture, startApp, testConfig, uniqueName } from '../helpers.ts';

const PASSWORD = 'Pw-in-a-log-line-9!';
const BEARER = 'bearer-secret-e30.e30.c2ln';
const LINK_TOKEN = 'link-token-5f2b8c1d';
const SECRETS = [PASSWORD, BEARER, LINK_TOKEN];

/** The requests each format is tried with: one line each, and never a secret in any line. */
const REQUESTS: { request: InjectOptions; method: string; url: string; status: number; ip: string }[] = [
  {
    // A trusted proxy (TRUST_PROXY=127.0.0.1, inject's peer) forwards the client's address.
    request: { url: '/healthz', headers: { 'x-forwarded-for': '203.0.113.7' } },
    method: 'GET',
    url: '/healthz',
    status: 200,
    ip: '203.0.113.7',
  },
  {
    request: {
      method: 'POST',
      url: '/api/v1/login/json',
      headers: { authorization: `Bearer ${BEARER}` },
      payload: { email: 'nobody@example.com', password: PASSWORD },
    },
    method: 'POST',
    url: '/api/v1/login/json',
    status: 401,
    ip: '127.0.0.1',
  },
  {
    request: { url: '/api/v1/me', headers: { authorization: `Bearer ${BEARER}` } },
    method: 'GET',
    url: '/api/v1/me',
    status: 401,
    ip: '127.0.0.1',
  },
  {
    request: { url: `/verify-email?token=${LINK_TOKEN}` },
    method: 'GET',
    url: '/verify-email?token=[REDACTED]',
    status: 200,
    ip: '127.0.0.1',
  },
  {
    // An untrusted peer's X-Forwarded-For is not believed, on a URL no route matches either.
    request: { url: '/no-such-page', remoteAddress: '198.51.100.4', headers: { 'x-forwarded-for': '6.6.6.6' } },
    method: 'GET',
    url: '/no-such-page',
    status: 404,
    ip: '198.51.100.4',
  },
  {
    // Bad percent-encoding: refused by the router, before any hook.
    request: { url: '/api/v1/%E0%A4%A' },
    method: 'GET',
    url: '/api/v1/%E0%A4%A',
    status: 400,
    ip: '127.0.0.1',
  },
];

/**
 * Every run logs in as nobody@example.com: on a shared Redis the failures of
 * earlier runs would add up to a lockout (423 instead of 401).
 */
const ownRedisKeys = () => `t:${uniqueName('request-log')}:`;

/** The line is written once the response is complete, which may be after inject resolves. */
async function linesUntil(lines: string[], count: number, match: (line: string) => boolean): Promise<string[]> {
  const deadline = Date.now() + 5_000;
  while (lines.filter(match).length < count && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // Anything else still on its way would show up as a line too many.
  await new Promise((resolve) => setTimeout(resolve, 50));
  return lines.filter(match);
}

function assertNoSecret(lines: string[]): void {
  for (const line of lines) {
    for (const secret of SECRETS) assert.ok(!line.includes(secret), `a secret reached the log: ${line}`);
  }
}

interface JsonLine {
  level: number;
  msg?: string;
  reqId?: string;
  method?: string;
  url?: string;
  status?: number;
  duration_ms?: number;
  ip?: string | null;
}

describe('ENVIRONMENT=production: one JSON line per request', () => {
  const logs = logCapture();
  let app: FastifyInstance;
  before(async () => {
    app = await startApp(
      {
        ENVIRONMENT: 'production',
        SMTP_URL: 'smtp://127.0.0.1:9',
        LOG_LEVEL: 'info',
        TRUST_PROXY: '127.0.0.1',
        REDIS_KEY_PREFIX: ownRedisKeys(),
      },
      { logger: { stream: logs.stream } },
    );
  });
  after(() => app.close());

  test('method, URL, status, duration, request id and client IP, once per request', async () => {
    const start = logs.lines.length;
    for (const r of REQUESTS) assert.equal((await app.inject(r.request)).statusCode, r.status, r.url);
    const written = logs.lines.slice(start);
    const requestLines = await linesUntil(written, REQUESTS.length, (l) => l.includes('"method"'));
    const parsed = written.map((l) => JSON.parse(l) as JsonLine);
    assert.ok(!parsed.some((l) => l.msg === 'incoming request'), "Fastify's own request lines are gone");
    assert.equal(requestLines.length, REQUESTS.length, requestLines.join('\n'));

    const lines = requestLines.map((l) => JSON.parse(l) as JsonLine);
    assert.equal(new Set(lines.map((l) => l.reqId)).size, REQUESTS.length, 'one line per request id');
    REQUESTS.forEach((r, i) => {
      const line = lines[i] as JsonLine;
      assert.equal(line.level, 30);
      assert.equal(line.msg, 'request completed');
      assert.equal(line.method, r.method);
      assert.equal(line.url, r.url);
      assert.equal(line.status, r.status);
      assert.equal(line.ip, r.ip, `client IP of ${r.url}`);
      assert.match(String(line.reqId), /^req-/);
      assert.equal(typeof line.duration_ms, 'number');
      assert.ok((line.duration_ms as number) >= 0);
    });
    assertNoSecret(logs.lines);
  });

  test('fields that carry secrets are redacted, at the top and in the objects it holds', async () => {
    const probe = {
      password: PASSWORD,
      Authorization: `Bearer ${BEARER}`,
      body: { refresh_token: LINK_TOKEN, email: 'kept@example.com' },
      request: { headers: { authorization: `Bearer ${BEARER}`, 'user-agent': 'kept' } },
    };
    app.log.info(probe, 'redaction probe');
    const [written] = logs.lines.filter((l) => l.includes('redaction probe'));
    assert.ok(written);
    assert.deepEqual(JSON.parse(written), {
      ...JSON.parse(written),
      password: '[REDACTED]',
      Authorization: '[REDACTED]',
      body: { refresh_token: '[REDACTED]', email: 'kept@example.com' },
      request: { headers: { authorization: '[REDACTED]', 'user-agent': 'kept' } },
    });
    assert.equal(probe.body.refresh_token, LINK_TOKEN, 'the logged object itself is left alone');
    assertNoSecret(logs.lines);
  });
});

describe('ENVIRONMENT=development: one readable line per request', () => {
  const logs = logCapture();
  let app: FastifyInstance;
  before(async () => {
    app = await startApp(
      {
        ENVIRONMENT: 'development',
        DATA_DIR: mkdtempSync(join(tmpdir(), 'gatehouse-request-log-')),
        LOG_LEVEL: 'info',
        TRUST_PROXY: '127.0.0.1',
        REDIS_KEY_PREFIX: ownRedisKeys(),
      },
      { logger: { stream: logs.stream } },
    );
  });
  after(() => app.close());

  test('time, level, request id, method, URL, status, duration and client IP on one line', async () => {
    const start = logs.lines.length;
    for (const r of REQUESTS) assert.equal((await app.inject(r.request)).statusCode, r.status, r.url);
    const written = logs.lines.slice(start);
    const requestLines = await linesUntil(written, REQUESTS.length, (l) => / req-\d+ (GET|POST) /.test(l));
    assert.equal(requestLines.length, REQUESTS.length, written.join('\n'));
    REQUESTS.forEach((r, i) => {
      const line = requestLines[i] as string;
      assert.throws(() => JSON.parse(line), 'not JSON');
      const escaped = `${r.method} ${r.url} ${r.status}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      assert.match(
        line,
        new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\] INFO: req-\\d+ ${escaped} [\\d.]+ ms ${r.ip}$`),
      );
    });
    assert.ok(!written.some((l) => l.includes('incoming request') || l.includes('request completed')));
    assertNoSecret(logs.lines);
  });

  test('fields that carry secrets are redacted before the line is formatted', () => {
    app.log.info(
      { password: PASSWORD, body: { token: LINK_TOKEN }, headers: { authorization: `Bearer ${BEARER}` } },
      'redaction probe',
    );
    const at = logs.lines.findIndex((l) => l.includes('redaction probe'));
    assert.ok(at >= 0);
    const entry = logs.lines.slice(at).join('\n');
    for (const field of ['password', 'token', 'authorization']) {
      assert.match(entry, new RegExp(`"?${field}"?: "\\[REDACTED\\]"`));
    }
    assertNoSecret(logs.lines);
  });
});

describe('LOG_FORMAT', () => {
  const dataDir = () => mkdtempSync(join(tmpdir(), 'gatehouse-log-format-'));

  test('pretty in development, JSON in test and production, either when asked for', () => {
    assert.equal(loadConfig({ DATA_DIR: dataDir() }).logFormat, 'pretty');
    assert.equal(testConfig({ ENVIRONMENT: 'test' }).logFormat, 'json');
    assert.equal(testConfig({ ENVIRONMENT: 'production', SMTP_URL: 'smtp://127.0.0.1:9' }).logFormat, 'json');
    assert.equal(loadConfig({ DATA_DIR: dataDir(), LOG_FORMAT: 'JSON' }).logFormat, 'json');
    assert.equal(
      testConfig({ ENVIRONMENT: 'production', SMTP_URL: 'smtp://x', LOG_FORMAT: 'pretty' }).logFormat,
      'pretty',
    );
    assert.throws(() => loadConfig({ DATA_DIR: dataDir(), LOG_FORMAT: 'xml' }), ConfigError);
  });

  test('LOG_FORMAT=json in development writes JSON lines', async () => {
    const logs = logCapture();
    const app = await startApp(
      { ENVIRONMENT: 'development', DATA_DIR: dataDir(), LOG_LEVEL: 'info', LOG_FORMAT: 'json' },
      { logger: { stream: logs.stream } },
    );
    try {
      await app.inject('/healthz');
      const [line] = await linesUntil(logs.lines, 1, (l) => l.includes('/healthz'));
      assert.ok(line);
      assert.equal((JSON.parse(line) as JsonLine).status, 200);
    } finally {
      await app.close();
    }
  });
});

describe("a host application logging with Gatehouse's settings", () => {
  const logs = logCapture();
  let host: FastifyInstance;
  before(async () => {
    const config = testConfig({ LOG_LEVEL: 'info', TRUST_PROXY: '127.0.0.1' });
    host = Fastify({
      logger: await loggerOptions(config, { stream: logs.stream }),
      logController: new RequestLog(config),
      pluginTimeout: 120_000,
    });
    await host.register(gatehouse, { config });
    host.get('/host/private', { preHandler: requireUser }, async () => ({ ok: true }));
    await host.ready();
  });
  after(() => host.close());

  test("the host's own routes get the same one line", async () => {
    const res = await host.inject({
      url: '/host/private',
      headers: { authorization: `Bearer ${BEARER}`, 'x-forwarded-for': '192.0.2.55' },
    });
    assert.equal(res.statusCode, 401);
    const lines = await linesUntil(logs.lines, 1, (l) => l.includes('/host/private'));
    assert.equal(lines.length, 1, logs.lines.join('\n'));
    const line = JSON.parse(lines[0] as string) as JsonLine;
    assert.deepEqual(
      { method: line.method, status: line.status, ip: line.ip },
      { method: 'GET', status: 401, ip: '192.0.2.55' },
    );
    assertNoSecret(logs.lines);
  });
});
