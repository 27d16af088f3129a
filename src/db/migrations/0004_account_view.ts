import { type Kysely, sql } from 'kysely';

/**
 * GET /api/v1/me reads the user and their organizations with roles in one
 * statement. Planning the three-way join cost more than running it; PL/pgSQL
 * caches the plan of its statements per connection, so the hot read pays for
 * planning once.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create or replace function gatehouse_user_organizations(p_user_id bigint) returns jsonb
    language plpgsql stable as $$
    begin
      return (
        select coalesce(
          jsonb_agg(
            jsonb_build_object('uuid', o.uuid, 'name', o.name, 'slug', o.slug, 'role', r.name)
            order by o.name, o.id
          ),
          '[]'::jsonb
        )
        from memberships m
        join organizations o on o.id = m.organization_id
        join roles r on r.id = m.role_id
        where m.user_id = p_user_id
      );
    end $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists gatehouse_user_organizations(bigint)`.execute(db);
}
