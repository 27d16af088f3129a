import { type Kysely, sql } from 'kysely';

/**
 * `users.name`: an optional full name given at registration, beside
 * first_name/last_name. `registration_attempts`: one row per refused
 * registration (never its password), kept LOGIN_ATTEMPTS_RETENTION_DAYS.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('name', 'text').execute();
  await db.schema
    .createTable('registration_attempts')
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('attempted_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('email', 'text')
    .addColumn('username', 'text')
    .addColumn('ip_address', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('reason', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('registration_attempts_attempted_at_idx')
    .on('registration_attempts')
    .column('attempted_at')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('registration_attempts').ifExists().execute();
  await db.schema.alterTable('users').dropColumn('name').execute();
}
