import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { checkOrganizationName, checkStorable, slugify } from '../domain/account-rules.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { DEFAULT_PAGE_SIZE, decodeCursor, type Page, pageOf } from '../domain/paging.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { DEFAULT_ROLE_PERMISSIONS, ROLE_NAMES } from '../domain/roles.ts';
import { type AuditLogView, recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { hasTotp } from '../infra/mfa.ts';
import { lockAndAuthorize, type OrganizationAccess } from './org-access.ts';

export interface OrganizationSummary {
  id: number;
  uuid: string;
  name: string;
  slug: string;
}

/** An organization as one of its members sees it, with the member's role. */
export interface OrganizationView {
  uuid: string;
  name: string;
  slug: string;
  role: string;
  /** Members without a second factor are refused by the organization's routes (403 MFA_REQUIRED_BY_ORGANIZATION). */
  require_mfa: boolean;
  created_at: string;
  updated_at: string;
}

const invalid = (errors: FieldError[]) =>
  new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });

async function takenSlugs(db: Kysely<Database>, base: string): Promise<Set<string>> {
  const rows = await db
    .selectFrom('organizations')
    .select('slug')
    .where((eb) => eb.or([eb('slug', '=', base), eb('slug', 'like', `${base.replace(/[\\%_]/g, '\\$&')}-%`)]))
    .execute();
  return new Set(rows.map((r) => r.slug));
}

/** `base`, then `base-2`, `base-3`, … skipping the slugs already taken. */
function* freeSlugs(base: string, taken: Set<string>): Generator<string> {
  for (let n = 1; n < 10_000; n++) {
    const slug = n === 1 ? base : `${base}-${n}`;
    if (!taken.has(slug)) yield slug;
  }
}

/**
 * Inserts the organization under the first free slug derived from its name.
 * ON CONFLICT DO NOTHING keeps a collision from aborting the caller's transaction.
 */
async function insertWithFreeSlug(db: Kysely<Database>, name: string): Promise<OrganizationSummary> {
  const base = slugify(name);
  for (const slug of freeSlugs(base, await takenSlugs(db, base))) {
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
): Promise<OrganizationSummary & { role: string }> {
  const organization = await insertWithFreeSlug(db, name);
  const roles = await db
    .insertInto('roles')
    .values(
      ROLE_NAMES.map((role) => ({
        organization_id: organization.id,
        name: role,
        permissions: JSON.stringify(DEFAULT_ROLE_PERMISSIONS[role]),
        built_in: true,
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

function validName(raw: unknown): string {
  if (typeof raw !== 'string') throw invalid([{ field: 'name', message: 'Field is required', code: 'required' }]);
  const unstorable = checkStorable(raw, 'name');
  if (unstorable) throw invalid([unstorable]);
  const check = checkOrganizationName(raw, 'name');
  if (!check.ok) throw invalid([check.error]);
  return check.value;
}

function organizationView(
  row: { uuid: string; name: string; slug: string; require_mfa: boolean; created_at: Date; updated_at: Date },
  role: string,
): OrganizationView {
  return {
    uuid: row.uuid,
    name: row.name,
    slug: row.slug,
    role,
    require_mfa: row.require_mfa,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

/** `GET /organizations`: the caller's organizations with the caller's role in each. */
export async function listOrganizations(services: Services, userId: number): Promise<OrganizationView[]> {
  const rows = await services.db
    .selectFrom('memberships')
    .innerJoin('organizations', 'organizations.id', 'memberships.organization_id')
    .innerJoin('roles', 'roles.id', 'memberships.role_id')
    .select([
      'organizations.uuid',
      'organizations.name',
      'organizations.slug',
      'organizations.require_mfa',
      'organizations.created_at',
      'organizations.updated_at',
      'roles.name as role',
    ])
    .where('memberships.user_id', '=', userId)
    .orderBy('organizations.name')
    .orderBy('organizations.id')
    .execute();
  return rows.map((r) => organizationView(r, r.role));
}

/** `POST /organizations`: a new organization with default roles; the caller is its admin. */
export async function createOrganization(
  services: Services,
  userId: number,
  input: { name?: unknown },
  context: RequestContext,
): Promise<OrganizationView> {
  const name = validName(input.name);
  return services.db.transaction().execute(async (trx) => {
    const created = await createOrganizationWithOwner(trx, name, userId);
    await recordAudit(
      trx,
      {
        action: 'organization_created',
        userId,
        organizationId: created.id,
        details: { uuid: created.uuid, name: created.name, slug: created.slug },
      },
      context,
    );
    const row = await trx
      .selectFrom('organizations')
      .selectAll()
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    return organizationView(row, created.role);
  });
}

export async function getOrganization(services: Services, access: OrganizationAccess): Promise<OrganizationView> {
  const row = await services.db
    .selectFrom('organizations')
    .selectAll()
    .where('id', '=', access.organizationId)
    .executeTakeFirst();
  if (!row) throw new AppError('NOT_FOUND', { detail: 'Organization not found' });
  return organizationView(row, access.role);
}

const EDITABLE = new Set(['name', 'require_mfa']);

function validRequireMfa(value: unknown): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'boolean') return value;
  throw invalid([{ field: 'require_mfa', message: 'Must be true or false', code: 'type' }]);
}

/**
 * `PATCH /organizations/{uuid}`: renames, and sets `require_mfa`. The slug
 * follows the name (first free one), except that a name whose slug is the
 * current one's stem keeps the current slug, so that "Acme" → "ACME" does not
 * move `acme-2`. An admin turns `require_mfa` on only with a second factor of
 * their own: otherwise the change would shut them out at once.
 */
export async function updateOrganization(
  services: Services,
  access: OrganizationAccess,
  input: Record<string, unknown>,
  context: RequestContext,
): Promise<OrganizationView> {
  const refused = Object.keys(input)
    .filter((field) => !EDITABLE.has(field))
    .map((field) => ({ field, message: 'Field cannot be changed here', code: 'not_allowed' }));
  if (refused.length > 0) throw invalid(refused);
  const name = input.name === undefined ? undefined : validName(input.name);
  const requireMfa = validRequireMfa(input.require_mfa);
  if (requireMfa === true && !(await hasTotp(services.db, access.userId))) {
    throw new AppError('CONFLICT', {
      detail: 'Turn on a second factor for your own account before requiring one of every member',
    });
  }

  // A concurrent rename can take the chosen slug between the check and the update: try again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await services.db.transaction().execute(async (trx) => {
        await lockAndAuthorize(trx, access, 'organization:update');
        const before = await trx
          .selectFrom('organizations')
          .selectAll()
          .where('id', '=', access.organizationId)
          .executeTakeFirstOrThrow();
        const renamed = name !== undefined && name !== before.name;
        const policyChanged = requireMfa !== undefined && requireMfa !== before.require_mfa;
        if (!renamed && !policyChanged) return organizationView(before, access.role);
        let slug = before.slug;
        if (renamed) {
          const base = slugify(name);
          const keepsSlug = before.slug === base || new RegExp(`^${base}-\\d+$`).test(before.slug);
          const free = keepsSlug ? before.slug : freeSlugs(base, await takenSlugs(trx, base)).next().value;
          if (!free) throw new Error('no free organization slug');
          slug = free;
        }
        const after = await trx
          .updateTable('organizations')
          .set({
            name: renamed ? name : before.name,
            slug,
            require_mfa: requireMfa ?? before.require_mfa,
            updated_at: services.clock.now(),
          })
          .where('id', '=', access.organizationId)
          .returningAll()
          .executeTakeFirstOrThrow();
        await recordAudit(
          trx,
          {
            action: 'organization_updated',
            userId: access.userId,
            organizationId: access.organizationId,
            details: {
              uuid: after.uuid,
              from: { name: before.name, slug: before.slug, ...(policyChanged && { require_mfa: before.require_mfa }) },
              to: { name: after.name, slug: after.slug, ...(policyChanged && { require_mfa: after.require_mfa }) },
            },
          },
          context,
        );
        return organizationView(after, access.role);
      });
    } catch (error) {
      if (attempt >= 5 || !isSlugCollision(error)) throw error;
    }
  }
}

function isSlugCollision(error: unknown): boolean {
  const { code, constraint } = (error ?? {}) as { code?: unknown; constraint?: unknown };
  return code === '23505' && constraint === 'organizations_slug_key';
}

/** `DELETE /organizations/{uuid}`: roles, memberships and invitations go with it. */
export async function deleteOrganization(
  services: Services,
  access: OrganizationAccess,
  context: RequestContext,
): Promise<void> {
  await services.db.transaction().execute(async (trx) => {
    const deleted = await trx
      .deleteFrom('organizations')
      .where('id', '=', access.organizationId)
      .returning(['uuid', 'name', 'slug'])
      .executeTakeFirst();
    if (!deleted) throw new AppError('NOT_FOUND', { detail: 'Organization not found' });
    await recordAudit(
      trx,
      {
        action: 'organization_deleted',
        userId: access.userId,
        organizationId: access.organizationId,
        details: { uuid: deleted.uuid, name: deleted.name, slug: deleted.slug },
      },
      context,
    );
  });
}

export interface OrganizationAuditQuery {
  action?: string | undefined;
  since?: string | undefined;
  cursor?: string | undefined;
  limit?: number | undefined;
}

/** `GET /organizations/{uuid}/audit-logs`: the organization's trail, newest first, one keyset page. */
export async function listOrganizationAuditLogs(
  services: Services,
  access: OrganizationAccess,
  query: OrganizationAuditQuery,
): Promise<Page<AuditLogView>> {
  const before = decodeCursor(query.cursor);
  let q = services.db
    .selectFrom('audit_logs as a')
    .leftJoin('users as u', 'u.id', 'a.user_id')
    .select(['a.id', 'a.action', 'u.uuid as user_uuid', 'a.ip_address', 'a.user_agent', 'a.details', 'a.created_at'])
    .where('a.organization_id', '=', access.organizationId);
  if (query.action) q = q.where('a.action', '=', query.action);
  if (query.since) q = q.where('a.created_at', '>=', new Date(query.since));
  if (before !== undefined) q = q.where('a.id', '<', before);
  const limit = query.limit ?? DEFAULT_PAGE_SIZE;
  const rows = await q
    .orderBy('a.id', 'desc')
    .limit(limit + 1)
    .execute();
  return pageOf(rows, limit, (r) => ({
    ...r,
    organization_uuid: access.organizationUuid,
    created_at: r.created_at.toISOString(),
  }));
}
