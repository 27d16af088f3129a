// `npm run soak`: the mixed load (70% /me, 20% refresh, 8% login, 2% register)
// at about 70% of the capacity measured first, for a bounded time, on
// PostgreSQL + Redis. Reports every error and the server's RSS growth after
// warm-up; exits 1 on any error or on growth of 10% or more. On demand, not in CI.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as argon2 from '@node-rs/argon2';
import { ARGON2ID_PARAMS } from '../src/infra/passwords.ts';
import { createDatabase, gatehouseEnv, HOST, round, startServer } from './lib.ts';
import {
  type Fixture,
  holdSessions,
  MIXED,
  MIXED_WORKERS,
  type Operation,
  percentile,
  SEED_PASSWORD,
  seed,
  Traffic,
} from './scenarios/scale.ts';

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 300);
const WARMUP_SECONDS = Number(process.env.SOAK_WARMUP_SECONDS ?? 30);
const CAPACITY_SECONDS = Number(process.env.SOAK_CAPACITY_SECONDS ?? 15);
const LOAD_FRACTION = Number(process.env.SOAK_LOAD_FRACTION ?? 0.7);
const USERS = Number(process.env.SOAK_USERS ?? 10_000);
const RSS_SAMPLE_MS = 5_000;
/** More requests than this in flight means the server no longer keeps up: counted as an error. */
const MAX_IN_FLIGHT = 512;

/** Resident set size of a process in bytes, from /proc. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** The closed-loop mixed throughput: the capacity the soak takes its fraction of. */
async function capacity(fixture: Fixture): Promise<number> {
  const traffic = new Traffic(fixture, MIXED);
  let done = 0;
  const end = performance.now() + CAPACITY_SECONDS * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: MIXED_WORKERS }, async () => {
      while (performance.now() < end) {
        const op = traffic.draw();
        const code = await traffic.send(op);
        if (code >= 300) throw new Error(`capacity: ${op} answered ${code}`);
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

interface Minute {
  minute: number;
  requests: number;
  errors: number;
  p50_ms: number;
  p99_ms: number;
  rss_mib: number;
}

async function main(): Promise<void> {
  const database = await createDatabase('gatehouse_soak');
  const env = gatehouseEnv(database.url, { LOCKOUT_THRESHOLD: '1000', RATE_LIMIT_REFRESH: '100000000/1h' });
  try {
    process.stderr.write(`soak: seeding ${USERS.toLocaleString('en')} users…\n`);
    await seed(database.url, env, USERS, await argon2.hash(SEED_PASSWORD, { algorithm: 2, ...ARGON2ID_PARAMS }));
    const sessions = await holdSessions(database.url, env, USERS);
    const server = await startServer('gatehouse', env);
    const pid = server.process.pid as number;
    try {
      const fixture: Fixture = { apiUrl: `${server.url}/api/v1`, users: USERS, sessions };
      process.stderr.write(`soak: measuring capacity for ${CAPACITY_SECONDS}s…\n`);
      const measured = await capacity(fixture);
      const rate = measured * LOAD_FRACTION;
      process.stderr.write(
        `soak: capacity ${round(measured, 1)} req/s; ${SOAK_SECONDS}s at ${round(rate, 1)} req/s (${LOAD_FRACTION * 100}%), warm-up ${WARMUP_SECONDS}s…\n`,
      );
      const report = await soak(fixture, rate, pid);
      const result = {
        date: new Date().toISOString(),
        users: USERS,
        capacity_rps: round(measured, 1),
        target_rps: round(rate, 1),
        ...report,
        passed: report.errors === 0 && report.rss_growth_percent < 10,
      };
      mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
      writeFileSync(new URL('./results/soak.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
      process.stdout.write(`${summary(result)}\n`);
      if (!result.passed) process.exitCode = 1;
    } finally {
      await server.close();
    }
  } finally {
    await database.drop();
  }
}

/** An open loop: requests leave at `rate` per second whether or not earlier ones have answered. */
async function soak(fixture: Fixture, rate: number, pid: number) {
  const traffic = new Traffic(fixture, MIXED);
  const started = performance.now();
  const end = started + SOAK_SECONDS * 1000;
  const minutes: Minute[] = [];
  let current = { latencies: [] as number[], errors: 0 };
  const errors: Record<string, number> = {};
  const counts: Record<string, number> = {};
  let sent = 0;
  let inFlight = 0;
  let total = 0;
  let warmRss = 0;
  let peakRss = 0;
  const pending = new Set<Promise<void>>();

  const error = (what: string) => {
    errors[what] = (errors[what] ?? 0) + 1;
    current.errors++;
  };
  const fire = (op: Operation) => {
    inFlight++;
    const t0 = performance.now();
    const p = traffic
      .send(op)
      .then((code) => {
        if (code >= 300) error(`${op} ${code}`);
        else current.latencies.push(performance.now() - t0);
      })
      .catch((e: unknown) => error(`${op} ${(e as Error).message}`))
      .finally(() => {
        inFlight--;
        total++;
        pending.delete(p);
      });
    pending.add(p);
    counts[op] = (counts[op] ?? 0) + 1;
  };
  const closeMinute = () => {
    const latencies = current.latencies;
    const memory = rss(pid);
    minutes.push({
      minute: minutes.length + 1,
      requests: latencies.length + current.errors,
      errors: current.errors,
      p50_ms: round(percentile(latencies, 0.5), 1),
      p99_ms: round(percentile(latencies, 0.99), 1),
      rss_mib: round(memory / 2 ** 20, 1),
    });
    process.stderr.write(`soak: ${JSON.stringify(minutes.at(-1))}\n`);
    current = { latencies: [], errors: 0 };
  };

  let nextMinute = started + 60_000;
  let nextSample = started + RSS_SAMPLE_MS;
  while (performance.now() < end) {
    const now = performance.now();
    const due = Math.floor(((now - started) / 1000) * rate) - sent;
    for (let i = 0; i < due; i++, sent++) {
      if (inFlight >= MAX_IN_FLIGHT) error('overload: too many requests in flight');
      else fire(traffic.draw());
    }
    if (now >= nextSample) {
      const memory = rss(pid);
      peakRss = Math.max(peakRss, memory);
      if (!warmRss && now - started >= WARMUP_SECONDS * 1000) warmRss = memory;
      nextSample += RSS_SAMPLE_MS;
    }
    if (now >= nextMinute) {
      closeMinute();
      nextMinute += 60_000;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await Promise.all(pending);
  if (current.latencies.length + current.errors > 0) closeMinute();
  const finalRss = rss(pid);
  warmRss ||= finalRss;
  return {
    seconds: SOAK_SECONDS,
    requests: total,
    achieved_rps: round(total / ((performance.now() - started) / 1000), 1),
    by_operation: counts,
    errors: Object.values(errors).reduce((a, b) => a + b, 0),
    error_kinds: errors,
    rss_after_warmup_mib: round(warmRss / 2 ** 20, 1),
    rss_end_mib: round(finalRss / 2 ** 20, 1),
    rss_peak_mib: round(peakRss / 2 ** 20, 1),
    rss_growth_percent: round(((finalRss - warmRss) / warmRss) * 100, 1),
    minutes,
  };
}

function summary(r: {
  capacity_rps: number;
  target_rps: number;
  achieved_rps: number;
  requests: number;
  errors: number;
  rss_after_warmup_mib: number;
  rss_end_mib: number;
  rss_growth_percent: number;
  passed: boolean;
}): string {
  return [
    `Soak against ${HOST}: ${SOAK_SECONDS}s of the mixed load at ${r.target_rps} req/s (${LOAD_FRACTION * 100}% of ${r.capacity_rps} req/s measured)`,
    `requests: ${r.requests} (${r.achieved_rps} req/s), errors: ${r.errors}`,
    `RSS after ${WARMUP_SECONDS}s warm-up: ${r.rss_after_warmup_mib} MiB, at the end: ${r.rss_end_mib} MiB, growth ${r.rss_growth_percent}% (limit 10%)`,
    r.passed ? 'PASSED' : 'FAILED',
  ].join('\n');
}

await main();
