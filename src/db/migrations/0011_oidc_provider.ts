import { type Kysely, sql } from 'kysely';

/**
 * The OpenID Connect provider.
 * - `oauth_clients`: registered relying parties; a confidential client's
 *   secret is stored as SHA-256 (it is 256 random bits), shown once.
 * - `oidc_payloads`: what `oidc-provider` keeps between requests (interactions,
 *   its browser sessions, grants, authorization codes, access and refresh
 *   tokens), by model and id; the columns beside `payload` are the lookups it makes;
 *   `page_session_uuid`: the Gatehouse page session a provider session follows.
 * - `oidc_keys`: the RS256 key that signs ID tokens when ALGORITHM=HS256
 *   (its private JWK encrypted with a key derived from SECRET_KEY), shared by every instance.
 * - `sessions.oauth_grant_id` / `oauth_client_id`: the Gatehouse session of
 *   a grant's tokens, so they are listed, revoked and audited like any other.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('oauth_clients')
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('client_id', 'text', (c) => c.notNull().unique())
    .addColumn('client_secret_hash', 'text')
    .addColumn('client_name', 'text', (c) => c.notNull())
    .addColumn('redirect_uris', 'jsonb', (c) => c.notNull())
    .addColumn('post_logout_redirect_uris', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('token_endpoint_auth_method', 'text', (c) => c.notNull())
    .addColumn('grant_types', 'jsonb', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('first_party', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      'oauth_clients_auth_method_check',
      sql`token_endpoint_auth_method in ('none', 'client_secret_basic', 'client_secret_post')`,
    )
    .execute();

  await db.schema
    .createTable('oidc_payloads')
    .addColumn('model', 'text', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('payload', 'jsonb', (c) => c.notNull())
    .addColumn('grant_id', 'text')
    .addColumn('uid', 'text')
    .addColumn('user_code', 'text')
    .addColumn('account_id', 'text')
    .addColumn('client_id', 'text')
    .addColumn('page_session_uuid', 'uuid')
    .addColumn('expires_at', 'timestamptz')
    .addColumn('consumed_at', 'timestamptz')
    .addPrimaryKeyConstraint('oidc_payloads_pkey', ['model', 'id'])
    .execute();
  await db.schema.createIndex('oidc_payloads_grant_idx').on('oidc_payloads').column('grant_id').execute();
  await db.schema.createIndex('oidc_payloads_uid_idx').on('oidc_payloads').column('uid').execute();
  await db.schema
    .createIndex('oidc_payloads_account_idx')
    .on('oidc_payloads')
    .columns(['account_id', 'model'])
    .execute();
  await db.schema.createIndex('oidc_payloads_expires_at_idx').on('oidc_payloads').column('expires_at').execute();

  await db.schema
    .createTable('oidc_keys')
    .addColumn('kid', 'text', (c) => c.primaryKey())
    .addColumn('alg', 'text', (c) => c.notNull())
    .addColumn('private_jwk', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .alterTable('sessions')
    .addColumn('oauth_grant_id', 'text', (c) => c.unique())
    .addColumn('oauth_client_id', 'text')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('oauth_client_id').dropColumn('oauth_grant_id').execute();
  await db.schema.dropTable('oidc_keys').ifExists().execute();
  await db.schema.dropTable('oidc_payloads').ifExists().execute();
  await db.schema.dropTable('oauth_clients').ifExists().execute();
}
