import { type Kysely, sql } from 'kysely';

/**
 * E-mail sign-in. `email_sign_ins`: one row per mailed sign-in, bound to the
 * address it was sent to; the link's token as SHA-256, the 6-digit code as a
 * keyed hash, `attempts` the wrong codes tried (the code dies at the limit),
 * single use (`used_at`). `mfa_challenges.first_factor`: what the first step
 * of a login waiting for its second factor proved (`pwd`, `email`), so that
 * the finished session's `amr` names both.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('email_sign_ins')
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('user_id', 'bigint', (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('token_hash', 'text', (c) => c.unique())
    .addColumn('code_hash', 'text')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('email_sign_ins_email_idx').on('email_sign_ins').column('email').execute();
  await db.schema.createIndex('email_sign_ins_expires_at_idx').on('email_sign_ins').column('expires_at').execute();
  await db.schema
    .alterTable('mfa_challenges')
    .addColumn('first_factor', 'text', (c) => c.notNull().defaultTo('pwd'))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('mfa_challenges').dropColumn('first_factor').execute();
  await db.schema.dropTable('email_sign_ins').ifExists().execute();
}
