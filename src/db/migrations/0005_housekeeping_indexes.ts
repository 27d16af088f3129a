import type { Kysely } from 'kysely';

/** The housekeeping pass (src/infra/housekeeping.ts) finds rows past their use by these. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('sessions_expires_at_idx').on('sessions').column('expires_at').execute();
  await db.schema.createIndex('one_time_tokens_expires_at_idx').on('one_time_tokens').column('expires_at').execute();
  await db.schema.createIndex('one_time_tokens_used_at_idx').on('one_time_tokens').column('used_at').execute();
  await db.schema.createIndex('email_outbox_sent_at_idx').on('email_outbox').column('sent_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const name of [
    'email_outbox_sent_at_idx',
    'one_time_tokens_used_at_idx',
    'one_time_tokens_expires_at_idx',
    'sessions_expires_at_idx',
  ]) {
    await db.schema.dropIndex(name).ifExists().execute();
  }
}
