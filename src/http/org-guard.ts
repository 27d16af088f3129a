import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  type HostPermission,
  isBuiltInPermission,
  isRoleName,
  PERMISSION_PATTERN,
  type Permission,
  type Requirement,
  type RoleName,
} from '../domain/roles.ts';
import { authorizeSessionMember, type OrganizationAccess } from '../flows/org-access.ts';
import { bearerToken } from './auth-guard.ts';
import { sendProblem } from './problem.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `requireOrgRole` / `requireOrgPermission`: the caller's membership in the route's organization. */
    membership: OrganizationAccess;
  }
}

export interface OrgGuardOptions {
  /** The path parameter holding the organization uuid. Default `uuid`. */
  param?: string;
}

export type OrgGuard = (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>;

/** The host permission a guard checks, so that the plugin can refuse routes that use an undeclared one. */
const HOST_PERMISSION = Symbol('gatehouse.hostPermission');

/**
 * The host permission a route hook checks when it is a guard made by
 * `requirePermission` for a permission the host has not declared, else undefined.
 */
export function undeclaredPermission(hook: unknown, declared: readonly string[]): string | undefined {
  if (typeof hook !== 'function') return undefined;
  const permission = (hook as { [HOST_PERMISSION]?: string })[HOST_PERMISSION];
  return permission !== undefined && !declared.includes(permission) ? permission : undefined;
}

/**
 * A route hook (`onRequest` or `preHandler`) that admits the bearer of a
 * valid access token who is a member of the organization in the path and
 * whose role meets the requirement; it sets `request.auth` and
 * `request.membership`. It answers refusals itself, as problem+json
 * (401 no or bad token, 404 not a member or unknown organization, 403 role
 * too low), so a host application's own error handler never reshapes them.
 */
function organizationGuard(requirement: Requirement, options: OrgGuardOptions): OrgGuard {
  const param = options.param ?? 'uuid';
  return async function organizationGuardHook(request, reply) {
    try {
      const { db, hostPermissions } = request.server.gatehouse;
      // A route declared before Gatehouse was registered escaped the declaration-time check.
      if (
        typeof requirement === 'string' &&
        !isBuiltInPermission(requirement) &&
        !hostPermissions.includes(requirement)
      ) {
        throw new Error(`requirePermission: "${requirement}" is not declared in the plugin's \`permissions\` option`);
      }
      // As requireUser, except that the session's revocation is checked by the membership read itself
      // (one statement, shared by concurrent guard checks), as GET /me does.
      const claims = await request.server.gatehouse.tokens.verify(bearerToken(request), 'access');
      const value = (request.params as Record<string, unknown> | undefined)?.[param];
      const caller = await authorizeSessionMember(
        db,
        { sessionUuid: claims.sid, userUuid: claims.sub },
        typeof value === 'string' ? value : '',
        requirement,
        hostPermissions,
      );
      request.auth = {
        userId: caller.userId,
        userUuid: claims.sub,
        email: claims.email as string,
        sessionId: caller.sessionId,
        sessionUuid: claims.sid,
      };
      request.membership = caller.access;
      return undefined;
    } catch (error) {
      return sendProblem(request, reply, error);
    }
  };
}

/**
 * Guard for routes under `/organizations/:uuid/…` that need at least `role`
 * (`admin` ⊇ `user` ⊇ `viewer`), e.g. `{ onRequest: requireOrgRole('user') }`.
 */
export function requireOrgRole(role: RoleName, options: OrgGuardOptions = {}): OrgGuard {
  if (!isRoleName(role)) throw new TypeError(`requireOrgRole: unknown role "${String(role)}"`);
  return organizationGuard({ role }, options);
}

/**
 * Guard for routes that need one permission of the member's role, e.g.
 * `requireOrgPermission('members:manage')`: a built-in permission, or one the
 * host declared with the plugin's `permissions` option (`scans:start`), which
 * the built-in `admin` role and the custom roles holding it have. A malformed
 * name throws at once; an undeclared one when the route is declared after
 * Gatehouse was registered (otherwise, answering 500, when it is called).
 */
export function requireOrgPermission(permission: Permission | HostPermission, options: OrgGuardOptions = {}): OrgGuard {
  if (typeof permission !== 'string' || !(isBuiltInPermission(permission) || PERMISSION_PATTERN.test(permission))) {
    throw new TypeError(`requireOrgPermission: unknown permission "${String(permission)}"`);
  }
  const guard = organizationGuard(permission, options);
  if (!isBuiltInPermission(permission)) Object.defineProperty(guard, HOST_PERMISSION, { value: permission });
  return guard;
}

/** `requireOrgPermission` under the shorter name hosts use for their own permissions: `requirePermission('scans:start')`. */
export function requirePermission(permission: Permission | HostPermission, options: OrgGuardOptions = {}): OrgGuard {
  return requireOrgPermission(permission, options);
}
