import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { slugify } from '../domain/account-rules.ts';
import { DEFAULT_ROLE_PERMISSIONS, ROLE_NAMES, type RoleName } from '../domain/roles.ts';

export interface OrganizationSummary {
  id: number;
  uuid: string;
  name: string;
  slug: string;
}

/**
 * Inserts the organization under the first free slug derived from its name.
 * ON CONFLICT DO NOTHING keeps a collision from aborting the caller's transaction.
 */
async function insertWithFreeSlug(db: Kysely<Database>, name: string): Promise<OrganizationSummary> {
  const base = slugify(name);
  const taken = await db
    .selectFrom('organizations')
    .select('slug')
    .where((eb) => eb.or([eb('slug', '=', base), eb('slug', 'like', `${base.replace(/[\\%_]/g, '\\$&')}-%`)]))
    .execute();
  const used = new Set(taken.map((r) => r.slug));
  for (let n = 1; n < 10_000; n++) {
    const slug = n === 1 ? base : `${base}-${n}`;
    if (used.has(slug)) continue;
    const row = await db
      .insertInto('organizations')
      .values({ name, slug })
      .onConflict((oc) => oc.column('slug').doNothing())
      .returning(['id', 'uuid', 'name', 'slug'])
      .executeTakeFirst();
    if (row) return row;
  }
  throw new Error('no free organization slug');
}

/** The organization, its three default roles and the owner's admin membership. */
export async function createOrganizationWithOwner(
  db: Kysely<Database>,
  name: string,
  ownerId: number,
): Promise<OrganizationSummary & { role: RoleName }> {
  const organization = await insertWithFreeSlug(db, name);
  const roles = await db
    .insertInto('roles')
    .values(
      ROLE_NAMES.map((role) => ({
        organization_id: organization.id,
        name: role,
        permissions: JSON.stringify(DEFAULT_ROLE_PERMISSIONS[role]),
      })),
    )
    .returning(['id', 'name'])
    .execute();
  const admin = roles.find((r) => r.name === 'admin');
  if (!admin) throw new Error('admin role was not created');
  await db
    .insertInto('memberships')
    .values({ user_id: ownerId, organization_id: organization.id, role_id: admin.id })
    .execute();
  return { ...organization, role: 'admin' };
}
