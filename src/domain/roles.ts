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

export function isRoleName(value: string): value is RoleName {
  return (ROLE_NAMES as readonly string[]).includes(value);
}

/**
 * A role name from a request body, one of `available` (the built-in three
 * unless the organization's roles are given); the error names the field and
 * the roles.
 */
export function checkRole(raw: unknown, field = 'role', available: readonly string[] = ROLE_NAMES): Check<string> {
  if (typeof raw === 'string' && available.includes(raw)) return { ok: true, value: raw };
  return {
    ok: false,
    error: {
      field,
      message: `Role must be one of ${available.join(', ')}`,
      code: raw === undefined ? 'required' : 'invalid_value',
    },
  };
}

/** A custom role's name: a lowercase letter, then 1–31 lowercase letters, digits, `_` or `-`. */
export const ROLE_NAME_PATTERN = /^[a-z][a-z0-9_-]{1,31}$/;

/** The name of a new custom role (its clash with an existing role is the caller's check). */
export function checkRoleName(raw: unknown, field = 'name'): Check<string> {
  if (typeof raw === 'string' && ROLE_NAME_PATTERN.test(raw)) return { ok: true, value: raw };
  return {
    ok: false,
    error: {
      field,
      message: 'Role name must be 2 to 32 characters: a lowercase letter, then lowercase letters, digits, _ or -',
      code: raw === undefined ? 'required' : 'invalid_value',
    },
  };
}

/** What a host application may declare as a permission of its own: `scope:action`, lowercase. */
export const PERMISSION_PATTERN = /^[a-z][a-z0-9_-]{0,31}:[a-z][a-z0-9_-]{0,31}$/;

/**
 * The host application's declared permissions (plugin option), checked and
 * without repeats; the built-in ones are dropped (every role keeps its own).
 * A malformed name throws: it is the host's programming error.
 */
export function hostPermissions(declared: readonly unknown[]): string[] {
  const names: string[] = [];
  for (const permission of declared) {
    if (typeof permission !== 'string' || !PERMISSION_PATTERN.test(permission)) {
      throw new TypeError(
        `gatehouse: permission ${JSON.stringify(permission)} must be "scope:action" in lowercase, e.g. "scans:start"`,
      );
    }
    if (!isBuiltInPermission(permission) && !names.includes(permission)) names.push(permission);
  }
  return names;
}

export function isBuiltInPermission(value: string): value is Permission {
  return (PERMISSIONS as readonly string[]).includes(value);
}

/**
 * A custom role's permission list, each one of `allowed` (the built-in
 * permissions and those the host declared): unique, in the request's order.
 */
export function checkPermissions(raw: unknown, allowed: readonly string[], field = 'permissions'): Check<string[]> {
  if (raw === undefined) return { ok: false, error: { field, message: 'Field is required', code: 'required' } };
  if (!Array.isArray(raw)) {
    return {
      ok: false,
      error: { field, message: 'Permissions must be a list of permission names', code: 'invalid_type' },
    };
  }
  const unknown = raw.filter((p) => typeof p !== 'string' || !allowed.includes(p));
  if (unknown.length > 0) {
    return {
      ok: false,
      error: {
        field,
        message: `Unknown permission ${JSON.stringify(unknown[0])}; permissions are ${allowed.join(', ')}`,
        code: 'invalid_value',
      },
    };
  }
  return { ok: true, value: [...new Set(raw as string[])] };
}

/**
 * What a route asks of a member: one permission, or everything a role may do
 * (`{ role: 'user' }` is met by every role whose permissions include the
 * `user` role's, so admins pass too).
 */
export type Requirement = Permission | HostPermission | { role: RoleName };

/** A permission a host application declared (`permissions` plugin option), e.g. `scans:start`. */
export type HostPermission = string & Record<never, never>;

/** Does a role's permission list (the `roles.permissions` row) meet the requirement? */
export function grants(permissions: readonly string[], requirement: Requirement): boolean {
  const needed = typeof requirement === 'string' ? [requirement] : DEFAULT_ROLE_PERMISSIONS[requirement.role];
  return needed.every((permission) => permissions.includes(permission));
}

export function describeRequirement(requirement: Requirement): string {
  return typeof requirement === 'string' ? `the ${requirement} permission` : `the ${requirement.role} role`;
}
