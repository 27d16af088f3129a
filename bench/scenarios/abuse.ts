// Abuse protection under load: the offline breach index on a 10-million-hash
// synthetic corpus (size and lookups/s), and a login flood of 200 concurrent
// clients against the bounded hashing pool (peak memory, share of 503s).
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BreachIndex, buildBreachIndex } from '../../src/infra/breach-index.ts';
import { type BenchResult, createDatabase, gatehouseEnv, load, rate, round, startServer } from '../lib.ts';
import type { BenchContext } from '../run.ts';

const CORPUS_ENTRIES = Number(process.env.BENCH_BREACH_ENTRIES ?? 10_000_000);
/** Real passwords hidden in the synthetic corpus, so that lookups can hit. */
const KNOWN = 100_000;
const FLOOD_CLIENTS = 200;

const HEX = Buffer.from('0123456789ABCDEF');

/**
 * Writes `entries` lines in the Pwned Passwords download format
 * (`SHA1:COUNT`, CRLF): the SHA-1 of `bench-password-<i>` for the first
 * KNOWN, random 20-byte values for the rest, in no particular order.
 */
function writeSyntheticCorpus(path: string, entries: number): void {
  const fd = openSync(path, 'w');
  const perChunk = 65_536;
  const line = 44; // 40 hex + ':' + one digit + CRLF
  const out = Buffer.alloc(perChunk * line);
  try {
    for (let written = 0; written < entries; ) {
      const n = Math.min(perChunk, entries - written);
      const random = randomBytes(n * 21);
      for (let i = 0; i < n; i++) {
        const index = written + i;
        const digest =
          index < KNOWN
            ? createHash('sha1').update(`bench-password-${index}`).digest()
            : random.subarray(i * 21, i * 21 + 20);
        const at = i * line;
        for (let b = 0; b < 20; b++) {
          const byte = digest[b] as number;
          out[at + 2 * b] = HEX[byte >> 4] as number;
          out[at + 2 * b + 1] = HEX[byte & 15] as number;
        }
        out[at + 40] = 58; // ':'
        out[at + 41] = 49 + ((random[i * 21 + 20] as number) % 9); // count 1-9
        out[at + 42] = 13;
        out[at + 43] = 10;
      }
      writeSync(fd, out, 0, n * line);
      written += n;
    }
  } finally {
    closeSync(fd);
  }
}

async function breachIndex(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-breach-'));
  try {
    const corpus = join(dir, 'pwned-synthetic.txt');
    let started = performance.now();
    writeSyntheticCorpus(corpus, CORPUS_ENTRIES);
    const generateSeconds = (performance.now() - started) / 1000;

    const output = join(dir, 'breach-index.bin');
    started = performance.now();
    const built = buildBreachIndex(corpus, output, { format: 'sha1' });
    const importSeconds = (performance.now() - started) / 1000;
    const corpusBytes = statSync(corpus).size;
    rmSync(corpus);

    const index = BreachIndex.open(output);
    try {
      let i = 0;
      let hits = 0;
      const lookup = async () => {
        i++;
        // Half known passwords, half never seen.
        const password = i % 2 === 0 ? `bench-password-${i % KNOWN}` : `unseen-${i}-${Math.random()}`;
        if (await index.contains(password)) hits++;
      };
      const lookupsPerSecond = await rate(lookup, 16);
      // Every known password must be found; an unseen one only by a ~2^-58 accident.
      if (hits < Math.floor(i / 2) || hits > Math.floor(i / 2) + 1) {
        throw new Error(`breach index answered ${hits} hits of ${i} lookups`);
      }
      const tableBytes = 4 * (2 ** index.fanoutBits + 1);
      return [
        {
          name: `offline breach index size (${(built.entries / 1e6).toFixed(0)} M synthetic SHA-1 hashes)`,
          value: round(index.bytes / index.entries, 3),
          unit: 'bytes/hash',
          note: `${round(index.bytes / 2 ** 20, 1)} MiB on disk from a ${round(corpusBytes / 2 ** 20, 0)} MiB corpus; ${round(tableBytes / 2 ** 20, 2)} MiB fan-out table in memory`,
        },
        {
          name: 'offline breach index lookups/s (SHA-1 + one pread, 16 concurrent, half hits)',
          value: round(lookupsPerSecond, 0),
          unit: 'lookups/s',
        },
        {
          name: `gatehouse breach import of ${(CORPUS_ENTRIES / 1e6).toFixed(0)} M lines`,
          value: round(importSeconds, 1),
          unit: 's',
          note: `corpus generated in ${round(generateSeconds, 1)} s`,
        },
      ];
    } finally {
      index.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Peak resident set of a process (Linux), in MiB. */
function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
  return kib / 1024;
}

/**
 * 200 clients guess passwords of unknown users as fast as they can: every
 * attempt costs one argon2id verification. With HASH_CONCURRENCY = cores,
 * requests past the queue limit are shed with 503 + Retry-After and memory
 * stays flat; with the default queue (200) nothing is shed, it waits.
 */
async function loginFlood(queueLimit: number): Promise<BenchResult[]> {
  const database = await createDatabase();
  const server = await startServer(
    'gatehouse',
    gatehouseEnv(database.url, { HASH_QUEUE_LIMIT: String(queueLimit), LOG_LEVEL: 'error' }),
  );
  try {
    const baseline = peakRssMiB(server.process.pid as number);
    let n = 0;
    const result = await load({
      url: `${server.url}/api/v1/login/json`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      connections: FLOOD_CLIENTS,
      setupRequest: (request) => {
        n++;
        return {
          ...request,
          body: JSON.stringify({ username: `flood_${n}_${randomBytes(3).toString('hex')}`, password: `Guess-${n}!` }),
        };
      },
    });
    const peak = peakRssMiB(server.process.pid as number);
    const shed = result.statusCodes['503'] ?? 0;
    const unexpected = Object.keys(result.statusCodes).filter((code) => code !== '401' && code !== '503');
    if (unexpected.length > 0 || result.errors > 0) {
      throw new Error(`login flood: unexpected answers ${JSON.stringify(result.statusCodes)}, ${result.errors} errors`);
    }
    return [
      {
        name: `login flood, ${FLOOD_CLIENTS} clients, HASH_QUEUE_LIMIT=${queueLimit}: peak RSS of the server`,
        value: round(peak, 0),
        unit: 'MiB',
        note: `${round(baseline, 0)} MiB before the flood`,
      },
      {
        name: `login flood, ${FLOOD_CLIENTS} clients, HASH_QUEUE_LIMIT=${queueLimit}: share answered 503`,
        value: round((100 * shed) / Math.max(1, result.total), 1),
        unit: '%',
        note: `${result.total} answers: ${JSON.stringify(result.statusCodes)}`,
        p50_ms: result.p50,
        p99_ms: result.p99,
      },
    ];
  } finally {
    await server.close();
    await database.drop();
  }
}

export default async function abuse(_ctx: BenchContext): Promise<BenchResult[]> {
  return [...(await breachIndex()), ...(await loginFlood(20)), ...(await loginFlood(200))];
}
