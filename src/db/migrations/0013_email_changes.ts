import { type Kysely, sql } from 'kysely';

/**
 * Change of e-mail address. `email_changes`: one row per change asked for by
 * a signed-in user: the address it leaves and the one it goes to; the
 * confirmation link's token (mailed to the new address) and, once confirmed,
 * the revert link's token (mailed to the old one), each as SHA-256 with its
 * expiry; `confirmed_at`, `reverted_at` spend them; `cancelled_at` voids a
 * row (a newer request, or a revert of the account).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('email_changes')
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('user_id', 'bigint', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('old_email', 'text', (c) => c.notNull())
    .addColumn('new_email', 'text', (c) => c.notNull())
    .addColumn('confirm_token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('confirm_expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('confirmed_at', 'timestamptz')
    .addColumn('revert_token_hash', 'text', (c) => c.unique())
    .addColumn('revert_expires_at', 'timestamptz')
    .addColumn('reverted_at', 'timestamptz')
    .addColumn('cancelled_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('email_changes_user_idx').on('email_changes').column('user_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('email_changes').ifExists().execute();
}
