/**
 * COMPAT profiles: the paths, field names and body shapes of the five
 * documents Gatehouse was specified from (docs/compatibility.md), each turned
 * on by name. A profile only adds aliases of Gatehouse's own routes and
 * reshapes the answers given on them; `depin`, whose paths are Gatehouse's
 * own, reshapes the errors of the API itself.
 */

const COMPAT_PROFILES = ['depin', 'piccolo', 'fastpy', 'simple-endpoints', 'fastapi-tutorial'] as const;
export type CompatProfile = (typeof COMPAT_PROFILES)[number];

/**
 * The routes each profile serves beside Gatehouse's, as `METHOD /path` below
 * the mount point (the API prefix is not part of them). Two profiles claiming
 * the same one cannot both be on.
 */
export const COMPAT_ROUTES: Record<CompatProfile, readonly string[]> = {
  depin: [],
  piccolo: ['POST /register'],
  fastpy: [
    'POST /api/auth/register',
    'POST /api/auth/login',
    'POST /api/auth/login/json',
    'POST /api/auth/refresh',
    'GET /api/auth/me',
    'POST /api/auth/change-password',
    'POST /api/auth/forgot-password',
    'POST /api/auth/reset-password',
    'POST /api/auth/verify-email',
    'POST /api/auth/logout',
  ],
  'simple-endpoints': ['POST /register', 'POST /login'],
  'fastapi-tutorial': ['POST /auth/signup', 'POST /auth/login'],
};

/**
 * `COMPAT=a,b` → the profiles, in the order given. An unknown name, or two
 * profiles that claim the same route, is an error naming them.
 */
export function parseCompat(value: string): CompatProfile[] {
  const profiles: CompatProfile[] = [];
  for (const raw of value.split(',')) {
    const name = raw.trim().toLowerCase();
    if (name === '') continue;
    if (!(COMPAT_PROFILES as readonly string[]).includes(name)) {
      throw new Error(`unknown profile "${raw.trim()}"; known: ${COMPAT_PROFILES.join(', ')}`);
    }
    if (!profiles.includes(name as CompatProfile)) profiles.push(name as CompatProfile);
  }
  const claimedBy = new Map<string, CompatProfile>();
  for (const profile of profiles) {
    for (const route of COMPAT_ROUTES[profile]) {
      const other = claimedBy.get(route);
      if (other) {
        throw new Error(
          `profiles "${other}" and "${profile}" both answer ${route}; turn on one of them (docs/compatibility.md)`,
        );
      }
      claimedBy.set(route, profile);
    }
  }
  return profiles;
}
