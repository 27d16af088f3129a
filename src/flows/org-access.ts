import { CompiledQuery, type Kysely, sql } from 'kysely';
import { BatchedRead } from '../db/batched-read.ts';
import { prepared } from '../db/prepared.ts';
import type { Database } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { isUuid } from '../domain/identifiers.ts';
import { describeRequirement, grants, type Requirement } from '../domain/roles.ts';

/** A user's standing in one organization, as the permission check found it. */
export interface OrganizationAccess {
  organizationId: number;
  organizationUuid: string;
  name: string;
  slug: string;
  userId: number;
  /** `admin`, `user`, `viewer` or one of the organization's custom roles. */
  role: string;
  /** The permissions of the member's role row (the built-in `admin` also holds every host permission). */
  permissions: readonly string[];
  /** The organization requires a second factor, and this member has none: its routes refuse them. */
  missingRequiredMfa: boolean;
  /** The session the check was made for (its `amr` counts toward the policy). */
  sessionId?: number;
}

/** Where a member refused for want of a second factor turns one on (the account page's enrolment). */
const MFA_ENROLMENT_PATH = '/account/mfa';

/**
 * The user's membership in the organization, or undefined (not a member,
 * unknown or malformed uuid). One statement whatever the role, built-in or
 * custom: `hostPermissions` (those the host declared) are added to the
 * built-in `admin` role's, not read.
 */
export async function findMembership(
  db: Kysely<Database>,
  userId: number,
  organizationUuid: string,
  sessionId?: number,
  hostPermissions: readonly string[] = [],
): Promise<OrganizationAccess | undefined> {
  if (!isUuid(organizationUuid)) return undefined;
  const row = await db
    .selectFrom('memberships')
    .innerJoin('organizations', 'organizations.id', 'memberships.organization_id')
    .innerJoin('roles', 'roles.id', 'memberships.role_id')
    .select([
      'organizations.id',
      'organizations.uuid',
      'organizations.name',
      'organizations.slug',
      'roles.name as role',
      'roles.permissions',
      'roles.built_in',
      'organizations.require_mfa',
      sql<boolean>`exists (select 1 from mfa_totp where mfa_totp.user_id = ${sql.ref('memberships.user_id')} and mfa_totp.confirmed_at is not null)`.as(
        'has_mfa',
      ),
      // A session signed in with a passkey (user verification required, or after a password) has two factors.
      sql<boolean>`exists (select 1 from sessions where sessions.id = ${sessionId ?? null} and (',' || sessions.amr || ',') like '%,webauthn,%')`.as(
        'passkey_session',
      ),
    ])
    .where('organizations.uuid', '=', organizationUuid.toLowerCase())
    .where('memberships.user_id', '=', userId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    organizationId: row.id,
    organizationUuid: row.uuid,
    name: row.name,
    slug: row.slug,
    userId,
    role: row.role,
    permissions: rolePermissions(
      { name: row.role, built_in: row.built_in, permissions: row.permissions },
      hostPermissions,
    ),
    missingRequiredMfa: row.require_mfa && !row.has_mfa && !row.passkey_session,
    ...(sessionId !== undefined && { sessionId }),
  };
}

/** What a role row grants: its permissions, and for the built-in `admin` every host permission too. */
export function rolePermissions(
  role: { name: string; built_in: boolean; permissions: unknown },
  hostPermissions: readonly string[],
): string[] {
  const permissions = Array.isArray(role.permissions) ? (role.permissions as string[]) : [];
  return role.built_in && role.name === 'admin' && hostPermissions.length > 0
    ? [...permissions, ...hostPermissions.filter((p) => !permissions.includes(p))]
    : permissions;
}

/**
 * No one hands out more than they hold: FORBIDDEN unless the actor's role
 * holds every one of `permissions` (those of a role they give, change or
 * take away). Admins hold them all, so this only limits custom roles that
 * hold `members:manage` or `invitations:manage`.
 */
export function requireHoldsAll(access: OrganizationAccess, permissions: readonly string[], what: string): void {
  // Custom roles cannot be named admin: this is the built-in role, which holds whatever a role may hold
  // (also a host permission that is no longer declared but still sits in a custom role).
  if (access.role === 'admin') return;
  const missing = permissions.filter((permission) => !access.permissions.includes(permission));
  if (missing.length === 0) return;
  throw new AppError('FORBIDDEN', {
    detail: `Your role in this organization (${access.role}) does not hold ${missing.join(', ')}, which ${what} has`,
  });
}

/**
 * The permission check: does this member's role meet the requirement?
 * FORBIDDEN when it does not. Every organization route and the host guard
 * come through here (via `authorizeMember`, or directly for rules that
 * depend on the target, such as "anyone may leave, only admins remove").
 */
export function requirePermission(access: OrganizationAccess, requirement: Requirement): void {
  if (grants(access.permissions, requirement)) return;
  throw new AppError('FORBIDDEN', {
    detail: `Your role in this organization (${access.role}) does not have ${describeRequirement(requirement)}`,
  });
}

/**
 * Membership, then the organization's second-factor policy, then the
 * permission check. A non-member learns nothing: the organization is
 * NOT_FOUND (also when it does not exist), never FORBIDDEN. A member without
 * a second factor in an organization that requires one is
 * 403 MFA_REQUIRED_BY_ORGANIZATION, whatever the role, with `enrol_url`.
 */
async function authorizeMember(
  db: Kysely<Database>,
  userId: number,
  organizationUuid: string,
  requirement: Requirement,
  sessionId?: number,
  hostPermissions: readonly string[] = [],
): Promise<OrganizationAccess> {
  const access = await findMembership(db, userId, organizationUuid, sessionId, hostPermissions);
  if (!access) throw new AppError('NOT_FOUND', { detail: 'Organization not found' });
  return checkAccess(access, requirement);
}

/** The second-factor policy, then the permission check, on a membership found. */
function checkAccess(access: OrganizationAccess, requirement: Requirement): OrganizationAccess {
  if (access.missingRequiredMfa) {
    throw new AppError('MFA_REQUIRED_BY_ORGANIZATION', {
      detail: `${access.name} requires a second factor: turn on an authenticator app for your account first`,
      extensions: { enrol_url: MFA_ENROLMENT_PATH },
    });
  }
  requirePermission(access, requirement);
  return access;
}

/** The organization uuid read for a malformed one: never generated, so no organization has it. */
const NO_ORGANIZATION = '00000000-0000-0000-0000-000000000000';

/** A live session and, when its user is a member of the organization, the membership (null columns otherwise). */
interface GuardRow {
  session_uuid: string;
  organization_uuid: string;
  session_id: number;
  user_id: number;
  user_uuid: string;
  passkey_session: boolean;
  id: number | null;
  uuid: string | null;
  name: string | null;
  slug: string | null;
  role: string | null;
  permissions: unknown;
  built_in: boolean | null;
  require_mfa: boolean | null;
  has_mfa: boolean | null;
}

/**
 * The guard's read for many (session, organization) pairs in one statement:
 * each live session (not revoked, the revocation check) with its user's
 * membership in the organization, its role row and the second-factor facts.
 * The same columns and rules as `findMembership`.
 */
function guardRows(db: Kysely<Database>): (keys: string[]) => Promise<Map<string, GuardRow>> {
  const query = prepared(
    CompiledQuery.raw(
      `select k.session_uuid::text as session_uuid, k.organization_uuid::text as organization_uuid,
  s.id as session_id, s.user_id, u.uuid::text as user_uuid,
  (',' || s.amr || ',') like '%,webauthn,%' as passkey_session,
  m.id, m.uuid, m.name, m.slug, m.role, m.permissions, m.built_in, m.require_mfa, m.has_mfa
from unnest($1::uuid[], $2::uuid[]) as k(session_uuid, organization_uuid)
join sessions s on s.uuid = k.session_uuid and s.revoked_at is null
join users u on u.id = s.user_id
left join lateral (
  select o.id, o.uuid::text as uuid, o.name, o.slug, r.name as role, r.permissions, r.built_in, o.require_mfa,
    exists (select 1 from mfa_totp t where t.user_id = ms.user_id and t.confirmed_at is not null) as has_mfa
  from memberships ms
  join organizations o on o.id = ms.organization_id
  join roles r on r.id = ms.role_id
  where o.uuid = k.organization_uuid and ms.user_id = s.user_id
) m on true`,
    ),
  );
  return async (keys) => {
    const sessions: string[] = [];
    const organizations: string[] = [];
    for (const key of keys) {
      const [session, organization] = key.split(' ');
      sessions.push(session as string);
      organizations.push(organization as string);
    }
    const { rows } = await db.executeQuery<GuardRow>(CompiledQuery.raw(query.sql, [sessions, organizations]));
    return new Map(rows.map((row) => [`${row.session_uuid} ${row.organization_uuid}`, row]));
  };
}

const guardReads = new WeakMap<Kysely<Database>, BatchedRead<string, GuardRow>>();

/** A guarded request's caller: the live session behind its access token and its membership. */
export interface GuardedCaller {
  userId: number;
  sessionId: number;
  access: OrganizationAccess;
}

/**
 * The organization guard's check, after the access token was verified:
 * the session is live (TOKEN_INVALID otherwise, as `requireUser`), then as
 * `authorizeMember`. Membership, role and revocation come from one statement
 * that concurrent guard checks share (see BatchedRead), so every answer is
 * read after the request arrived: a member removed or demoted, or a session
 * revoked, before it is refused. Nothing is cached between requests.
 */
export async function authorizeSessionMember(
  db: Kysely<Database>,
  token: { sessionUuid: string; userUuid: string },
  organizationUuid: string,
  requirement: Requirement,
  hostPermissions: readonly string[] = [],
): Promise<GuardedCaller> {
  let reads = guardReads.get(db);
  if (!reads) {
    reads = new BatchedRead(guardRows(db));
    guardReads.set(db, reads);
  }
  const organization = isUuid(organizationUuid) ? organizationUuid.toLowerCase() : NO_ORGANIZATION;
  // PostgreSQL answers uuids in lower case.
  const row = isUuid(token.sessionUuid)
    ? await reads.read(`${token.sessionUuid.toLowerCase()} ${organization}`)
    : undefined;
  // A token naming one user and another's session was never issued: refused like a revoked one.
  if (!row || row.user_uuid !== token.userUuid) {
    throw new AppError('TOKEN_INVALID', { detail: 'The session has been revoked' });
  }
  if (row.id === null || organization === NO_ORGANIZATION) {
    throw new AppError('NOT_FOUND', { detail: 'Organization not found' });
  }
  const access: OrganizationAccess = {
    organizationId: row.id,
    organizationUuid: row.uuid as string,
    name: row.name as string,
    slug: row.slug as string,
    userId: row.user_id,
    role: row.role as string,
    permissions: rolePermissions(
      { name: row.role as string, built_in: row.built_in === true, permissions: row.permissions },
      hostPermissions,
    ),
    missingRequiredMfa: row.require_mfa === true && !row.has_mfa && !row.passkey_session,
    sessionId: row.session_id,
  };
  return { userId: row.user_id, sessionId: row.session_id, access: checkAccess(access, requirement) };
}

/**
 * Takes the organization's row lock for the rest of the transaction, so that
 * concurrent role changes, removals and account deletions are serialised and
 * cannot together remove the last admin.
 */
export async function lockOrganization(trx: Kysely<Database>, organizationId: number): Promise<boolean> {
  const row = await trx
    .selectFrom('organizations')
    .select('id')
    .where('id', '=', organizationId)
    .forUpdate()
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Locks the organization, then checks the actor again under the lock: a
 * request that raced a change to the actor's own role (two admins demoting
 * each other) sees the outcome of the one before it. NOT_FOUND once the
 * organization is gone.
 */
export async function lockAndAuthorize(
  trx: Kysely<Database>,
  access: OrganizationAccess,
  requirement: Requirement,
  hostPermissions: readonly string[] = [],
): Promise<OrganizationAccess> {
  if (!(await lockOrganization(trx, access.organizationId))) {
    throw new AppError('NOT_FOUND', { detail: 'Organization not found' });
  }
  return authorizeMember(trx, access.userId, access.organizationUuid, requirement, access.sessionId, hostPermissions);
}

/** Members holding the `admin` role, other than `exceptUserId`. Call under `lockOrganization`. */
export async function countAdmins(
  db: Kysely<Database>,
  organizationId: number,
  exceptUserId: number | null = null,
): Promise<number> {
  let query = db
    .selectFrom('memberships')
    .innerJoin('roles', 'roles.id', 'memberships.role_id')
    .select(sql<number>`count(*)::int`.as('admins'))
    .where('memberships.organization_id', '=', organizationId)
    .where('roles.name', '=', 'admin');
  if (exceptUserId !== null) query = query.where('memberships.user_id', '!=', exceptUserId);
  const row = await query.executeTakeFirstOrThrow();
  return Number(row.admins);
}

/** Is the user a member of the organization (any role)? */
export async function isMember(db: Kysely<Database>, organizationId: number, userId: number): Promise<boolean> {
  const row = await db
    .selectFrom('memberships')
    .select('id')
    .where('organization_id', '=', organizationId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return row !== undefined;
}

/** The names of the organization's roles: the built-in three first, then the custom ones, oldest first. */
export async function organizationRoleNames(db: Kysely<Database>, organizationId: number): Promise<string[]> {
  const rows = await db
    .selectFrom('roles')
    .select('name')
    .where('organization_id', '=', organizationId)
    .orderBy('built_in', 'desc')
    .orderBy('id')
    .execute();
  return rows.map((row) => row.name);
}

/**
 * The organization's role row of that name; 422 VALIDATION_ERROR on `field`
 * (listing the organization's roles) when it has none, e.g. a custom role
 * deleted since the request was validated.
 */
export async function organizationRole(
  db: Kysely<Database>,
  organizationId: number,
  role: string,
  field = 'role',
): Promise<{ id: number; name: string; permissions: string[]; built_in: boolean }> {
  const row = await db
    .selectFrom('roles')
    .select(['id', 'name', 'permissions', 'built_in'])
    .where('organization_id', '=', organizationId)
    .where('name', '=', role)
    .executeTakeFirst();
  if (row) return row;
  const names = await organizationRoleNames(db, organizationId);
  throw new AppError('VALIDATION_ERROR', {
    detail: 'One or more fields are invalid',
    errors: [{ field, message: `Role must be one of ${names.join(', ')}`, code: 'invalid_value' }],
  });
}
