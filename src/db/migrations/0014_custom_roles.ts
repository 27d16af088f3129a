import { type Kysely, sql } from 'kysely';

/**
 * Custom roles per organization. They are rows of `roles` beside the three
 * built-in ones: `built_in` tells them apart (the built-in rows cannot be
 * changed or deleted), `updated_at` records the last change of the
 * permissions. An invitation whose custom role is deleted keeps its row
 * (the per-organization invitation cap counts it) with `role_id` null; only
 * invitations that are no longer pending can lose their role, because a role
 * that a pending invitation or a member holds cannot be deleted. The indexes
 * keep the foreign-key checks of a role deletion off a sequential scan.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('roles')
    .addColumn('built_in', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  await db.schema
    .alterTable('roles')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`update roles set built_in = true where name in ('admin', 'user', 'viewer')`.execute(db);
  await sql`alter table invitations alter column role_id drop not null`.execute(db);
  await sql`alter table invitations drop constraint if exists invitations_role_id_fkey`.execute(db);
  await sql`alter table invitations add constraint invitations_role_id_fkey foreign key (role_id) references roles (id) on delete set null`.execute(
    db,
  );
  await db.schema.createIndex('memberships_role_idx').on('memberships').column('role_id').execute();
  await db.schema.createIndex('invitations_role_idx').on('invitations').column('role_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('invitations_role_idx').ifExists().execute();
  await db.schema.dropIndex('memberships_role_idx').ifExists().execute();
  await sql`delete from invitations where role_id is null`.execute(db);
  await sql`alter table invitations drop constraint if exists invitations_role_id_fkey`.execute(db);
  await sql`alter table invitations add constraint invitations_role_id_fkey foreign key (role_id) references roles (id) on delete cascade`.execute(
    db,
  );
  await sql`alter table invitations alter column role_id set not null`.execute(db);
  await db.schema.alterTable('roles').dropColumn('updated_at').execute();
  await db.schema.alterTable('roles').dropColumn('built_in').execute();
}
