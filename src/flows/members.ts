import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { isUuid } from '../domain/identifiers.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { checkRole, type RoleName } from '../domain/roles.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { countAdmins, lockAndAuthorize, type OrganizationAccess, requirePermission, roleId } from './org-access.ts';

export interface MemberView {
  user_uuid: string;
  username: string;
  email: string;
  first_name: string | null;
  last_name: string | null;
  role: RoleName;
  joined_at: string;
}

/** A role name from a request body, or 422 naming the field. */
function validRole(raw: unknown): RoleName {
  const check = checkRole(raw);
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
      'memberships.created_at',
    ])
    .where('memberships.organization_id', '=', organizationId);
}

type MemberRow = Awaited<ReturnType<ReturnType<typeof memberQuery>['executeTakeFirstOrThrow']>>;

function memberView(row: MemberRow, role = row.role): MemberView {
  return {
    user_uuid: row.uuid,
    username: row.username,
    email: row.email,
    first_name: row.first_name,
    last_name: row.last_name,
    role: role as RoleName,
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
  const role = validRole(input.role);
  return services.db.transaction().execute(async (trx) => {
    await lockAndAuthorize(trx, access, 'members:manage');
    const member = await findMember(trx, access.organizationId, userUuid);
    if (member.role === role) return memberView(member);
    if (member.role === 'admin' && (await countAdmins(trx, access.organizationId, member.user_id)) === 0) {
      throw new AppError('CONFLICT', {
        detail: 'The last admin of an organization cannot be demoted; make another member an admin first',
      });
    }
    const targetRoleId = await roleId(trx, access.organizationId, role);
    await trx
      .updateTable('memberships')
      .set({ role_id: targetRoleId, updated_at: services.clock.now() })
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
    const actor = await lockAndAuthorize(trx, access, 'organization:read');
    const member = await findMember(trx, access.organizationId, userUuid);
    const leaving = member.user_id === actor.userId;
    if (!leaving) requirePermission(actor, 'members:manage');
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
