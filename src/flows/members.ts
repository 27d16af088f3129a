import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { isUuid } from '../domain/identifiers.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { checkRole } from '../domain/roles.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import {
  countAdmins,
  lockAndAuthorize,
  type OrganizationAccess,
  organizationRole,
  organizationRoleNames,
  requireHoldsAll,
  requirePermission,
  rolePermissions,
} from './org-access.ts';

export interface MemberView {
  user_uuid: string;
  username: string;
  email: string;
  first_name: string | null;
  last_name: string | null;
  role: string;
  joined_at: string;
}

/** A role of the organization (built-in or custom) from a request body, or 422 naming the field. */
function validRole(raw: unknown, available: readonly string[]): string {
  const check = checkRole(raw, 'role', available);
  if (!check.ok) {
    throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors: [check.error] });
  }
  return check.value;
}

function memberQuery(db: Kysely<Database>, organizationId: number) {
  return db
    .selectFrom('memberships')
    .innerJoin('users', 'users.id', 'memberships.user_id')
    .innerJoin('roles', 'roles.id', 'memberships.role_id')
    .select([
      'memberships.id',
      'users.id as user_id',
      'users.uuid',
      'users.username',
      'users.email',
      'users.first_name',
      'users.last_name',
      'roles.name as role',
      'roles.permissions as role_permissions',
      'roles.built_in as role_built_in',
      'memberships.created_at',
    ])
    .where('memberships.organization_id', '=', organizationId);
}

type MemberRow = Awaited<ReturnType<ReturnType<typeof memberQuery>['executeTakeFirstOrThrow']>>;

/** What the member's role grants. */
function heldBy(member: MemberRow, hostPermissions: readonly string[]): string[] {
  return rolePermissions(
    { name: member.role, built_in: member.role_built_in, permissions: member.role_permissions },
    hostPermissions,
  );
}

function memberView(row: MemberRow, role = row.role): MemberView {
  return {
    user_uuid: row.uuid,
    username: row.username,
    email: row.email,
    first_name: row.first_name,
    last_name: row.last_name,
    role,
    joined_at: row.created_at.toISOString(),
  };
}

export async function listMembers(services: Services, access: OrganizationAccess): Promise<MemberView[]> {
  const rows = await memberQuery(services.db, access.organizationId)
    .orderBy('memberships.created_at')
    .orderBy('memberships.id')
    .execute();
  return rows.map((row) => memberView(row));
}

async function findMember(trx: Kysely<Database>, organizationId: number, userUuid: string): Promise<MemberRow> {
  const member = isUuid(userUuid)
    ? await memberQuery(trx, organizationId).where('users.uuid', '=', userUuid.toLowerCase()).executeTakeFirst()
    : undefined;
  if (!member) throw new AppError('NOT_FOUND', { detail: 'Member not found' });
  return member;
}

/** `PATCH /organizations/{uuid}/members/{user_uuid}`: the last admin cannot be demoted. */
export async function changeMemberRole(
  services: Services,
  access: OrganizationAccess,
  userUuid: string,
  input: { role?: unknown },
  context: RequestContext,
): Promise<MemberView> {
  const role = validRole(input.role, await organizationRoleNames(services.db, access.organizationId));
  return services.db.transaction().execute(async (trx) => {
    const actor = await lockAndAuthorize(trx, access, 'members:manage', services.hostPermissions);
    const member = await findMember(trx, access.organizationId, userUuid);
    if (member.role === role) return memberView(member);
    const target = await organizationRole(trx, access.organizationId, role);
    // A custom role that manages members hands out, and takes away, no more than it holds.
    requireHoldsAll(actor, heldBy(member, services.hostPermissions), `${member.username}'s current role`);
    requireHoldsAll(actor, rolePermissions(target, services.hostPermissions), `the ${role} role`);
    if (member.role === 'admin' && (await countAdmins(trx, access.organizationId, member.user_id)) === 0) {
      throw new AppError('CONFLICT', {
        detail: 'The last admin of an organization cannot be demoted; make another member an admin first',
      });
    }
    await trx
      .updateTable('memberships')
      .set({ role_id: target.id, updated_at: services.clock.now() })
      .where('id', '=', member.id)
      .execute();
    await recordAudit(
      trx,
      {
        action: 'member_role_changed',
        userId: access.userId,
        organizationId: access.organizationId,
        details: { member_uuid: member.uuid, from: member.role, to: role },
      },
      context,
    );
    return memberView(member, role);
  });
}

/**
 * `DELETE /organizations/{uuid}/members/{user_uuid}`: an admin removes a
 * member, or any member removes themselves (leaves). The last admin can do
 * neither to themselves; the organization is deleted instead.
 */
export async function removeMember(
  services: Services,
  access: OrganizationAccess,
  userUuid: string,
  context: RequestContext,
): Promise<void> {
  await services.db.transaction().execute(async (trx) => {
    const actor = await lockAndAuthorize(trx, access, 'organization:read', services.hostPermissions);
    const member = await findMember(trx, access.organizationId, userUuid);
    const leaving = member.user_id === actor.userId;
    if (!leaving) {
      requirePermission(actor, 'members:manage');
      requireHoldsAll(actor, heldBy(member, services.hostPermissions), `${member.username}'s role`);
    }
    if (member.role === 'admin' && (await countAdmins(trx, access.organizationId, member.user_id)) === 0) {
      throw new AppError('CONFLICT', {
        detail: leaving
          ? 'You are the last admin of this organization and cannot leave it; make another member an admin first, or delete the organization'
          : 'The last admin of an organization cannot be removed; make another member an admin first',
      });
    }
    await trx.deleteFrom('memberships').where('id', '=', member.id).execute();
    await recordAudit(
      trx,
      {
        action: 'member_removed',
        userId: access.userId,
        organizationId: access.organizationId,
        details: { member_uuid: member.uuid, role: member.role, left: leaving },
      },
      context,
    );
  });
}
