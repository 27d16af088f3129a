import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { type BuildAppOptions, buildApp } from '../src/app.ts';
import { type Config, loadConfig } from '../src/config.ts';

/**
 * With DATABASE_URL on a PostgreSQL server, each test file (a process of its
 * own under `node --test`) works in a database of its own on that server,
 * created here and dropped when the process ends. Files run two at a time,
 * and two files on one database would share its mail outbox (one file's
 * sender delivering the other's mail), its audit chain and its counts.
 * Processes the file starts (the CLI, a second instance) inherit the URL.
 */
async function useOwnDatabase(): Promise<void> {
  const base = process.env.DATABASE_URL;
  if (!base || !/^postgres(ql)?:\/\//.test(base) || process.env.GATEHOUSE_TEST_OWN_DATABASE) return;
  const url = new URL(base);
  const name = `${url.pathname.slice(1) || 'gatehouse'}_f${process.pid}`.slice(-63);
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query(`drop database if exists "${name}" with (force)`);
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  url.pathname = `/${name}`;
  process.env.DATABASE_URL = url.toString();
  process.env.GATEHOUSE_TEST_OWN_DATABASE = name;
  let dropped = false;
  process.on('beforeExit', () => {
    if (dropped) return;
    dropped = true;
    const client = new pg.Client({ connectionString: base });
    void client
      .connect()
      .then(() => client.query(`drop database if exists "${name}" with (force)`))
      .catch(() => {})
      .finally(() => client.end());
  });
}

await useOwnDatabase();

/** A random 32-byte key made per run; never a committed secret. */
const TEST_SECRET = randomBytes(32).toString('base64url');

/** Tests run on PGlite in memory unless DATABASE_URL/REDIS_URL point at real servers. */
export function testConfig(env: Record<string, string | undefined> = {}): Config {
  return loadConfig({
    ENVIRONMENT: 'test',
    SECRET_KEY: TEST_SECRET,
    DATABASE_URL: process.env.DATABASE_URL ?? 'memory://',
    REDIS_URL: process.env.REDIS_URL,
    LOG_LEVEL: 'silent',
    PUBLIC_URL: 'http://gatehouse.test',
    RATE_LIMIT_REGISTER: '100000/1h',
    RATE_LIMIT_LOGIN: '100000/1h',
    RATE_LIMIT_REAUTHENTICATE: '100000/1h',
    ...env,
  });
}

export async function startApp(
  env: Record<string, string | undefined> = {},
  options: BuildAppOptions = {},
): Promise<FastifyInstance> {
  const app = await buildApp(testConfig(env), options);
  await app.ready();
  return app;
}

/** A password that satisfies the strict policy and is in no breach list; fresh each call. */
export function strongPassword(): string {
  return `Kx9#${randomBytes(6).toString('hex')}Vq!`;
}

let counter = 0;
/** Unique across runs on a shared database. */
export function uniqueName(prefix = 'user'): string {
  counter += 1;
  return `${prefix}_${randomBytes(4).toString('hex')}_${counter}`;
}

export function newUser(overrides: Record<string, unknown> = {}) {
  const username = uniqueName();
  return {
    email: `${username}@example.com`,
    username,
    password: strongPassword(),
    ...overrides,
  };
}

/** Captures every log line written, for assertions about what is never logged. */
export function logCapture(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { stream, lines };
}

export function json<T = Record<string, unknown>>(response: { body: string }): T {
  return JSON.parse(response.body) as T;
}

/** In CI a missing service fails the run; on a developer's machine the test is skipped with a reason. */
export function requireService(name: string, available: boolean): string | false {
  if (available) return false;
  if (process.env.CI === 'true') throw new Error(`${name} is required in CI but is not reachable`);
  return `${name} is not reachable`;
}

/** True when something accepts TCP connections at `host:port` within a second. */
export function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.connect(port, host);
  });
}

/** `reachable` for the host and port of a URL such as postgres://… or redis://…. */
export function urlReachable(url: string, defaultPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return reachable(hostname, Number(port || defaultPort));
}

/** METRICS_TOKEN of the tests that read `/metrics` (without one it is not served). */
export const TEST_METRICS_TOKEN = 'test-metrics-token-0123456789';

/** `GET /metrics` with TEST_METRICS_TOKEN, from an app started with it. */
export function scrapeMetrics(app: FastifyInstance) {
  return app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TEST_METRICS_TOKEN}` } });
}
