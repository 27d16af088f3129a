import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CompiledQuery, sql } from 'kysely';
import { type DatabaseHandle, openDatabase } from '../../src/db/index.ts';
import { type Binder, CachedStatement, prepared } from '../../src/db/prepared.ts';
import { requireService, urlReachable } from '../helpers.ts';

// Named prepared statements are a PostgreSQL server feature: this runs on the
// machine's PostgreSQL (DATABASE_URL when it names one, else 127.0.0.1:5432).
const url = process.env.DATABASE_URL?.startsWith('postgres')
  ? process.env.DATABASE_URL
  : 'postgres://postgres@127.0.0.1:5432/postgres';

let handle: DatabaseHandle | undefined;
let skip: string | false = false;

before(async () => {
  skip = requireService('PostgreSQL', await urlReachable(url, 5432));
  if (!skip) handle = await openDatabase(url, '/nonexistent');
});
after(() => handle?.close());

interface Statement {
  name: string;
  statement: string;
}

test('a registered statement is parsed once per connection and runs under its name; others stay unnamed', async (t) => {
  if (skip || !handle) return t.skip(skip || 'no database');
  const hot = prepared(CompiledQuery.raw('select $1::int + 1 as n /* prepared.test hot */', [0]));
  const cold = CompiledQuery.raw('select $1::int + 2 as n /* prepared.test cold */', [0]);
  const statements = await handle.db.connection().execute(async (conn) => {
    const answers: number[] = [];
    for (const value of [1, 41]) {
      const { rows } = await conn.executeQuery<{ n: number }>(CompiledQuery.raw(hot.sql, [value]));
      answers.push(rows[0]?.n ?? -1);
    }
    await conn.executeQuery(CompiledQuery.raw(cold.sql, [1]));
    assert.deepEqual(answers, [2, 42], 'each call binds its own parameter');
    const { rows } = await sql<Statement>`select name, statement from pg_prepared_statements`.execute(conn);
    return rows;
  });
  const hotOnes = statements.filter((s) => s.statement === hot.sql);
  assert.equal(hotOnes.length, 1, 'prepared once, reused on the second call');
  assert.match(hotOnes[0]?.name ?? '', /^gatehouse_\d+$/);
  assert.equal(statements.filter((s) => s.statement === cold.sql).length, 0);
});

test('registering the same SQL twice keeps one name', async (t) => {
  if (skip || !handle) return t.skip(skip || 'no database');
  const text = 'select $1::text as v /* prepared.test twice */';
  prepared(CompiledQuery.raw(text, ['a']));
  prepared(CompiledQuery.raw(text, ['b']));
  const names = await handle.db.connection().execute(async (conn) => {
    await conn.executeQuery(CompiledQuery.raw(text, ['x']));
    const { rows } = await sql<Statement>`select name, statement from pg_prepared_statements`.execute(conn);
    return rows.filter((s) => s.statement === text).map((s) => s.name);
  });
  assert.equal(names.length, 1);
});

test('DATABASE_POOL_SIZE bounds the connections an instance opens', async (t) => {
  if (skip) return t.skip(skip);
  const small = await openDatabase(url, '/nonexistent', { poolSize: 2 });
  try {
    // Five statements at once, each holding its connection a moment: only two backends ever serve them.
    const pids = await Promise.all(
      Array.from({ length: 5 }, () =>
        sql<{ pid: number }>`select pg_backend_pid() as pid, pg_sleep(0.05)`.execute(small.db),
      ),
    );
    assert.equal(new Set(pids.map((r) => r.rows[0]?.pid)).size, 2);
  } finally {
    await small.close();
  }
});

test('a cached statement is built once per shape; each run binds its own values, inside JSON too', async (t) => {
  if (skip || !handle) return t.skip(skip || 'no database');
  let builds = 0;
  const statement = new CachedStatement(
    (db, bind: Binder<{ n: number; label: string; at: Date }>, shape: 'plain' | 'doubled') => {
      builds++;
      const n = bind('n');
      const details = JSON.stringify({ label: bind('label'), n });
      return db
        .selectNoFrom([
          sql<number>`${n}::int * ${shape === 'doubled' ? 2 : 1}`.as('n'),
          sql<Record<string, unknown>>`${details}::jsonb`.as('details'),
          sql<Date>`${bind('at')}::timestamptz`.as('at'),
        ])
        .$castTo<{ n: number; details: Record<string, unknown>; at: Date }>();
    },
  );
  const at = new Date('2026-12-07T12:00:00.123Z');
  const run = (shape: 'plain' | 'doubled', n: number, label: string) =>
    statement.execute(handle!.db, shape, { n, label, at });
  // A value that needs escaping inside JSON keeps its meaning.
  assert.deepEqual(await run('plain', 3, 'a "quoted" \\ label'), [
    { n: 3, details: { label: 'a "quoted" \\ label', n: 3 }, at },
  ]);
  assert.deepEqual(await run('plain', 5, 'b'), [{ n: 5, details: { label: 'b', n: 5 }, at }]);
  assert.deepEqual(await run('doubled', 5, 'c'), [{ n: 10, details: { label: 'c', n: 5 }, at }]);
  assert.equal(builds, 2, 'one build per shape');
  await assert.rejects(
    statement.execute(handle!.db, 'plain', { n: 1, label: undefined as unknown as string, at }),
    /no value bound for "label"/,
  );
});
