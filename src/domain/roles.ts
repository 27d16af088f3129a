import type { Check } from './account-rules.ts';

/** The three roles every organization starts with, and what each may do. */
export const ROLE_NAMES = ['admin', 'user', 'viewer'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

export const PERMISSIONS = [
  'organization:read',
  'organization:update',
  'organization:delete',
  'members:read',
  'members:manage',
  'invitations:manage',
  'audit:read',
  'resources:read',
  'resources:use',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const DEFAULT_ROLE_PERMISSIONS: Record<RoleName, readonly Permission[]> = {
  admin: PERMISSIONS,
  user: ['organization:read', 'members:read', 'resources:read', 'resources:use'],
  viewer: ['organization:read', 'members:read', 'resources:read'],
};

/** Rank for "at least this role" comparisons: admin ⊇ user ⊇ viewer. */

export function isRoleName(value: string): value is RoleName {
  return (ROLE_NAMES as readonly string[]).includes(value);
}

/** A role name from a request body; the error names the field and the three roles. */
export function checkRole(raw: unknown, field = 'role'): Check<RoleName> {
  if (typeof raw === 'string' && isRoleName(raw)) return { ok: true, value: raw };
  return {
    ok: false,
    error: {
      field,
      message: `Role must be one of ${ROLE_NAMES.join(', ')}`,
      code: raw === undefined ? 'required' : 'invalid_value',
    },
  };
}

/**
 * What a route asks of a member: one permission, or everything a role may do
 * (`{ role: 'user' }` is met by every role whose permissions include the
 * `user` role's, so admins pass too).
 */
export type Requirement = Permission | { role: RoleName };

/** Does a role's permission list (the `roles.permissions` row) meet the requirement? */
export function grants(permissions: readonly string[], requirement: Requirement): boolean {
  const needed = typeof requirement === 'string' ? [requirement] : DEFAULT_ROLE_PERMISSIONS[requirement.role];
  return needed.every((permission) => permissions.includes(permission));
}

export function describeRequirement(requirement: Requirement): string {
  return typeof requirement === 'string' ? `the ${requirement} permission` : `the ${requirement.role} role`;
}
