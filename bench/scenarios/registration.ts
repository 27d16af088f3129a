import * as argon2 from '@node-rs/argon2';
import { ARGON2ID_PARAMS } from '../../src/services/passwords.ts';
import { type BenchResult, createDatabase, gatehouseEnv, load, rate, round, startServer, uniqueUser } from '../lib.ts';
import type { BenchContext } from '../run.ts';

/** Registrations/s through HTTP on PostgreSQL ÷ bare argon2id hashes/s (2 concurrent). */
export default async function registration(ctx: BenchContext): Promise<BenchResult[]> {
  const concurrency = 2;
  const hashesPerSecond = await rate(
    () => argon2.hash(`Kx9#${Math.random()}Vq!`, { algorithm: 2, ...ARGON2ID_PARAMS }),
    concurrency,
  );
  ctx.baselines.argon2idHashesPerSecond = hashesPerSecond;

  const database = await createDatabase();
  const server = await startServer('gatehouse', gatehouseEnv(database.url, { HASH_CONCURRENCY: String(concurrency) }));
  try {
    const result = await load({
      url: `${server.url}/api/v1/register`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      connections: 8,
      setupRequest: (request) => ({ ...request, body: JSON.stringify(uniqueUser()) }),
    });
    if (result.errors > 0 || result.non2xx > 0) {
      throw new Error(`registration load failed: ${JSON.stringify(result.statusCodes)}, ${result.errors} errors`);
    }
    return [
      {
        name: 'argon2id hashes/s (m=19 MiB, t=2, p=1; 2 concurrent)',
        value: round(hashesPerSecond, 1),
        unit: 'hashes/s',
      },
      {
        name: 'registrations/s (HTTP, PostgreSQL + Redis)',
        value: round(result.rps, 1),
        unit: 'req/s',
        ratio: round(result.rps / hashesPerSecond),
        baseline: 'argon2id hashes/s',
        target: 0.8,
        p50_ms: result.p50,
        p99_ms: result.p99,
      },
    ];
  } finally {
    await server.close();
    await database.drop();
  }
}
