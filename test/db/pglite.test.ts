import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { type DatabaseHandle, migrateToLatest, openDatabase } from '../../src/db/index.ts';

let handle: DatabaseHandle;

before(async () => {
  handle = await openDatabase('memory://', '/nonexistent');
  await migrateToLatest(handle.db);
  await sql`create table counters (id int primary key, n int not null)`.execute(handle.db);
  await sql`insert into counters values (1, 0)`.execute(handle.db);
});
after(() => handle.close());

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('concurrent read-modify-write transactions on the single PGlite connection lose no update', async () => {
  const db = handle.db;
  await Promise.all(
    Array.from({ length: 25 }, () =>
      db.transaction().execute(async (trx) => {
        const row = await sql<{ n: number }>`select n from counters where id = 1`.execute(trx);
        // Yield between read and write: without the connection lock another transaction would interleave here.
        await tick();
        await sql`update counters set n = ${(row.rows[0]?.n ?? 0) + 1} where id = 1`.execute(trx);
      }),
    ),
  );
  const final = await sql<{ n: number }>`select n from counters where id = 1`.execute(db);
  assert.equal(final.rows[0]?.n, 25);
});

test('a statement outside a transaction waits for the open transaction instead of joining it', async () => {
  const db = handle.db;
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const failing = db
    .transaction()
    .execute(async (trx) => {
      await sql`update counters set n = -1 where id = 1`.execute(trx);
      await gate;
      throw new Error('roll back');
    })
    .catch((e: Error) => e.message);
  await tick();
  const outside = sql<{ n: number }>`select n from counters where id = 1`.execute(db);
  release();
  assert.equal(await failing, 'roll back');
  // Had the read run inside the open transaction it would have seen -1.
  assert.notEqual((await outside).rows[0]?.n, -1);
  assert.notEqual((await sql<{ n: number }>`select n from counters where id = 1`.execute(db)).rows[0]?.n, -1);
});

test('savepoints roll back part of a transaction', async () => {
  const db = handle.db;
  const trx = await db.startTransaction().execute();
  await sql`update counters set n = 100 where id = 1`.execute(trx);
  const sp = await trx.savepoint('inner').execute();
  await sql`update counters set n = 200 where id = 1`.execute(sp);
  await sp.rollbackToSavepoint('inner').execute();
  await trx.commit().execute();
  assert.equal((await sql<{ n: number }>`select n from counters where id = 1`.execute(db)).rows[0]?.n, 100);
});

test('int8 columns come back as numbers, as on pg', async () => {
  const r = await sql<{
    big: number;
    c: number;
  }>`select 9007199254740991::int8 as big, count(*) as c from counters`.execute(handle.db);
  assert.equal(typeof r.rows[0]?.big, 'number');
  assert.equal(r.rows[0]?.c, 1);
});

test('migrations are idempotent', async () => {
  assert.deepEqual(await migrateToLatest(handle.db), []);
});
