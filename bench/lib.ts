import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import pg from 'pg';

/** Every load goes to loopback only, for a bounded time. */
export const HOST = '127.0.0.1';
export const ADMIN_DATABASE_URL = process.env.BENCH_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Seconds per measurement; `BENCH_SECONDS=3 npm run bench` for a quick look. */
export const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** value ÷ baseline, when the figure is compared with one measured in the same run. */
  ratio?: number;
  baseline?: string;
  target?: number;
  p50_ms?: number;
  p99_ms?: number;
  note?: string;
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  total: number;
  non2xx: number;
  errors: number;
  statusCodes: Record<string, number>;
}

export interface Server {
  url: string;
  process: ChildProcess;
  close(): Promise<void>;
}

/** Starts `bench/servers/<name>.ts` in its own process and waits for its port. */
export async function startServer(
  name: 'hello' | 'gatehouse' | 'guarded',
  env: Record<string, string> = {},
): Promise<Server> {
  const child = spawn(process.execPath, [new URL(`./servers/${name}.ts`, import.meta.url).pathname], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // The server's log shares its stdout: the port is the line `{"port":N}`, the log is read and
  // dropped (as a log collector would take it off the pipe) without splitting it into lines here.
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    lines.on('line', (line) => {
      const match = /^\{"port":(\d+)\}$/.exec(line);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', () => reject(new Error(`${name} server exited before listening`)));
  });
  lines.close();
  child.stdout!.resume();
  return {
    url: `http://${HOST}:${port}`,
    process: child,
    close: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** A fresh PostgreSQL database for one scenario. */
export async function createDatabase(prefix = 'gatehouse_bench'): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/**
 * Gatehouse on PostgreSQL + Redis, limits out of the way, as the benchmarks measure it: logging as
 * shipped (LOG_LEVEL info, one JSON line per request, as in production).
 */
export function gatehouseEnv(databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ENVIRONMENT: 'test',
    SECRET_KEY: randomBytes(32).toString('base64url'),
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_KEY_PREFIX: `bench:${randomBytes(3).toString('hex')}:`,
    RATE_LIMIT_REGISTER: '100000000/1h',
    RATE_LIMIT_LOGIN: '100000000/1h',
    REQUIRE_EMAIL_VERIFICATION: 'false',
    ...extra,
  };
}

export interface LoadOptions {
  url: string;
  method?: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  headers?: Record<string, string>;
  body?: string;
  /** Builds each request's body (and headers) afresh, e.g. unique users. */
  setupRequest?: (request: autocannon.Request) => autocannon.Request;
  /** autocannon's own request list, for requests that depend on the connection's previous response. */
  requests?: autocannon.Request[];
  connections?: number;
  seconds?: number;
  amount?: number;
}

export async function load(options: LoadOptions): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    method: options.method ?? 'GET',
    headers: options.headers ?? {},
    ...(options.body !== undefined && { body: options.body }),
    ...(options.setupRequest && { requests: [{ setupRequest: options.setupRequest }] }),
    ...(options.requests && { requests: options.requests }),
    connections: options.connections ?? 10,
    ...(options.amount ? { amount: options.amount } : { duration: options.seconds ?? SECONDS }),
    timeout: 30,
  });
  const statusCodes: Record<string, number> = {};
  const codes = result.statusCodeStats as unknown as Record<string, { count: number }> | undefined;
  for (const [code, stat] of Object.entries(codes ?? {})) statusCodes[code] = stat.count;
  const seconds = result.duration || options.seconds || SECONDS;
  return {
    rps: (result.requests.total - result.non2xx) / seconds,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    statusCodes,
  };
}

/** Runs `task` with `concurrency` workers for `seconds`; returns completions per second. */
export async function rate(task: () => Promise<unknown>, concurrency: number, seconds = SECONDS): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await task();
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done / ((performance.now() - start) / 1000);
}

export function uniqueUser(): { email: string; username: string; password: string } {
  const id = randomBytes(6).toString('hex');
  return { email: `bench_${id}@example.com`, username: `bench_${id}`, password: `Kx9#${id}Vq!` };
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** A JSON POST from the load side: the status and the parsed body. */
export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The body of `res`, or an error naming `what` when its status is not `status`. */
export function expectStatus(
  what: string,
  res: { status: number; body: unknown },
  status: number,
): Record<string, unknown> {
  if (res.status !== status) throw new Error(`${what} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body as Record<string, unknown>;
}

/** Runs `task` `count` times with `concurrency` workers; returns completions per second. */
export async function timed(task: () => Promise<unknown>, count: number, concurrency: number): Promise<number> {
  let left = count;
  const worker = async () => {
    while (left > 0) {
      left--;
      await task();
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return count / ((performance.now() - start) / 1000);
}

/** The middle round of an alternating comparison: both rates of the round whose ratio is the median. */
export interface PairedRates {
  baseline: number;
  candidate: number;
  /** candidate ÷ baseline of that round. */
  ratio: number;
}

/**
 * Times `baseline` then `candidate` (`count` runs each at `concurrency`) for
 * `rounds` rounds and returns the round with the median ratio: alternating
 * keeps drift (a warming JIT, a growing table) out of the ratio, and the
 * median keeps one noisy round out of it.
 */
export async function alternatingRounds(options: {
  rounds: number;
  count: number;
  concurrency: number;
  baseline: () => Promise<unknown>;
  candidate: () => Promise<unknown>;
}): Promise<PairedRates> {
  const results: PairedRates[] = [];
  for (let i = 0; i < options.rounds; i++) {
    const baseline = await timed(options.baseline, options.count, options.concurrency);
    const candidate = await timed(options.candidate, options.count, options.concurrency);
    results.push({ baseline, candidate, ratio: candidate / baseline });
  }
  return [...results].sort((a, b) => a.ratio - b.ratio)[Math.floor(results.length / 2)] as PairedRates;
}
