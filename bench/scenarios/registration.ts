import { availableParallelism } from 'node:os';
import * as argon2 from '@node-rs/argon2';
import { ARGON2ID_PARAMS } from '../../src/infra/passwords.ts';
import { type BenchResult, createDatabase, gatehouseEnv, load, rate, round, startServer, uniqueUser } from '../lib.ts';
import type { BenchContext } from '../run.ts';

const ROUNDS = 3;

interface Round {
  ratio: number;
  rps: number;
  hashes: number;
  p50: number;
  p99: number;
}

/**
 * Registrations/s with HASH_CONCURRENCY=`concurrency` ÷ bare argon2id hashes/s
 * at the same concurrency. The machine's speed drifts during a run, so the two
 * alternate, round by round, and the round with the median ratio is returned.
 */
async function measure(databaseUrl: string, concurrency: number): Promise<Round> {
  const bareHashes = () =>
    rate(() => argon2.hash(`Kx9#${Math.random()}Vq!`, { algorithm: 2, ...ARGON2ID_PARAMS }), concurrency);
  const server = await startServer('gatehouse', gatehouseEnv(databaseUrl, { HASH_CONCURRENCY: String(concurrency) }));
  try {
    const register = (seconds?: number) =>
      load({
        url: `${server.url}/api/v1/register`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        connections: 4 * concurrency,
        ...(seconds && { seconds }),
        setupRequest: (request) => ({ ...request, body: JSON.stringify(uniqueUser()) }),
      });
    await register(1); // warm-up: JIT, pool connections, prepared statements
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const hashes = await bareHashes();
      const result = await register();
      if (result.errors > 0 || result.non2xx > 0) {
        throw new Error(`registration load failed: ${JSON.stringify(result.statusCodes)}, ${result.errors} errors`);
      }
      rounds.push({ ratio: result.rps / hashes, rps: result.rps, hashes, p50: result.p50, p99: result.p99 });
    }
    return [...rounds].sort((a, b) => a.ratio - b.ratio)[Math.floor(ROUNDS / 2)] as Round;
  } finally {
    await server.close();
  }
}

/**
 * Registration costs one argon2id hash plus one INSERT statement: registrations/s
 * through HTTP on PostgreSQL against bare hashes/s. The target figure has two
 * hashes at once, as many as the machine has cores here, so Node, PostgreSQL,
 * Redis and the load generator compete with the hashing; a second figure
 * hashes on one core and leaves the other to the rest, as the login figure does.
 */
export default async function registration(ctx: BenchContext): Promise<BenchResult[]> {
  const database = await createDatabase();
  try {
    const two = await measure(database.url, 2);
    ctx.baselines.argon2idHashesPerSecond = two.hashes;
    const results: BenchResult[] = [
      {
        name: 'argon2id hashes/s (m=19 MiB, t=2, p=1; 2 concurrent)',
        value: round(two.hashes, 1),
        unit: 'hashes/s',
      },
      {
        name: 'registrations/s (HTTP, PostgreSQL + Redis; HASH_CONCURRENCY=2)',
        value: round(two.rps, 1),
        unit: 'req/s',
        ratio: round(two.ratio),
        baseline: 'argon2id hashes/s (2 concurrent), alternating rounds',
        target: 0.8,
        p50_ms: two.p50,
        p99_ms: two.p99,
      },
    ];
    if (availableParallelism() > 1) {
      const one = await measure(database.url, 1);
      results.push(
        { name: 'argon2id hashes/s (1 concurrent)', value: round(one.hashes, 1), unit: 'hashes/s' },
        {
          name: 'registrations/s with one core hashing (HASH_CONCURRENCY=1)',
          value: round(one.rps, 1),
          unit: 'req/s',
          ratio: round(one.ratio),
          baseline: 'argon2id hashes/s (1 concurrent), alternating rounds',
          p50_ms: one.p50,
          p99_ms: one.p99,
        },
      );
    }
    return results;
  } finally {
    await database.drop();
  }
}
