import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { EmbeddedInUseError, runDirectory } from '../../src/db/embedded.ts';
import { type DatabaseHandle, openDatabase, openSqlEndpoint } from '../../src/db/index.ts';

/**
 * One PGlite directory, one owner: the owner serves it on a Unix socket and
 * every other client (the CLI, psql) goes through it. These tests use the
 * embedded database whatever DATABASE_URL says: it is what they are about.
 */
describe('the embedded database is owned by one process and served to the others', () => {
  let dataDir: string;
  let dir: string;
  let owner: DatabaseHandle;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-embedded-'));
    dir = join(dataDir, 'pglite');
    owner = await openDatabase(undefined, dataDir);
    await sql`create table counter (id int primary key, n int not null)`.execute(owner.db);
    await sql`insert into counter values (1, 0)`.execute(owner.db);
  });
  after(async () => {
    await owner?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a second owner of the directory is refused, naming the process that owns it', async () => {
    await assert.rejects(openDatabase(undefined, dataDir), (error: unknown) => {
      assert.ok(error instanceof EmbeddedInUseError);
      assert.equal(error.owner.pid, process.pid);
      assert.match(error.message, new RegExp(`in use by another Gatehouse process \\(pid ${process.pid}\\)`));
      assert.match(error.message, /DATA_DIR/);
      return true;
    });
  });

  test('a client goes through the owner: each sees the other’s committed writes at once', async () => {
    const client = await openDatabase(undefined, dataDir, { role: 'client' });
    try {
      assert.equal(client.kind, 'postgres', 'a socket connection, not a second PGlite');
      await sql`update counter set n = 41 where id = 1`.execute(client.db);
      const seen = await sql<{ n: number }>`select n from counter where id = 1`.execute(owner.db);
      assert.equal(seen.rows[0]?.n, 41);
      await sql`update counter set n = 0 where id = 1`.execute(owner.db);
      const back = await sql<{ n: number }>`select n from counter where id = 1`.execute(client.db);
      assert.equal(back.rows[0]?.n, 0);
    } finally {
      await client.close();
    }
  });

  test('transactions of the owner and of socket clients never interleave: no update is lost', async () => {
    const clients = await Promise.all([1, 2, 3].map(() => openDatabase(undefined, dataDir, { role: 'client' })));
    const increment = (db: DatabaseHandle['db']) =>
      db.transaction().execute(async (trx) => {
        const row = await sql<{ n: number }>`select n from counter where id = 1`.execute(trx);
        await new Promise((resolve) => setImmediate(resolve));
        await sql`update counter set n = ${(row.rows[0]?.n ?? 0) + 1} where id = 1`.execute(trx);
      });
    try {
      await sql`update counter set n = 0 where id = 1`.execute(owner.db);
      const work = [owner, ...clients].flatMap((handle) => Array.from({ length: 10 }, () => increment(handle.db)));
      await Promise.all(work);
      const total = await sql<{ n: number }>`select n from counter where id = 1`.execute(owner.db);
      assert.equal(total.rows[0]?.n, 40);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  test('a client that vanishes inside a transaction is rolled back, and the owner goes on', async () => {
    const endpoint = await openSqlEndpoint(undefined, dataDir);
    const client = new pg.Client(endpoint.client);
    client.on('error', () => {});
    await client.connect();
    await client.query('begin');
    await client.query('update counter set n = 999 where id = 1');
    // Gone without COMMIT, ROLLBACK or Terminate.
    (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    const row = await sql<{ n: number }>`select n from counter where id = 1`.execute(owner.db);
    assert.notEqual(row.rows[0]?.n, 999);
    await endpoint.close();
  });

  test('psql-style clients may name any user and database: they get the one backend', async () => {
    const endpoint = await openSqlEndpoint(undefined, dataDir);
    for (const user of ['root', 'nobody', 'postgres']) {
      const client = new pg.Client({ ...endpoint.client, user, database: `db_of_${user}` });
      await client.connect();
      const result = await client.query<{ one: number }>('select 1 as one');
      assert.equal(result.rows[0]?.one, 1);
      await client.end();
    }
    await endpoint.close();
    assert.equal((await sql<{ n: number }>`select 1 as n`.execute(owner.db)).rows[0]?.n, 1);
  });

  test('the run directory is 0700, the socket and the owner file 0600', () => {
    const run = runDirectory(dir);
    assert.equal(statSync(run).mode & 0o777, 0o700);
    assert.equal(statSync(join(run, 'owner.json')).mode & 0o777, 0o600);
    assert.equal(statSync(join(run, '.s.PGSQL.5432')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  test('the socket answers the PostgreSQL protocol (an SSL request is declined, as by a local server)', async () => {
    const socket = connect(join(runDirectory(dir), '.s.PGSQL.5432'));
    const reply = await new Promise<string>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('data', (data) => resolve(data.toString()));
      const request = Buffer.alloc(8);
      request.writeInt32BE(8, 0);
      request.writeInt32BE(80877103, 4);
      socket.write(request);
    });
    socket.destroy();
    assert.equal(reply, 'N');
  });
});

describe('owning a directory', () => {
  test('a directory left by a process that died is taken over', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-embedded-'));
    try {
      const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
        encoding: 'utf8',
      });
      const first = await openDatabase(undefined, dataDir);
      await first.close();
      writeFileSync(
        join(runDirectory(join(dataDir, 'pglite')), 'owner.json'),
        JSON.stringify({ pid: Number(dead.stdout), socketDir: null }),
      );
      const second = await openDatabase(undefined, dataDir);
      assert.equal(await second.ping(), true);
      await second.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('with no owner the client owns the directory itself, and lets go when closed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-embedded-'));
    try {
      const client = await openDatabase(undefined, dataDir, { role: 'client' });
      assert.equal(client.kind, 'pglite');
      await assert.rejects(openDatabase(undefined, dataDir), EmbeddedInUseError);
      await client.close();
      const server = await openDatabase(undefined, dataDir);
      await server.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('memory:// belongs to no directory: any number open at once', async () => {
    const a = await openDatabase('memory://', '/nonexistent');
    const b = await openDatabase('memory://', '/nonexistent');
    assert.equal(await a.ping(), true);
    assert.equal(await b.ping(), true);
    await Promise.all([a.close(), b.close()]);
    await assert.rejects(openSqlEndpoint('memory://', '/nonexistent'), /memory:\/\//);
  });
});
