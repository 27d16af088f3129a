import { type Kysely, sql } from 'kysely';

/**
 * Claims for the product and per-user metadata.
 * - `users.user_metadata`: what the user keeps about themselves (PATCH /me);
 *   `users.app_metadata`: what administrators and the host application keep
 *   about the user, read-only to the user. Both JSON objects, `{}` by default.
 * - `gatehouse_org_claims(user_id)`: the access token's `orgs` claim, the
 *   role name per organization uuid, computed inside the statement that
 *   issues the tokens (login, refresh). NULL when the user has more than 50
 *   organizations or the object is longer than 4096 bytes: the token then
 *   says `orgs_truncated: true` and the product reads GET /organizations.
 *   PL/pgSQL caches the plan, as gatehouse_user_organizations does.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('users')
    .addColumn('user_metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  await db.schema
    .alterTable('users')
    .addColumn('app_metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  await sql`create or replace function gatehouse_org_claims(p_user_id bigint) returns jsonb
    language plpgsql stable as $$
    declare
      claims jsonb;
      members int;
    begin
      select count(*), coalesce(jsonb_object_agg(o.uuid::text, r.name), '{}'::jsonb)
        into members, claims
        from memberships m
        join organizations o on o.id = m.organization_id
        join roles r on r.id = m.role_id
        where m.user_id = p_user_id;
      if members > 50 or octet_length(claims::text) > 4096 then
        return null;
      end if;
      return claims;
    end $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists gatehouse_org_claims(bigint)`.execute(db);
  await db.schema.alterTable('users').dropColumn('app_metadata').execute();
  await db.schema.alterTable('users').dropColumn('user_metadata').execute();
}
