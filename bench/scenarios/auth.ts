import { availableParallelism } from 'node:os';
import * as argon2 from '@node-rs/argon2';
import type autocannon from 'autocannon';
import { ARGON2ID_PARAMS } from '../../src/infra/passwords.ts';
import {
  type BenchResult,
  createDatabase,
  gatehouseEnv,
  type LoadOptions,
  type LoadResult,
  load,
  rate,
  round,
  SECONDS,
  startServer,
  uniqueUser,
} from '../lib.ts';
import type { BenchContext } from '../run.ts';

/** A refresh request that carries its connection's session chain. */
type ChainRequest = autocannon.Request & { chain: { token?: string } };

interface Tokens {
  access_token: string;
  refresh_token: string;
}

const LOGIN_HASH_CONCURRENCY = 1;
const SERVER_ENV = { LOCKOUT_THRESHOLD: '1000', RATE_LIMIT_REFRESH: '100000000/1h' };
const ROUNDS = 3;
/** Load connections for the guard and /me, each with its own session. */
const READ_CONNECTIONS = 50;

/** The round with the median ratio. */
function median<T extends { ratio: number }>(rounds: T[]): T {
  return [...rounds].sort((a, b) => a.ratio - b.ratio)[Math.floor(rounds.length / 2)] as T;
}

async function post<T>(url: string, body: unknown): Promise<T> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`POST ${url} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}

function assertClean(what: string, result: LoadResult, allowed = ['2xx']): void {
  const bad = Object.keys(result.statusCodes).filter(
    (code) => !allowed.includes(`${code[0]}xx`) && !allowed.includes(code),
  );
  if (result.errors > 0 || bad.length > 0) {
    throw new Error(`${what} load failed: ${JSON.stringify(result.statusCodes)}, ${result.errors} errors`);
  }
}

interface LoginRound {
  ratio: number;
  rps: number;
  verifications: number;
  p50: number;
  p99: number;
}

/** Logins/s against bare verifications/s at the same concurrency, alternating, median of the rounds. */
async function measureLogins(
  api: string,
  user: { username: string; password: string },
  hash: string,
  concurrency: number,
): Promise<LoginRound> {
  const body = JSON.stringify({ username: user.username, password: user.password });
  // Hash-bound: tens per second, so each round runs a full measurement period, after a warm-up.
  await Promise.all(Array.from({ length: 4 }, () => post(`${api}/login`, JSON.parse(body))));
  const rounds: LoginRound[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const verifications = await rate(() => argon2.verify(hash, user.password), concurrency, SECONDS);
    const logins = await load({
      url: `${api}/login`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      connections: 4 * concurrency,
      seconds: SECONDS,
    });
    assertClean('login', logins);
    rounds.push({
      ratio: logins.rps / verifications,
      rps: logins.rps,
      verifications,
      p50: logins.p50,
      p99: logins.p99,
    });
  }
  return median(rounds);
}

/**
 * On PostgreSQL + Redis: the auth guard alone and GET /me against Fastify's
 * hello world, logins against bare argon2id verifications, refreshes, and the
 * latency of "unknown user" against "wrong password".
 */
export default async function auth(_ctx: BenchContext): Promise<BenchResult[]> {
  const database = await createDatabase();
  const server = await startServer(
    'guarded',
    gatehouseEnv(database.url, { ...SERVER_ENV, HASH_CONCURRENCY: String(LOGIN_HASH_CONCURRENCY) }),
  );
  const api = `${server.url}/api/v1`;
  const results: BenchResult[] = [];
  try {
    const user = uniqueUser();
    await post(`${api}/register`, user);
    // GET /me: one session per load connection, handed out in turn, since concurrent requests of one session
    // share a read. Building each request afresh costs the load generator CPU, which counts against /me.
    const readSessions: Tokens[] = [];
    for (let i = 0; i < READ_CONNECTIONS; i++) {
      readSessions.push(await post<Tokens>(`${api}/login`, { username: user.username, password: user.password }));
    }
    let turn = 0;
    const eachSession: Pick<LoadOptions, 'setupRequest'> = {
      setupRequest: (request) => ({
        ...request,
        headers: {
          ...request.headers,
          authorization: `Bearer ${readSessions[turn++ % readSessions.length]?.access_token}`,
        },
      }),
    };
    // The organization guard: each session's user is a member (admin ⊇ user) of one organization.
    const organization = await fetch(`${api}/organizations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${readSessions[0]?.access_token}` },
      body: JSON.stringify({ name: `Bench ${Date.now()}` }),
    });
    if (organization.status !== 201) throw new Error(`POST /organizations answered ${organization.status}`);
    const orgPing = `${server.url}/bench/organizations/${((await organization.json()) as { uuid: string }).uuid}/ping`;
    // The guard does the same work whichever session a request carries.
    const oneSession: Pick<LoadOptions, 'headers'> = {
      headers: { authorization: `Bearer ${readSessions[0]?.access_token}` },
    };

    // Warm the instance's session-id cache and the JIT before measuring.
    await load({ url: `${server.url}/guarded`, ...eachSession, connections: 10, seconds: 1 });
    await load({ url: `${api}/me`, ...eachSession, connections: 10, seconds: 1 });
    await load({ url: orgPing, ...eachSession, connections: 10, seconds: 1 });

    // The machine's load drifts during a run: each figure alternates with its own baseline, round by round,
    // and the median of the per-round ratios is reported.
    const hello = await startServer('hello');
    try {
      const subjects = [
        {
          name: 'route behind the auth guard (JWT verify + Redis revocation check, no database read)',
          url: `${server.url}/guarded`,
          sessions: oneSession,
          target: 0.5,
        },
        {
          name: `GET /api/v1/me (one database read; ${READ_CONNECTIONS} sessions, concurrent reads batched)`,
          url: `${api}/me`,
          sessions: eachSession,
          target: 0.25,
        },
        {
          name: `host route behind requireOrgRole('user') (JWT verify + one membership read; ${READ_CONNECTIONS} sessions, concurrent reads batched)`,
          url: orgPing,
          sessions: eachSession,
          target: 0.15,
        },
      ];
      for (const subject of subjects) {
        const rounds: { ratio: number; rps: number; p50: number; p99: number }[] = [];
        for (let round = 0; round < ROUNDS; round++) {
          const base = await load({ url: hello.url, connections: 50, seconds: SECONDS / ROUNDS });
          const measured = await load({
            url: subject.url,
            ...subject.sessions,
            connections: READ_CONNECTIONS,
            seconds: SECONDS / ROUNDS,
          });
          assertClean(subject.name, measured);
          rounds.push({ ratio: measured.rps / base.rps, rps: measured.rps, p50: measured.p50, p99: measured.p99 });
        }
        const mid = median(rounds);
        results.push({
          name: subject.name,
          value: round(mid.rps, 0),
          unit: 'req/s',
          ratio: round(mid.ratio),
          baseline: 'Fastify hello-world, alternating rounds',
          target: subject.target,
          p50_ms: mid.p50,
          p99_ms: mid.p99,
        });
      }
    } finally {
      await hello.close();
    }

    // Logins are measured with hashing on one core, the other left to Node, PostgreSQL, Redis and the load
    // generator: the question is whether login costs more than its hash. With every core hashing, the rest of
    // the work (about 5 ms of CPU per login here) competes with the hash itself; that figure is reported too.
    const hash = await argon2.hash(user.password, { algorithm: 2, ...ARGON2ID_PARAMS });
    const login = await measureLogins(api, user, hash, LOGIN_HASH_CONCURRENCY);
    results.push(
      {
        name: `argon2id verifications/s (${LOGIN_HASH_CONCURRENCY} concurrent)`,
        value: round(login.verifications, 1),
        unit: 'verifications/s',
      },
      {
        name: `logins/s (HTTP, session + audit rows written; HASH_CONCURRENCY=${LOGIN_HASH_CONCURRENCY})`,
        value: round(login.rps, 1),
        unit: 'req/s',
        ratio: round(login.ratio),
        baseline: `argon2id verifications/s (${LOGIN_HASH_CONCURRENCY} concurrent), alternating rounds`,
        target: 0.9,
        p50_ms: login.p50,
        p99_ms: login.p99,
      },
    );
    const allCores = availableParallelism();
    const busy = await startServer(
      'guarded',
      gatehouseEnv(database.url, { ...SERVER_ENV, HASH_CONCURRENCY: String(allCores) }),
    );
    try {
      const saturated = await measureLogins(`${busy.url}/api/v1`, user, hash, allCores);
      results.push({
        name: `logins/s with every core hashing (HASH_CONCURRENCY=${allCores})`,
        value: round(saturated.rps, 1),
        unit: 'req/s',
        ratio: round(saturated.ratio),
        baseline: `argon2id verifications/s (${allCores} concurrent), alternating rounds`,
        target: 0.75,
        p50_ms: saturated.p50,
        p99_ms: saturated.p99,
      });
    } finally {
      await busy.close();
    }

    // Each load connection holds its own session and refreshes it in a loop, one request at a time: every
    // refresh spends the previous token and the next one presents its successor, as a client keeping one
    // session alive does. Alternating rounds against hello-world at the same number of connections.
    const chains: string[] = [];
    for (let i = 0; i < READ_CONNECTIONS; i++) {
      chains.push(
        (await post<Tokens>(`${api}/login`, { username: user.username, password: user.password })).refresh_token,
      );
    }
    const refreshRounds: { ratio: number; rps: number; p50: number; p99: number }[] = [];
    const helloAgain = await startServer('hello');
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const base = await load({ url: helloAgain.url, connections: READ_CONNECTIONS, seconds: SECONDS / ROUNDS });
        // autocannon gives every connection its own deep copy of the request below, so `chain` is the
        // connection's own; it calls `onResponse` as a method of that copy.
        const taken: { token?: string }[] = [];
        const refreshes = await load({
          url: `${api}/refresh`,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          requests: [
            {
              chain: {},
              setupRequest: (request: autocannon.Request) => {
                const { chain } = request as ChainRequest;
                if (chain.token === undefined) {
                  chain.token = chains.pop();
                  taken.push(chain);
                }
                return { ...request, body: JSON.stringify({ refresh_token: chain.token }) };
              },
              onResponse(this: ChainRequest, status: number, body: string) {
                if (status === 200) this.chain.token = (JSON.parse(body) as Tokens).refresh_token;
              },
            } as ChainRequest,
          ],
          connections: READ_CONNECTIONS,
          seconds: SECONDS / ROUNDS,
        });
        // A request cut off by the round's end may have rotated its chain: that chain is spent, log in again.
        for (const chain of taken) {
          chains.push(
            (
              await post<Tokens>(`${api}/refresh`, { refresh_token: chain.token }).catch(() =>
                post<Tokens>(`${api}/login`, { username: user.username, password: user.password }),
              )
            ).refresh_token,
          );
        }
        assertClean('refresh', refreshes);
        refreshRounds.push({
          ratio: refreshes.rps / base.rps,
          rps: refreshes.rps,
          p50: refreshes.p50,
          p99: refreshes.p99,
        });
      }
    } finally {
      await helloAgain.close();
    }
    const refresh = median(refreshRounds);
    results.push({
      name: `refreshes/s (rotation with reuse detection + audit row; ${READ_CONNECTIONS} sessions, each refreshing its newest token)`,
      value: round(refresh.rps, 0),
      unit: 'req/s',
      ratio: round(refresh.ratio, 3),
      baseline: 'Fastify hello-world, alternating rounds',
      target: 0.05,
      p50_ms: refresh.p50,
      p99_ms: refresh.p99,
    });

    // Enumeration: the two failure paths, one request at a time, each costing one hash.
    const failure = async (body: () => Record<string, string>) =>
      load({
        url: `${api}/login`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        setupRequest: (request) => ({ ...request, body: JSON.stringify(body()) }),
        connections: 1,
        amount: 200,
      });
    const unknown = await failure(() => ({ username: uniqueUser().username, password: user.password }));
    const wrong = await failure(() => ({ username: user.username, password: `${user.password}x` }));
    assertClean('unknown-user login', unknown, ['401']);
    assertClean('wrong-password login', wrong, ['401']);
    results.push(
      {
        name: 'login failure p50, unknown user',
        value: unknown.p50,
        unit: 'ms',
        p50_ms: unknown.p50,
        p99_ms: unknown.p99,
      },
      { name: 'login failure p50, wrong password', value: wrong.p50, unit: 'ms', p50_ms: wrong.p50, p99_ms: wrong.p99 },
      {
        name: 'login failure p50 difference (unknown − wrong password)',
        value: round(unknown.p50 - wrong.p50, 2),
        unit: 'ms',
        note: 'both paths verify one argon2id hash',
      },
    );
    return results;
  } finally {
    await server.close();
    await database.drop();
  }
}
