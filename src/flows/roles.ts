import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { checkPermissions, checkRoleName, isRoleName, PERMISSIONS, ROLE_NAME_PATTERN } from '../domain/roles.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { lockAndAuthorize, type OrganizationAccess, requireHoldsAll, rolePermissions } from './org-access.ts';

/** A role as the roles API shows it. */
export interface RoleView {
  name: string;
  permissions: string[];
  built_in: boolean;
}

/** An organization keeps at most this many custom roles. */
const MAX_CUSTOM_ROLES = 100;

/** The permission that manages roles; `members:read` lists them. */
const MANAGE_ROLES = 'members:manage';

interface RoleRow {
  id: number;
  name: string;
  permissions: string[];
  built_in: boolean;
}

/** What a custom role may hold: the built-in permissions, then those the host application declared. */
function assignablePermissions(services: Services): string[] {
  return [...PERMISSIONS, ...services.hostPermissions];
}

function roleView(row: RoleRow, hostPermissions: readonly string[]): RoleView {
  return { name: row.name, permissions: rolePermissions(row, hostPermissions), built_in: row.built_in };
}

function invalid(errors: FieldError[]): AppError {
  return new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
}

function roleQuery(db: Kysely<Database>, organizationId: number) {
  return db
    .selectFrom('roles')
    .select(['id', 'name', 'permissions', 'built_in'])
    .where('organization_id', '=', organizationId);
}

/** The organization's role of that name (built-in or custom); NOT_FOUND otherwise. */
async function findRole(db: Kysely<Database>, organizationId: number, name: string): Promise<RoleRow> {
  const row =
    isRoleName(name) || ROLE_NAME_PATTERN.test(name)
      ? await roleQuery(db, organizationId).where('name', '=', name).executeTakeFirst()
      : undefined;
  if (!row) throw new AppError('NOT_FOUND', { detail: 'Role not found' });
  return row;
}

/** A custom role, for a change: NOT_FOUND when there is none, ROLE_BUILT_IN for `admin`, `user`, `viewer`. */
async function findCustomRole(db: Kysely<Database>, organizationId: number, name: string): Promise<RoleRow> {
  const row = await findRole(db, organizationId, name);
  if (row.built_in) {
    throw new AppError('ROLE_BUILT_IN', {
      detail: `The built-in ${row.name} role can be neither changed nor deleted`,
    });
  }
  return row;
}

/** `GET /organizations/{uuid}/roles`: the built-in roles (admin, user, viewer), then the custom ones, oldest first. */
export async function listRoles(services: Services, access: OrganizationAccess): Promise<RoleView[]> {
  const rows = await roleQuery(services.db, access.organizationId).orderBy('built_in', 'desc').orderBy('id').execute();
  return rows.map((row) => roleView(row, services.hostPermissions));
}

/**
 * `POST /organizations/{uuid}/roles {name, permissions}`: a custom role.
 * The name must be free (ROLE_EXISTS for the built-in names and the
 * organization's custom roles); every permission must be known and held by
 * the caller.
 */
export async function createRole(
  services: Services,
  access: OrganizationAccess,
  input: { name?: unknown; permissions?: unknown },
  context: RequestContext,
): Promise<RoleView> {
  const errors: FieldError[] = [];
  const name = checkRoleName(input.name);
  if (!name.ok) errors.push(name.error);
  const permissions = checkPermissions(input.permissions, assignablePermissions(services));
  if (!permissions.ok) errors.push(permissions.error);
  if (!name.ok || !permissions.ok) throw invalid(errors);
  if (isRoleName(name.value)) {
    throw new AppError('ROLE_EXISTS', { detail: `${name.value} is a built-in role; choose another name` });
  }
  return services.db.transaction().execute(async (trx) => {
    const actor = await lockAndAuthorize(trx, access, MANAGE_ROLES, services.hostPermissions);
    requireHoldsAll(actor, permissions.value, 'the new role');
    const existing = await roleQuery(trx, access.organizationId).where('built_in', '=', false).execute();
    if (existing.some((row) => row.name === name.value)) {
      throw new AppError('ROLE_EXISTS', { detail: `This organization already has a role named ${name.value}` });
    }
    if (existing.length >= MAX_CUSTOM_ROLES) {
      throw new AppError('CONFLICT', {
        detail: `An organization has at most ${MAX_CUSTOM_ROLES} custom roles; delete one first`,
      });
    }
    const row = await trx
      .insertInto('roles')
      .values({
        organization_id: access.organizationId,
        name: name.value,
        permissions: JSON.stringify(permissions.value),
        built_in: false,
      })
      .returning(['id', 'name', 'permissions', 'built_in'])
      .executeTakeFirstOrThrow();
    await recordAudit(
      trx,
      {
        action: 'role_created',
        userId: access.userId,
        organizationId: access.organizationId,
        details: { role: row.name, permissions: permissions.value },
      },
      context,
    );
    return roleView(row, services.hostPermissions);
  });
}

/**
 * `PATCH /organizations/{uuid}/roles/{name} {permissions}`: replaces a custom
 * role's permissions; its members hold the new ones from their next request.
 * Only `permissions` may be sent (a role is not renamed).
 */
export async function updateRole(
  services: Services,
  access: OrganizationAccess,
  roleName: string,
  input: Record<string, unknown>,
  context: RequestContext,
): Promise<RoleView> {
  return services.db.transaction().execute(async (trx) => {
    const actor = await lockAndAuthorize(trx, access, MANAGE_ROLES, services.hostPermissions);
    // The role first: an unknown one is 404 and a built-in one 403 whatever the body says.
    const role = await findCustomRole(trx, access.organizationId, roleName);
    const errors: FieldError[] = Object.keys(input)
      .filter((field) => field !== 'permissions')
      .map((field) => ({
        field,
        message:
          field === 'name'
            ? 'A role cannot be renamed; create one with the new name'
            : 'Only permissions can be changed',
        code: 'not_allowed',
      }));
    const permissions = checkPermissions(input.permissions, assignablePermissions(services));
    if (!permissions.ok) errors.push(permissions.error);
    if (errors.length > 0 || !permissions.ok) throw invalid(errors);
    // Both what the role had and what it gets: no one widens, or narrows, a role beyond their own.
    requireHoldsAll(actor, [...role.permissions, ...permissions.value], 'this change');
    const row = await trx
      .updateTable('roles')
      .set({ permissions: JSON.stringify(permissions.value), updated_at: services.clock.now() })
      .where('id', '=', role.id)
      .returning(['id', 'name', 'permissions', 'built_in'])
      .executeTakeFirstOrThrow();
    await recordAudit(
      trx,
      {
        action: 'role_updated',
        userId: access.userId,
        organizationId: access.organizationId,
        details: { role: role.name, from: role.permissions, to: permissions.value },
      },
      context,
    );
    return roleView(row, services.hostPermissions);
  });
}

/**
 * `DELETE /organizations/{uuid}/roles/{name}`: a custom role that no member
 * and no pending invitation holds (ROLE_IN_USE otherwise). Invitations no
 * longer pending keep their rows, without a role.
 */
export async function deleteRole(
  services: Services,
  access: OrganizationAccess,
  roleName: string,
  context: RequestContext,
): Promise<void> {
  await services.db.transaction().execute(async (trx) => {
    const actor = await lockAndAuthorize(trx, access, MANAGE_ROLES, services.hostPermissions);
    const role = await findCustomRole(trx, access.organizationId, roleName);
    requireHoldsAll(actor, role.permissions, 'this role');
    const now = services.clock.now();
    const usage = await trx
      .selectNoFrom((eb) => [
        eb
          .selectFrom('memberships')
          .select((m) => m.fn.countAll<number>().as('n'))
          .where('role_id', '=', role.id)
          .as('members'),
        eb
          .selectFrom('invitations')
          .select((i) => i.fn.countAll<number>().as('n'))
          .where('role_id', '=', role.id)
          .where('accepted_at', 'is', null)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', now)
          .as('invitations'),
      ])
      .executeTakeFirstOrThrow();
    const members = Number(usage.members ?? 0);
    const invitations = Number(usage.invitations ?? 0);
    if (members > 0 || invitations > 0) {
      throw new AppError('ROLE_IN_USE', {
        detail: `The ${role.name} role is held by ${members} member(s) and ${invitations} pending invitation(s); give them another role first`,
        extensions: { members, pending_invitations: invitations },
      });
    }
    await trx.deleteFrom('roles').where('id', '=', role.id).execute();
    await recordAudit(
      trx,
      {
        action: 'role_deleted',
        userId: access.userId,
        organizationId: access.organizationId,
        details: { role: role.name, permissions: role.permissions },
      },
      context,
    );
  });
}
