import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { pino } from 'pino';
import type { DatabaseHandle } from '../../src/db/index.ts';
import { recordAudit } from '../../src/infra/audit.ts';
import {
  AuditSealer,
  canonicalJson,
  chainHash,
  GENESIS_HASH,
  sealAll,
  sealBatch,
  verifyAuditChain,
} from '../../src/infra/audit-chain.ts';
import { openIsolatedDatabase } from '../cli/support.ts';

const context = { ip: '203.0.113.7', userAgent: 'audit-chain-test' };
const silentLog = pino({ level: 'silent' });

describe('audit log hash chain', () => {
  let opened: Awaited<ReturnType<typeof openIsolatedDatabase>>;
  let database: DatabaseHandle;

  before(async () => {
    opened = await openIsolatedDatabase();
    database = opened.database;
  });
  after(() => opened.close());

  const db = () => database.db;

  async function writeRows(count: number, action: 'login_success' | 'user_updated' = 'login_success') {
    for (let i = 0; i < count; i++) {
      await db()
        .transaction()
        .execute((trx) =>
          recordAudit(trx, { action, userId: i + 1, details: { n: i, nested: { b: 2, a: [1, 'x'] } } }, context),
        );
    }
  }

  async function sealedRows() {
    return db()
      .selectFrom('audit_logs')
      .select(['id', 'seal_seq', 'prev_hash', 'hash'])
      .where('seal_seq', 'is not', null)
      .orderBy('seal_seq')
      .execute();
  }

  async function assertIntact() {
    const result = await verifyAuditChain(db());
    assert.equal(result.ok, true, result.problem?.message);
    return result;
  }

  test('canonical JSON sorts keys at every depth, so equal details hash equally', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }),
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  test('sealed rows form one chain from the genesis hash, and verify reports it intact', async () => {
    await writeRows(25);
    assert.equal(await sealAll(db(), 7), 25);
    const rows = await sealedRows();
    assert.equal(rows.length, 25);
    assert.equal(rows[0]?.prev_hash, GENESIS_HASH);
    rows.forEach((row, i) => {
      assert.equal(Number(row.seal_seq), i + 1);
      assert.match(String(row.hash), /^[0-9a-f]{64}$/);
      if (i > 0) assert.equal(row.prev_hash, rows[i - 1]?.hash);
    });
    const result = await assertIntact();
    assert.equal(result.checked, 25);
    assert.equal(result.unsealed, 0);
    assert.equal(result.head.seq, 25);
    assert.equal(result.head.hash, rows.at(-1)?.hash);
  });

  test('a row that commits after later ids were sealed joins the chain at its end', async () => {
    // A long transaction takes its id first and commits last: emulate it by reserving the id.
    const reserved = await sql<{
      id: number;
    }>`select nextval(pg_get_serial_sequence('audit_logs', 'id'))::int as id`.execute(db());
    const earlyId = Number(reserved.rows[0]?.id);
    await writeRows(3);
    assert.equal(await sealAll(db()), 3);
    await sql`insert into audit_logs (id, action, details) overriding system value values (${earlyId}, 'user_updated', '{}'::jsonb)`.execute(
      db(),
    );
    assert.equal(await sealAll(db()), 1);
    const rows = await sealedRows();
    assert.equal(Number(rows.at(-1)?.id), earlyId);
    assert.ok(Number(rows.at(-2)?.id) > earlyId, 'sealed after rows with higher ids');
    await assertIntact();
  });

  test('concurrent sealers (several instances) build a single gapless chain', async () => {
    await writeRows(40);
    const sealed = await Promise.all([sealAll(db(), 5), sealAll(db(), 5), sealAll(db(), 5)]);
    // A sealer that finds the head locked backs off; the others finish the work.
    const rest = await sealAll(db());
    assert.equal(sealed.reduce((a, b) => a + b, 0) + rest, 40, 'every row sealed exactly once');
    const rows = await sealedRows();
    assert.deepEqual(
      rows.map((row) => Number(row.seal_seq)),
      rows.map((_, i) => i + 1),
    );
    const unsealed = await db().selectFrom('audit_logs').select('id').where('seal_seq', 'is', null).execute();
    assert.equal(unsealed.length, 0);
    await assertIntact();
  });

  test('an edited row is reported as altered, by id', async () => {
    const rows = await sealedRows();
    const target = rows[10]!;
    const original = await sql<{
      details: string;
    }>`select details::text as details from audit_logs where id = ${target.id}`.execute(db());
    await sql`update audit_logs set details = '{"n": 999}'::jsonb where id = ${target.id}`.execute(db());
    const result = await verifyAuditChain(db());
    assert.equal(result.ok, false);
    assert.equal(result.problem?.kind, 'altered');
    assert.equal(result.problem?.id, Number(target.id));
    assert.match(String(result.problem?.message), new RegExp(`row id ${target.id} `));
    assert.equal(result.checked, 10);

    await sql`update audit_logs set details = ${original.rows[0]?.details}::jsonb where id = ${target.id}`.execute(
      db(),
    );
    await assertIntact();
  });

  test('an edited row whose hash was recomputed is caught by the link from the next row', async () => {
    const rows = await sealedRows();
    const target = rows[5]!;
    const saved = await db().selectFrom('audit_logs').selectAll().where('id', '=', target.id).executeTakeFirstOrThrow();
    await sql`update audit_logs set action = 'login_failure' where id = ${target.id}`.execute(db());
    const row = await sql<{
      created_at: string;
    }>`select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as created_at from audit_logs where id = ${target.id}`.execute(
      db(),
    );
    const forged = chainHash(
      {
        id: Number(saved.id),
        action: 'login_failure',
        user_id: saved.user_id,
        organization_id: saved.organization_id,
        ip_address: saved.ip_address,
        user_agent: saved.user_agent,
        details: saved.details,
        created_at: row.rows[0]!.created_at,
      },
      String(saved.prev_hash),
    );
    await sql`update audit_logs set hash = ${forged} where id = ${target.id}`.execute(db());
    const result = await verifyAuditChain(db());
    assert.equal(result.problem?.kind, 'altered');
    assert.equal(result.problem?.id, Number(target.id));

    await sql`update audit_logs set action = ${saved.action}, hash = ${saved.hash} where id = ${target.id}`.execute(
      db(),
    );
    await assertIntact();
  });

  async function copyOf(id: number) {
    return db().selectFrom('audit_logs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  }

  async function reinsert(row: Awaited<ReturnType<typeof copyOf>>) {
    await sql`insert into audit_logs (id, action, user_id, organization_id, ip_address, user_agent, details, created_at, prev_hash, hash, seal_seq)
      overriding system value values (${row.id}, ${row.action}, ${row.user_id}, ${row.organization_id}, ${row.ip_address},
      ${row.user_agent}, ${JSON.stringify(row.details)}::jsonb, ${row.created_at}, ${row.prev_hash}, ${row.hash}, ${row.seal_seq})`.execute(
      db(),
    );
  }

  test('a deleted row is reported, naming the rows on either side of the gap', async () => {
    const rows = await sealedRows();
    const [before, target, next] = [rows[19]!, rows[20]!, rows[21]!];
    const saved = await copyOf(Number(target.id));
    // created_at keeps microseconds only through a text round trip.
    const created = await sql<{
      t: string;
    }>`select created_at::text as t from audit_logs where id = ${target.id}`.execute(db());
    await sql`delete from audit_logs where id = ${target.id}`.execute(db());
    const result = await verifyAuditChain(db());
    assert.equal(result.problem?.kind, 'deleted');
    assert.equal(result.problem?.id, Number(next.id));
    assert.match(String(result.problem?.message), new RegExp(`between row id ${before.id} .* and row id ${next.id} `));

    await reinsert({ ...saved, created_at: created.rows[0]!.t as unknown as Date });
    await assertIntact();
  });

  test('rows deleted from the end of the chain are reported', async () => {
    const rows = await sealedRows();
    const last = rows.at(-1)!;
    const saved = await copyOf(Number(last.id));
    const created = await sql<{
      t: string;
    }>`select created_at::text as t from audit_logs where id = ${last.id}`.execute(db());
    await sql`delete from audit_logs where id = ${last.id}`.execute(db());
    const result = await verifyAuditChain(db());
    assert.equal(result.problem?.kind, 'deleted');
    assert.equal(result.problem?.id, null);
    assert.match(String(result.problem?.message), /end of the chain/);

    await reinsert({ ...saved, created_at: created.rows[0]!.t as unknown as Date });
    await assertIntact();
  });

  async function forgeRow(id: number, seq: number, prevHash: string) {
    const createdAt = new Date().toISOString().replace('Z', '000Z');
    const row = {
      id,
      action: 'login_success',
      user_id: 1,
      organization_id: null,
      ip_address: '198.51.100.1',
      user_agent: 'forger',
      details: {},
      created_at: createdAt,
    };
    await sql`insert into audit_logs (id, action, user_id, ip_address, user_agent, details, created_at, prev_hash, hash, seal_seq)
      overriding system value values (${id}, ${row.action}, 1, ${row.ip_address}, ${row.user_agent}, '{}'::jsonb,
      ${createdAt}, ${prevHash}, ${chainHash(row, prevHash)}, ${seq})`.execute(db());
  }

  test('a row inserted into the middle of the chain, with a valid hash and renumbering, is reported', async () => {
    const rows = await sealedRows();
    const at = 15; // the forged row takes seal 16
    const anchor = rows[at - 1]!;
    await sql`update audit_logs set seal_seq = seal_seq + 1000000 where seal_seq > ${at}`.execute(db());
    await sql`update audit_logs set seal_seq = seal_seq - 999999 where seal_seq > 1000000`.execute(db());
    const forgedId = 9_000_001;
    await forgeRow(forgedId, at + 1, String(anchor.hash));
    const result = await verifyAuditChain(db());
    assert.equal(result.problem?.kind, 'inserted');
    assert.equal(result.problem?.id, forgedId);

    await sql`delete from audit_logs where id = ${forgedId}`.execute(db());
    await sql`update audit_logs set seal_seq = seal_seq + 1000000 where seal_seq > ${at}`.execute(db());
    await sql`update audit_logs set seal_seq = seal_seq - 1000001 where seal_seq > 1000000`.execute(db());
    await assertIntact();
  });

  test('a row appended beyond the chain head is reported', async () => {
    const rows = await sealedRows();
    const last = rows.at(-1)!;
    const forgedId = 9_000_002;
    await forgeRow(forgedId, Number(last.seal_seq) + 1, String(last.hash));
    const result = await verifyAuditChain(db());
    assert.equal(result.problem?.kind, 'inserted');
    assert.equal(result.problem?.id, forgedId);

    await sql`delete from audit_logs where id = ${forgedId}`.execute(db());
    await assertIntact();
  });

  test('a backdated row slipped in unsealed is reported as inserted once sealed', async () => {
    const head = await db().selectFrom('audit_chain').selectAll().executeTakeFirstOrThrow();
    const { id } = await db()
      .insertInto('audit_logs')
      .values({ action: 'login_success', details: '{}', created_at: new Date(Date.now() - 86_400_000) })
      .returning('id')
      .executeTakeFirstOrThrow();
    assert.equal((await verifyAuditChain(db())).unsealed, 1);
    await sealAll(db());
    const result = await verifyAuditChain(db());
    assert.equal(result.problem?.kind, 'inserted');
    assert.equal(result.problem?.id, Number(id));
    assert.match(String(result.problem?.message), /after the fact/);

    await db().deleteFrom('audit_logs').where('id', '=', id).execute();
    await db()
      .updateTable('audit_chain')
      .set({ last_seq: head.last_seq, last_hash: head.last_hash })
      .where('id', '=', 1)
      .execute();
    await assertIntact();
  });

  test('a kick seals fresh rows within the kick delay, without the timer; later kicks coalesce into at most one more pass', async () => {
    const passes: number[] = [];
    let sealed = () => {};
    const sealer = new AuditSealer(db(), silentLog, {
      intervalMs: 3_600_000,
      kickDelayMs: 20,
      onSealed: (count) => {
        passes.push(count);
        sealed();
      },
    });
    await writeRows(2);
    const first = new Promise<void>((resolve) => (sealed = resolve));
    sealer.kick();
    await writeRows(3);
    sealer.kick(); // within the delay or during the first pass: coalesced
    sealer.kick();
    await first;
    await new Promise<void>((resolve) => {
      sealed = resolve;
      if (passes.reduce((a, b) => a + b, 0) === 5) resolve();
    });
    assert.equal(
      passes.reduce((a, b) => a + b, 0),
      5,
    );
    assert.ok(passes.length <= 2);
    await sealer.stop();
    sealer.kick(); // ignored once stopped
    assert.equal((await verifyAuditChain(db())).unsealed, 0);
    await assertIntact();
  });

  // Only PostgreSQL has concurrent connections; PGlite runs one statement at a time by nature.
  if (process.env.DATABASE_URL?.startsWith('postgres')) {
    test('sealing waits for nothing: with the chain head held, another sealer backs off and audit inserts go on', async () => {
      await writeRows(2);
      let elsewhere = -1;
      await db()
        .transaction()
        .execute(async (trx) => {
          await trx.selectFrom('audit_chain').select('id').where('id', '=', 1).forUpdate().execute();
          elsewhere = await sealBatch(db());
          // The request path (an audit insert in its own transaction) never touches the head.
          await recordAudit(db(), { action: 'user_updated' }, context);
        });
      assert.equal(elsewhere, 0);
      assert.equal(await sealAll(db()), 3);
      await assertIntact();
    });
  }
});
