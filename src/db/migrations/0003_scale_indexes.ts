import { type Kysely, sql } from 'kysely';

/**
 * Statements that otherwise scan whole tables as they grow (found by the
 * EXPLAIN in bench/scenarios/scale.ts at a million users).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // Every instance copies recent revocations into Redis every few seconds: `revoked_at > $1`.
  await db.schema
    .createIndex('sessions_revoked_at_idx')
    .on('sessions')
    .column('revoked_at')
    .where(sql.ref('revoked_at'), 'is not', null)
    .execute();
  // Slug allocation asks `slug = $1 or slug like 'base-%'`; a prefix match needs pattern ops outside the C collation.
  await sql`create index organizations_slug_pattern_idx on organizations (slug text_pattern_ops)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('organizations_slug_pattern_idx').ifExists().execute();
  await db.schema.dropIndex('sessions_revoked_at_idx').ifExists().execute();
}
