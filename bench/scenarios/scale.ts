// register, login, GET /me, refresh and a mixed load at 1 000 and at
// 1 000 000 existing users, seeded with SQL; the EXPLAIN of every statement
// the hot paths run at the larger scale goes to bench/results/explain.txt.
import { mkdirSync, writeFileSync } from 'node:fs';
import * as argon2 from '@node-rs/argon2';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/schema.ts';
import { DEFAULT_ROLE_PERMISSIONS } from '../../src/domain/roles.ts';
import { systemClock } from '../../src/infra/clock.ts';
import { ARGON2ID_PARAMS } from '../../src/infra/passwords.ts';
import { sha256Hex } from '../../src/infra/sha256.ts';
import { TokenService } from '../../src/infra/tokens.ts';
import {
  type BenchResult,
  createDatabase,
  gatehouseEnv,
  type LoadResult,
  load,
  rate,
  round,
  SECONDS,
  startServer,
  uniqueUser,
} from '../lib.ts';
import type { BenchContext } from '../run.ts';

/** `BENCH_SCALE_USERS=20000 node bench/run.ts scale` for a quick look; the figures are taken at 1 000 000. */
const LARGE = Number(process.env.BENCH_SCALE_USERS ?? 1_000_000);
const SMALL = Math.min(1_000, LARGE);
const HASH_CONCURRENCY = 2;
/** Sessions held by the load: /me picks one at random, refresh takes an idle one and spends its token. */
const SAMPLE_SESSIONS = 256;
export const MIXED_WORKERS = 32;
const REFRESH_WORKERS = 16;
export const SEED_PASSWORD = 'Kx9#seed-Vq!-benchmark';
/** Tables whose sequential scan would grow with the user count. */
const LARGE_TABLES = ['users', 'sessions', 'organizations', 'roles', 'memberships', 'login_attempts', 'audit_logs'];

export interface Held {
  access: string;
  refresh: string;
}

export interface Fixture {
  apiUrl: string;
  users: number;
  sessions: Held[];
}

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  counts: Record<string, number>;
}

type BaselineKind = 'hashes' | 'verifications' | 'hello';

const BASELINE_NAMES: Record<BaselineKind, string> = {
  hashes: `argon2id hashes/s (${HASH_CONCURRENCY} concurrent), measured just before and after`,
  verifications: `argon2id verifications/s (${HASH_CONCURRENCY} concurrent), measured just before and after`,
  hello: 'Fastify hello-world, measured just before and after',
};

/**
 * Each measurement's baseline is taken right before and right after it (the
 * mean is used): the two scales are
 * minutes apart (seeding a million users takes a while) and the machine's
 * speed drifts meanwhile, so the 1 M ÷ 1 k comparison is made on the
 * baseline ratios, which that drift cancels out of.
 */
class Baselines {
  readonly #seedHash: string;
  readonly #helloUrl: string;

  constructor(seedHash: string, helloUrl: string) {
    this.#seedHash = seedHash;
    this.#helloUrl = helloUrl;
  }

  async measure(kind: BaselineKind): Promise<number> {
    switch (kind) {
      case 'hashes':
        return rate(
          () => argon2.hash(`Kx9#${Math.random()}Vq!`, { algorithm: 2, ...ARGON2ID_PARAMS }),
          HASH_CONCURRENCY,
        );
      case 'verifications':
        return rate(() => argon2.verify(this.#seedHash, SEED_PASSWORD), HASH_CONCURRENCY);
      case 'hello':
        return (await load({ url: this.#helloUrl, connections: 50, seconds: Math.max(2, SECONDS / 2) })).rps;
    }
  }
}

export default async function scale(_ctx: BenchContext): Promise<BenchResult[]> {
  const seedHash = await argon2.hash(SEED_PASSWORD, { algorithm: 2, ...ARGON2ID_PARAMS });
  const hello = await startServer('hello');
  try {
    const baselines = new Baselines(seedHash, hello.url);
    const results: BenchResult[] = [];
    const byScale = new Map<number, Map<string, BenchResult>>();
    for (const users of [SMALL, LARGE]) {
      const rows = await atScale(users, seedHash, baselines, users === LARGE);
      byScale.set(users, new Map(rows.map((r) => [r.name.split(' @ ')[0] as string, r])));
      results.push(...rows);
    }
    // The acceptance figure: the large table answers within 20% of the small one, each against its own baseline.
    for (const [measure, large] of byScale.get(LARGE) ?? []) {
      const small = byScale.get(SMALL)?.get(measure);
      if (!small?.ratio || !large.ratio) continue;
      results.push({
        name: `${measure}: ${LARGE.toLocaleString('en')} ÷ ${SMALL.toLocaleString('en')} users`,
        value: round(large.ratio / small.ratio),
        unit: '× (of the baseline ratios)',
        ratio: round(large.ratio / small.ratio),
        baseline: `${SMALL.toLocaleString('en')} users`,
        target: 0.8,
      });
    }
    return results;
  } finally {
    await hello.close();
  }
}

async function atScale(
  users: number,
  seedHash: string,
  baselines: Baselines,
  explainIt: boolean,
): Promise<BenchResult[]> {
  const database = await createDatabase('gatehouse_scale');
  const env = gatehouseEnv(database.url, {
    HASH_CONCURRENCY: String(HASH_CONCURRENCY),
    LOCKOUT_THRESHOLD: '1000',
    RATE_LIMIT_REFRESH: '100000000/1h',
  });
  try {
    process.stderr.write(`bench: scale: seeding ${users.toLocaleString('en')} users…\n`);
    await seed(database.url, env, users, seedHash);
    const sessions = await holdSessions(database.url, env, users);
    const server = await startServer('gatehouse', env);
    const label = (measure: string) => `${measure} @ ${users.toLocaleString('en')} users`;
    const fixture: Fixture = { apiUrl: `${server.url}/api/v1`, users, sessions };
    try {
      // Warm the JIT, the instance's session cache and PostgreSQL's buffers before measuring.
      await closedLoop(fixture, MIXED_WORKERS, MIXED, Math.min(SECONDS, 3));

      const rows: BenchResult[] = [];
      const measure = async (name: string, kind: BaselineKind, run: () => Promise<LoadResult | Sample>) => {
        // Before and after, averaged: a drift during the measurement itself is halved too.
        const before = await baselines.measure(kind);
        const r = await run();
        const baseline = (before + (await baselines.measure(kind))) / 2;
        const row: BenchResult = {
          name: label(name),
          value: round(r.rps, 1),
          unit: 'req/s',
          ratio: round(r.rps / baseline, 4),
          baseline: `${BASELINE_NAMES[kind]}: ${round(baseline, 1)}`,
          p50_ms: round(r.p50, 1),
          p99_ms: round(r.p99, 1),
        };
        rows.push(row);
        return { row, r };
      };
      await measure('register', 'hashes', async () => clean('register', await registerLoad(fixture)));
      await measure('login', 'verifications', async () => clean('login', await loginLoad(fixture)));
      await measure('GET /me', 'hello', async () =>
        clean(
          'GET /me',
          await load({ url: `${fixture.apiUrl}/me`, setupRequest: meRequest(fixture), connections: 50 }),
        ),
      );
      await measure('refresh', 'hello', () => closedLoop(fixture, REFRESH_WORKERS, { refresh: 1 }));
      const mixed = await measure('mixed 70% /me, 20% refresh, 8% login, 2% register', 'hello', () =>
        closedLoop(fixture, MIXED_WORKERS, MIXED),
      );
      mixed.row.note = JSON.stringify((mixed.r as Sample).counts);
      if (explainIt) await explainHotQueries(database.url, env, fixture);
      return rows;
    } finally {
      await server.close();
    }
  } finally {
    await database.drop();
  }
}

/**
 * Users `seed<n>` with one precomputed argon2id hash (SEED_PASSWORD), one
 * organization per ten users (admin + members, the three default roles), a
 * session each (one in twenty revoked), an audit row and a login attempt
 * each: the shape a grown deployment has.
 * Ids follow the series because the database is new.
 */
export async function seed(url: string, env: Record<string, string>, users: number, seedHash: string): Promise<void> {
  // The schema comes from Gatehouse's own migrations: start and stop an instance.
  const app = await buildApp(loadConfig({ ...env, LOG_LEVEL: 'warn' }), { logger: false });
  await app.close();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const organizations = Math.ceil(users / 10);
    await client.query(
      `insert into users (email, username, password_hash, first_name, email_verified_at, password_changed_at, created_at, updated_at)
       select 'seed' || g || '@example.com', 'seed' || g, $1, 'Seed', now(), now(), now() - g * interval '1 second', now()
       from generate_series(1, $2::int) g`,
      [seedHash, users],
    );
    await client.query(
      `insert into organizations (name, slug) select 'Seed Org ' || g, 'seed-org-' || g from generate_series(1, $1::int) g`,
      [organizations],
    );
    await client.query(
      `insert into roles (organization_id, name, permissions)
       select o, r.name, r.permissions::jsonb from generate_series(1, $1::int) o
       cross join (values ('admin', $2), ('user', $3), ('viewer', $4)) as r(name, permissions)`,
      [
        organizations,
        JSON.stringify(DEFAULT_ROLE_PERMISSIONS.admin),
        JSON.stringify(DEFAULT_ROLE_PERMISSIONS.user),
        JSON.stringify(DEFAULT_ROLE_PERMISSIONS.viewer),
      ],
    );
    await client.query(
      `insert into memberships (user_id, organization_id, role_id)
       select u, (u - 1) / 10 + 1, r.id from generate_series(1, $1::int) u
       join roles r on r.organization_id = (u - 1) / 10 + 1
                   and r.name = case when (u - 1) % 10 = 0 then 'admin' else 'user' end`,
      [users],
    );
    await client.query(
      `insert into sessions (user_id, refresh_token_hash, kind, created_at, last_used_at, expires_at, revoked_at, revoked_reason)
       select g, md5(g::text), 'api', now() - interval '3 days', now() - interval '3 days', now() + interval '4 days',
              case when g % 20 = 0 then now() - interval '2 days' end, case when g % 20 = 0 then 'logout' end
       from generate_series(1, $1::int) g`,
      [users],
    );
    // History grows with the users: one sealed registration audit row and one login attempt each.
    // The hashes are placeholders (the bench never verifies the chain); the head continues after them.
    await client.query(
      `insert into audit_logs (action, user_id, ip_address, user_agent, details, created_at, seal_seq, prev_hash, hash)
       select 'user_registration', g, '127.0.0.1', 'seed', jsonb_build_object('username', 'seed' || g),
              now() - g * interval '1 second', g, md5((g - 1)::text) || md5((g - 1)::text), md5(g::text) || md5(g::text)
       from generate_series(1, $1::int) g`,
      [users],
    );
    await client.query(
      `update audit_chain set last_seq = $1::bigint, last_hash = md5($1::bigint::text) || md5($1::bigint::text) where id = 1`,
      [users],
    );
    await client.query(
      `insert into login_attempts (identifier, user_id, ip_address, user_agent, success, attempted_at)
       select 'seed' || g, g, '127.0.0.1', 'seed', true, now() - g * interval '1 second' from generate_series(1, $1::int) g`,
      [users],
    );
    await client.query('vacuum analyze');
    // Write the bulk load out now, not during the first measurement.
    await client.query('checkpoint');
  } finally {
    await client.end();
  }
}

/** Live sessions of random seeded users, with tokens minted by Gatehouse's own TokenService. */
export async function holdSessions(url: string, env: Record<string, string>, users: number): Promise<Held[]> {
  const tokens = await TokenService.create(loadConfig(env), systemClock);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const ids = Array.from({ length: SAMPLE_SESSIONS * 2 }, () => 1 + Math.floor(Math.random() * users));
    const { rows } = await client.query<{ uuid: string; user_uuid: string; email: string; expires_at: Date }>(
      `select s.uuid, u.uuid as user_uuid, u.email, s.expires_at from sessions s join users u on u.id = s.user_id
       where s.user_id = any($1::bigint[]) and s.revoked_at is null limit $2`,
      [ids, SAMPLE_SESSIONS],
    );
    await client.query(
      `update sessions set refresh_token_hash = h.hash from unnest($1::uuid[], $2::text[]) as h(uuid, hash)
       where sessions.uuid = h.uuid`,
      [rows.map((r) => r.uuid), rows.map((r) => sha256Hex(tokens.refreshTokenId(r.uuid, 0)))],
    );
    const now = new Date();
    return Promise.all(
      rows.map(async (r) => ({
        access: await tokens.signAccessToken(
          { sub: r.user_uuid, email: r.email, sid: r.uuid, amr: ['pwd'], authTime: Math.floor(now.getTime() / 1000) },
          now,
        ),
        refresh: await tokens.signRefreshToken({
          sub: r.user_uuid,
          sid: r.uuid,
          generation: 0,
          issuedAt: now,
          expiresAt: r.expires_at,
        }),
      })),
    );
  } finally {
    await client.end();
  }
}

const pick = <T>(list: T[]): T => list[Math.floor(Math.random() * list.length)] as T;
const seededLogin = (fixture: Fixture) => {
  const n = 1 + Math.floor(Math.random() * fixture.users);
  return JSON.stringify({ username: `seed${n}`, password: SEED_PASSWORD });
};

function meRequest(fixture: Fixture) {
  return (request: Parameters<NonNullable<Parameters<typeof load>[0]['setupRequest']>>[0]) => ({
    ...request,
    headers: { ...request.headers, authorization: `Bearer ${pick(fixture.sessions).access}` },
  });
}

function registerLoad(fixture: Fixture): Promise<LoadResult> {
  return load({
    url: `${fixture.apiUrl}/register`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    connections: 8,
    setupRequest: (request) => ({ ...request, body: JSON.stringify(uniqueUser()) }),
  });
}

/** Random users across the whole table, so that the index, not a warm row, answers. */
function loginLoad(fixture: Fixture): Promise<LoadResult> {
  return load({
    url: `${fixture.apiUrl}/login`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    connections: 8,
    setupRequest: (request) => ({ ...request, body: seededLogin(fixture) }),
  });
}

function clean(what: string, result: LoadResult): LoadResult {
  const bad = Object.keys(result.statusCodes).filter((code) => !code.startsWith('2'));
  if (result.errors > 0 || bad.length > 0) {
    throw new Error(`${what} load failed: ${JSON.stringify(result.statusCodes)}, ${result.errors} errors`);
  }
  return result;
}

export type Operation = 'me' | 'refresh' | 'login' | 'register';

/** The mixed scenario of the issue: 70% /me, 20% refresh, 8% login, 2% register. */
export const MIXED: Record<Operation, number> = { me: 70, refresh: 20, login: 8, register: 2 };

/**
 * The benchmark's requests against one fixture, drawn by weight. Refresh
 * spends a held session's token and keeps the new pair, holding the session
 * exclusively while in flight; with none idle, /me goes instead.
 */
export class Traffic {
  readonly #fixture: Fixture;
  readonly #idle: Held[];
  readonly #table: [Operation, number][];
  readonly #total: number;

  constructor(fixture: Fixture, weights: Partial<Record<Operation, number>>) {
    this.#fixture = fixture;
    this.#idle = [...fixture.sessions];
    this.#table = Object.entries(weights) as [Operation, number][];
    this.#total = this.#table.reduce((sum, [, w]) => sum + w, 0);
  }

  draw(): Operation {
    let x = Math.random() * this.#total;
    for (const [op, w] of this.#table) {
      x -= w;
      if (x < 0) return op === 'refresh' && this.#idle.length === 0 ? 'me' : op;
    }
    return 'me';
  }

  /** Sends one request and reads its body; answers the status. */
  async send(op: Operation): Promise<number> {
    const { apiUrl } = this.#fixture;
    const json = { 'content-type': 'application/json' };
    switch (op) {
      case 'me':
        return status(
          fetch(`${apiUrl}/me`, { headers: { authorization: `Bearer ${pick(this.#fixture.sessions).access}` } }),
        );
      case 'login':
        return status(fetch(`${apiUrl}/login`, { method: 'POST', headers: json, body: seededLogin(this.#fixture) }));
      case 'register':
        return status(
          fetch(`${apiUrl}/register`, { method: 'POST', headers: json, body: JSON.stringify(uniqueUser()) }),
        );
      case 'refresh': {
        const held = this.#idle.pop() as Held;
        try {
          const res = await fetch(`${apiUrl}/refresh`, {
            method: 'POST',
            headers: json,
            body: JSON.stringify({ refresh_token: held.refresh }),
          });
          if (!res.ok) return status(Promise.resolve(res));
          const pair = (await res.json()) as { access_token: string; refresh_token: string };
          held.access = pair.access_token;
          held.refresh = pair.refresh_token;
          return res.status;
        } finally {
          this.#idle.push(held);
        }
      }
    }
  }
}

async function status(response: Promise<Response>): Promise<number> {
  const res = await response;
  await res.arrayBuffer();
  return res.status;
}

/** `workers` clients, each sending one request at a time for `seconds`, every request drawn by `weights`. */
async function closedLoop(
  fixture: Fixture,
  workers: number,
  weights: Partial<Record<Operation, number>>,
  seconds = SECONDS,
): Promise<Sample> {
  const traffic = new Traffic(fixture, weights);
  const latencies: number[] = [];
  const counts: Record<string, number> = {};
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < end) {
        const op = traffic.draw();
        const t0 = performance.now();
        const code = await traffic.send(op);
        if (code >= 300) throw new Error(`${op} answered ${code} under load`);
        latencies.push(performance.now() - t0);
        counts[op] = (counts[op] ?? 0) + 1;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return { rps: latencies.length / elapsed, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), counts };
}

export function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

/**
 * Runs each hot request once on an in-process instance whose Kysely logs
 * every statement, then EXPLAINs each distinct statement (ANALYZE inside a
 * rolled-back transaction; plain EXPLAIN when re-running it would conflict).
 * Background statements seen meanwhile (revocation sync, outbox, audit
 * sealer) are included. A sequential scan of a large table is flagged.
 */
async function explainHotQueries(url: string, env: Record<string, string>, fixture: Fixture): Promise<void> {
  const seen = new Map<string, readonly unknown[]>();
  const pool = new pg.Pool({
    connectionString: url,
    max: 4,
    types: {
      getTypeParser: (oid: number, format?: 'text' | 'binary') =>
        oid === 20 ? Number : (pg.types.getTypeParser(oid, format) as (v: string) => unknown),
    } as pg.CustomTypesConfig,
  });
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      if (event.level !== 'query') return;
      const text = event.query.sql;
      if (
        /^\s*(select|insert|update|delete|with)\b/i.test(text) &&
        !/kysely_migration|pg_catalog|information_schema/.test(text)
      ) {
        if (!seen.has(text)) seen.set(text, event.query.parameters);
      }
    },
  });
  const app = await buildApp(loadConfig({ ...env, LOG_LEVEL: 'warn' }), {
    logger: false,
    database: { db, kind: 'postgres', ping: async () => true, close: () => db.destroy() },
  });
  const labels = new Map<string, string>();
  const tag = (what: string) => {
    for (const text of seen.keys()) if (!labels.has(text)) labels.set(text, what);
  };
  try {
    await app.ready();
    tag('start-up and background (revocation sync, outbox poll)');
    const user = uniqueUser();
    const registered = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      payload: { ...user, organization_name: `Org ${user.username}` },
    });
    if (registered.statusCode !== 201) throw new Error(`explain: register answered ${registered.statusCode}`);
    tag('POST /api/v1/register');
    const login = await app.inject({ method: 'POST', url: '/api/v1/login', payload: JSON.parse(seededLogin(fixture)) });
    if (login.statusCode !== 200) throw new Error(`explain: login answered ${login.statusCode}: ${login.body}`);
    tag('POST /api/v1/login');
    const tokens = JSON.parse(login.body) as { access_token: string; refresh_token: string };
    const me = await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${tokens.access_token}` } });
    if (me.statusCode !== 200) throw new Error(`explain: /me answered ${me.statusCode}`);
    tag('GET /api/v1/me');
    const refreshed = await app.inject({
      method: 'POST',
      url: '/api/v1/refresh',
      payload: { refresh_token: tokens.refresh_token },
    });
    if (refreshed.statusCode !== 200) throw new Error(`explain: refresh answered ${refreshed.statusCode}`);
    tag('POST /api/v1/refresh');
    await app.gatehouse.auditSealer.sealNow();
    await app.gatehouse.outbox.drain();
    await app.gatehouse.revocations.sync();
    tag('background (audit sealer, outbox, revocation sync)');
  } finally {
    await app.close();
    await db.destroy();
  }

  const client = new pg.Client({ connectionString: url });
  await client.connect();
  // Statements inside SQL functions get their plans from auto_explain, sent to this client as LOG messages.
  let nested: string[] = [];
  client.on('notice', (message) => {
    if (message.message && !/Query Text: explain/i.test(message.message)) nested.push(message.message);
  });
  await client.query(`load 'auto_explain'`);
  for (const setting of [
    'log_min_duration = 0',
    'log_nested_statements = on',
    'log_analyze = on',
    'log_buffers = on',
  ]) {
    await client.query(`set auto_explain.${setting}`);
  }
  await client.query('set client_min_messages = log');
  const sections: string[] = [];
  const flagged: string[] = [];
  try {
    for (const [text, parameters] of seen) {
      let plan: string;
      nested = [];
      try {
        await client.query('begin');
        const { rows } = await client.query(`explain (analyze, buffers) ${text}`, [...parameters]);
        plan = rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
      } catch {
        await client.query('rollback');
        await client.query('begin');
        const { rows } = await client.query(`explain ${text}`, [...parameters]);
        plan = `(not executed: running it again would conflict with the row it already wrote)\n${rows
          .map((r: Record<string, string>) => r['QUERY PLAN'])
          .join('\n')}`;
      } finally {
        await client.query('rollback');
      }
      if (nested.length > 0) plan += `\n\nInside functions it calls (auto_explain):\n${nested.join('\n')}`;
      for (const table of LARGE_TABLES) {
        if (new RegExp(`Seq Scan on ${table}\\b`).test(plan)) flagged.push(`${labels.get(text)}: Seq Scan on ${table}`);
      }
      sections.push(`-- ${labels.get(text) ?? 'other'}\n${text}\n\n${plan}\n`);
    }
  } finally {
    await client.end();
  }
  const header = [
    `EXPLAIN of every statement the hot paths ran, at ${fixture.users.toLocaleString('en')} seeded users (${new Date().toISOString()}).`,
    flagged.length === 0 ? 'No sequential scan of a large table.' : `SEQUENTIAL SCANS:\n${flagged.join('\n')}`,
    '',
  ].join('\n');
  mkdirSync(new URL('../results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('../results/explain.txt', import.meta.url), `${header}\n${sections.join('\n')}`);
  if (flagged.length > 0) process.stderr.write(`bench: scale: sequential scans found:\n  ${flagged.join('\n  ')}\n`);
}
