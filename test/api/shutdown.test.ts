import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openDatabase } from '../../src/db/index.ts';
import { verifyAuditChain } from '../../src/infra/audit-chain.ts';
import { type IsolatedDatabase, isolatedDatabase } from '../cli/support.ts';
import { newUser, uniqueName } from '../helpers.ts';

const MAIN = join(import.meta.dirname, '..', '..', 'src', 'main.ts');
const TOTAL = 200;
const CONCURRENCY = 16;
/** SIGTERM goes out once this many responses have come back: the rest are in flight or not sent yet. */
const SIGTERM_AFTER = 40;

type Outcome =
  | { kind: 'response'; status: number; body: string; finishedAfterSigterm: boolean }
  | { kind: 'connection-error'; code: string };

interface Server {
  child: ChildProcess;
  port: number;
  logs: string[];
  exited: Promise<number | null>;
}

/** `node src/main.ts` on a free loopback port, as an operator runs it. */
async function startServer(env: Record<string, string | undefined>): Promise<Server> {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        logs.push(line);
        const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
        if (m) resolve(Number(m[1]));
      }
    });
    void exited.then((code) => reject(new Error(`server exited with ${code} before listening: ${stderr}`)));
  });
  return { child, port, logs, exited };
}

describe('graceful shutdown (SIGTERM under load)', () => {
  let iso: IsolatedDatabase;
  let server: Server;
  const users = Array.from({ length: TOTAL }, () => newUser());
  const outcomes: Outcome[] = new Array(TOTAL);
  let sigtermAt = 0;
  let exitCode: number | null = null;

  before(async () => {
    iso = await isolatedDatabase();
    server = await startServer({
      ENVIRONMENT: 'test',
      SECRET_KEY: randomBytes(32).toString('base64url'),
      DATABASE_URL: iso.url,
      DATA_DIR: iso.dataDir,
      REDIS_URL: process.env.REDIS_URL,
      REDIS_KEY_PREFIX: `t:${uniqueName('shutdown')}:`,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      RATE_LIMIT_REGISTER: '100000/1h',
      // Mail goes out only when a registration kicks the sender, or in the final flush.
      OUTBOX_POLL_MS: '3600000',
    });

    let next = 0;
    let answered = 0;
    const lane = async () => {
      while (next < TOTAL) {
        const i = next++;
        try {
          const res = await fetch(`http://127.0.0.1:${server.port}/api/v1/register`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(users[i]),
          });
          const body = await res.text();
          outcomes[i] = { kind: 'response', status: res.status, body, finishedAfterSigterm: sigtermAt > 0 };
        } catch (error) {
          const cause = (error as { cause?: { code?: string } }).cause;
          outcomes[i] = { kind: 'connection-error', code: cause?.code ?? String(error) };
        }
        answered += 1;
        if (answered === SIGTERM_AFTER) {
          sigtermAt = Date.now();
          server.child.kill('SIGTERM');
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, lane));
    exitCode = await server.exited;
  });
  after(async () => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    await iso.cleanup();
  });

  async function inDatabase<T>(work: (db: Awaited<ReturnType<typeof openDatabase>>['db']) => Promise<T>) {
    const database = await openDatabase(iso.url, iso.dataDir);
    try {
      return await work(database.db);
    } finally {
      await database.close();
    }
  }

  test('the process exits 0 by itself once requests, outbox and pools are done', () => {
    assert.equal(exitCode, 0, server.logs.slice(-5).join('\n'));
    assert.ok(server.logs.some((l) => l.includes('"signal":"SIGTERM"')));
    assert.ok(server.logs.some((l) => l.includes('shut down: requests finished, outbox flushed, pools closed')));
  });

  test('every request the server took was answered in full: 201, never an error status', (t) => {
    const codes = outcomes.flatMap((o) => (o.kind === 'connection-error' ? [o.code] : []));
    t.diagnostic(
      `${outcomes.filter((o) => o.kind === 'response').length} answered (${outcomes.filter((o) => o.kind === 'response' && o.finishedAfterSigterm).length} after SIGTERM), ${codes.length} refused: ${[...new Set(codes)].join(', ')}`,
    );
    const responses = outcomes.filter((o) => o.kind === 'response');
    const failed = responses.filter((o) => o.status !== 201);
    assert.deepEqual(failed, [], 'no HTTP response other than 201');
    assert.ok(responses.length >= SIGTERM_AFTER);
    const inFlight = responses.filter((o) => o.finishedAfterSigterm);
    assert.ok(inFlight.length > 0, 'some requests were in flight at SIGTERM and still completed');
  });

  test('requests the server never took were refused at the connection and left no trace', async () => {
    const refused = outcomes
      .map((o, i) => ({ o, i }))
      .filter(({ o }) => o.kind === 'connection-error')
      .map(({ i }) => users[i]!.username);
    assert.ok(refused.length > 0, 'the load went on past the close and was refused');
    const created = await inDatabase((db) =>
      db
        .selectFrom('users')
        .select('username')
        .where('username', 'in', [...refused, '-'])
        .execute(),
    );
    assert.deepEqual(created, [], 'a request that failed at the connection must not have been processed');
  });

  test('every created account exists with its verification mail delivered (the outbox was flushed)', async () => {
    const accepted = outcomes.flatMap((o, i) => (o.kind === 'response' && o.status === 201 ? [users[i]!] : []));
    await inDatabase(async (db) => {
      const rows = await db.selectFrom('users').select(['username', 'email']).execute();
      assert.deepEqual(rows.map((r) => r.username).sort(), accepted.map((u) => u.username).sort());
      const mail = await db.selectFrom('email_outbox').select(['to_address', 'status']).execute();
      assert.equal(mail.length, accepted.length);
      assert.deepEqual(
        mail.filter((m) => m.status !== 'sent'),
        [],
        'no mail left pending or failed',
      );
    });
  });

  test('the audit rows of the last requests were sealed before exit, and the chain verifies', async () => {
    const result = await inDatabase((db) => verifyAuditChain(db));
    assert.equal(result.ok, true, result.problem?.message);
    assert.equal(result.unsealed, 0);
    assert.ok(result.checked >= SIGTERM_AFTER);
  });
});
