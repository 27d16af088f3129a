import { type Kysely, sql } from 'kysely';

/** The host's own table; it points at Gatehouse's organizations and users but lives in the host's migrations. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('scan_requests')
    .ifNotExists()
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('uuid', 'uuid', (c) => c.notNull().unique().defaultTo(sql`gen_random_uuid()`))
    .addColumn('organization_id', 'bigint', (c) => c.notNull().references('organizations.id').onDelete('cascade'))
    .addColumn('requested_by', 'bigint', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('protocol_filter', 'text')
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('queued'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('scan_requests_organization_idx')
    .ifNotExists()
    .on('scan_requests')
    .columns(['organization_id', 'id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('scan_requests').ifExists().execute();
}
