import type { FastifyReply, FastifyRequest } from 'fastify';
import { isRoleName, PERMISSIONS, type Permission, type Requirement, type RoleName } from '../domain/roles.ts';
import { authorizeMember, type OrganizationAccess } from '../flows/org-access.ts';
import { requireUser } from './auth-guard.ts';
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
      await requireUser(request, reply);
      const value = (request.params as Record<string, unknown> | undefined)?.[param];
      request.membership = await authorizeMember(
        request.server.gatehouse.db,
        request.auth.userId,
        typeof value === 'string' ? value : '',
        requirement,
        request.auth.sessionId,
      );
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

/** Guard for routes that need one permission of the member's role, e.g. `requireOrgPermission('members:manage')`. */
export function requireOrgPermission(permission: Permission, options: OrgGuardOptions = {}): OrgGuard {
  if (!(PERMISSIONS as readonly string[]).includes(permission)) {
    throw new TypeError(`requireOrgPermission: unknown permission "${String(permission)}"`);
  }
  return organizationGuard(permission, options);
}
