import { type RawBuilder, sql } from 'kysely';
import type { Config } from '../config.ts';
import { AppError } from '../domain/errors.ts';

/** A JSON object kept about a user (`user_metadata`, `app_metadata`). */
export type Metadata = Record<string, unknown>;

/** What a token-issuing statement read for the product's claims; each only when its setting is on. */
export interface ClaimSources {
  /** `gatehouse_org_claims()`: role name per organization uuid; null over the cap (migration 0015). */
  org_claims?: Record<string, string> | null;
  user_metadata?: Metadata;
  app_metadata?: Metadata;
}

/** The `orgs` claim of a user, as a column of the statement that issues the tokens. */
export function orgClaimsOf(userId: RawBuilder<unknown> | number): RawBuilder<Record<string, string> | null> {
  return sql<Record<string, string> | null>`gatehouse_org_claims(${userId})`;
}

/**
 * The claims the settings add: `orgs` (or `orgs_truncated: true` past 50
 * organizations or 4096 bytes) with ACCESS_TOKEN_ORG_CLAIMS,
 * `user_metadata` and `app_metadata` with ACCESS_TOKEN_METADATA_CLAIMS.
 */
export function productClaims(config: Config, sources: ClaimSources): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  if (config.accessTokenOrgClaims) {
    if (sources.org_claims) claims.orgs = sources.org_claims;
    else claims.orgs_truncated = true;
  }
  if (config.accessTokenMetadataClaims) {
    claims.user_metadata = sources.user_metadata ?? {};
    claims.app_metadata = sources.app_metadata ?? {};
  }
  return claims;
}

/** What a claims hook is told about the tokens being issued. */
export interface ClaimsHookContext {
  user: { id: number; uuid: string; email: string };
  session: { uuid: string; amr: string[]; auth_time: number };
}

/**
 * The host application's claims (plugin option `claims`), merged into every
 * access token at login and refresh. Registered claims cannot be replaced.
 */
export type ClaimsHook = (context: ClaimsHookContext) => Record<string, unknown> | Promise<Record<string, unknown>>;

/** Claims Gatehouse sets itself: a hook's keys among these are dropped (and logged). */
const REGISTERED_CLAIMS: ReadonlySet<string> = new Set([
  'sub',
  'iss',
  'aud',
  'exp',
  'nbf',
  'iat',
  'jti',
  'sid',
  'type',
  'email',
  'amr',
  'auth_time',
  'scope',
  'client_id',
  'orgs',
  'orgs_truncated',
  'user_metadata',
  'app_metadata',
]);

/** A hook that has not answered after this long fails the login or refresh. */
const CLAIMS_HOOK_TIMEOUT_MS = 5_000;

interface HookServices {
  claimsHook: ClaimsHook | undefined;
  log: { warn(object: object, message: string): void; error(object: object, message: string): void };
}

/**
 * Runs the hook before anything is written: failing closed (503
 * CLAIMS_HOOK_FAILED) leaves the session and its refresh token as they were.
 */
export async function hostClaims(services: HookServices, context: ClaimsHookContext): Promise<Record<string, unknown>> {
  const hook = services.claimsHook;
  if (!hook) return {};
  let timer: NodeJS.Timeout | undefined;
  let result: unknown;
  try {
    result = await Promise.race([
      Promise.resolve().then(() => hook(context)),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer in ${CLAIMS_HOOK_TIMEOUT_MS} ms`)),
          CLAIMS_HOOK_TIMEOUT_MS,
        );
      }),
    ]);
  } catch (error) {
    services.log.error({ err: error }, 'claims hook failed: no tokens issued');
    throw hookFailed(error);
  } finally {
    clearTimeout(timer);
  }
  if (typeof result !== 'object' || result === null || Array.isArray(result)) {
    services.log.error({ returned: typeof result }, 'claims hook did not return an object: no tokens issued');
    throw hookFailed(undefined);
  }
  const claims: Record<string, unknown> = {};
  const dropped: string[] = [];
  for (const [name, value] of Object.entries(result)) {
    if (REGISTERED_CLAIMS.has(name)) dropped.push(name);
    else if (value !== undefined) claims[name] = value;
  }
  if (dropped.length > 0) services.log.warn({ dropped }, 'claims hook returned registered claims: ignored');
  try {
    JSON.stringify(claims);
  } catch (error) {
    services.log.error({ err: error }, 'claims hook returned claims that are not JSON: no tokens issued');
    throw hookFailed(error);
  }
  return claims;
}

function hookFailed(cause: unknown): AppError {
  return new AppError('CLAIMS_HOOK_FAILED', {
    detail: 'The claims for the token could not be computed; try again',
    retryAfter: 1,
    cause,
  });
}

/** A user row's metadata, for the claims: `{}` where a row was read without it. */
export function metadataOf(user: { user_metadata?: Metadata; app_metadata?: Metadata }): ClaimSources {
  return { user_metadata: user.user_metadata ?? {}, app_metadata: user.app_metadata ?? {} };
}
