import { type Kysely, sql } from 'kysely';

/**
 * The audit hash chain follows sealing order (`seal_seq`), not id order: a
 * transaction that commits after a later id has been sealed simply joins the
 * chain further on. `audit_chain` is the single head row every sealer locks.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('audit_logs').addColumn('seal_seq', 'bigint').execute();
  await db.schema.createIndex('audit_logs_seal_seq_key').on('audit_logs').column('seal_seq').unique().execute();
  await db.schema
    .createIndex('audit_logs_unsealed_idx')
    .on('audit_logs')
    .column('id')
    .where(sql.ref('seal_seq'), 'is', null)
    .execute();
  await db.schema
    .createTable('audit_chain')
    .addColumn('id', 'smallint', (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn('last_seq', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('last_hash', 'text', (c) => c.notNull())
    .addColumn('sealed_at', 'timestamptz')
    .execute();
  await sql`insert into audit_chain (id, last_seq, last_hash) values (1, 0, ${'0'.repeat(64)})`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('audit_chain').ifExists().execute();
  await db.schema.dropIndex('audit_logs_unsealed_idx').ifExists().execute();
  await db.schema.dropIndex('audit_logs_seal_seq_key').ifExists().execute();
  await db.schema.alterTable('audit_logs').dropColumn('seal_seq').execute();
}
