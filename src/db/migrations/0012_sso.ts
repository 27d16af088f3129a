import { type Kysely, sql } from 'kysely';

/**
 * Sign-in with other identity providers.
 * - `user_identities`: a provider's account of a person, by `(provider,
 *   subject)`, never by e-mail alone; the address it asserted, and whether verified.
 * - `sso_states`: one row per sign-in sent to a provider: `state` (SHA-256),
 *   the browser binding (SHA-256 of the httpOnly cookie's value), the nonce,
 *   the PKCE verifier, where to go after, and the account being linked
 *   (linking from the account page); single use, ten minutes.
 * - `users.has_password`: false for an account made by a provider's sign-in
 *   until its owner sets a password (reset): it is not a way in.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('user_identities')
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('uuid', 'uuid', (c) => c.notNull().unique().defaultTo(sql`gen_random_uuid()`))
    .addColumn('user_id', 'bigint', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('email', 'text')
    .addColumn('email_verified', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', 'timestamptz')
    .addUniqueConstraint('user_identities_provider_subject_key', ['provider', 'subject'])
    .execute();
  await db.schema.createIndex('user_identities_user_idx').on('user_identities').column('user_id').execute();

  await db.schema
    .createTable('sso_states')
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('state_hash', 'text', (c) => c.notNull().unique())
    .addColumn('binding_hash', 'text', (c) => c.notNull())
    .addColumn('nonce', 'text', (c) => c.notNull())
    .addColumn('code_verifier', 'text', (c) => c.notNull())
    .addColumn('redirect_to', 'text')
    .addColumn('link_user_id', 'bigint', (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('sso_states_expires_at_idx').on('sso_states').column('expires_at').execute();

  await db.schema
    .alterTable('users')
    .addColumn('has_password', 'boolean', (c) => c.notNull().defaultTo(true))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('has_password').execute();
  await db.schema.dropTable('sso_states').ifExists().execute();
  await db.schema.dropTable('user_identities').ifExists().execute();
}
