import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { Config } from '../config.ts';
import { AppError } from '../domain/errors.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { type AuthContext, type IssuedSession, revokeSession } from '../infra/sessions.ts';
import { sha256Hex } from '../infra/tokens.ts';

/**
 * The HTML pages' session: a `browser` session (the same rows, revocation and
 * audit as an API login) whose refresh token lives in an httpOnly cookie. The
 * page never sees a token; JavaScript on the site cannot read it.
 */
export interface BrowserSession {
  auth: AuthContext;
  expiresAt: Date;
}

export interface CookieNames {
  session: string;
  csrf: string;
  flash: string;
}

/** Served over https, `__Host-` cookies cannot be set by a sibling subdomain or scoped to a sub-path. */
export function cookieNames(config: Config): CookieNames {
  const prefix = isSecure(config) ? '__Host-' : '';
  return { session: `${prefix}gatehouse-session`, csrf: `${prefix}gatehouse-csrf`, flash: `${prefix}gatehouse-flash` };
}

function isSecure(config: Config): boolean {
  return config.publicUrl.startsWith('https:');
}

/** httpOnly, SameSite=Lax (a link from a mail still arrives signed in), Secure when PUBLIC_URL is https. */
export function serializeCookie(config: Config, name: string, value: string, maxAgeSeconds: number): string {
  return stringifySetCookie({
    name,
    value,
    httpOnly: true,
    secure: isSecure(config),
    sameSite: 'lax',
    path: '/',
    maxAge: Math.max(0, Math.floor(maxAgeSeconds)),
  });
}

export function readCookies(header: string | undefined): Record<string, string | undefined> {
  return typeof header === 'string' ? parseCookie(header) : {};
}

/** The Set-Cookie of a session the login page just started. */
export function sessionCookie(config: Config, issued: IssuedSession): string {
  return serializeCookie(
    config,
    cookieNames(config).session,
    issued.tokens.refresh_token,
    issued.tokens.refresh_expires_in,
  );
}

/**
 * The signed-in user behind a session cookie, or undefined. PostgreSQL is
 * asked every time (not the Redis fast path, which only remembers
 * revocations for an access token's lifetime): the session must be a live
 * browser session of an active user, and the cookie its current token, so
 * that a copy spent at the refresh endpoint stops working here too.
 */
export async function authenticateBrowserSession(
  services: Services,
  cookie: string | undefined,
): Promise<BrowserSession | undefined> {
  if (!cookie) return undefined;
  let claims: Awaited<ReturnType<Services['tokens']['verify']>>;
  try {
    claims = await services.tokens.verify(cookie, 'refresh');
  } catch (error) {
    if (error instanceof AppError) return undefined;
    throw error;
  }
  const row = await services.db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'sessions.id',
      'sessions.uuid',
      'sessions.kind',
      'sessions.refresh_token_hash',
      'sessions.expires_at',
      'sessions.revoked_at',
      'users.id as user_id',
      'users.uuid as user_uuid',
      'users.email',
      'users.is_active',
    ])
    .where('sessions.uuid', '=', claims.sid)
    .executeTakeFirst();
  const now = services.clock.now();
  if (
    row?.kind !== 'browser' ||
    row.revoked_at !== null ||
    row.expires_at.getTime() <= now.getTime() ||
    row.user_uuid !== claims.sub ||
    !row.is_active ||
    row.refresh_token_hash !== sha256Hex(claims.jti)
  ) {
    return undefined;
  }
  return {
    auth: { userId: row.user_id, userUuid: row.user_uuid, email: row.email, sessionId: row.id, sessionUuid: row.uuid },
    expiresAt: row.expires_at,
  };
}

/** Logging out of the pages: the session is revoked on the server, not only forgotten by the browser. */
export async function endBrowserSession(services: Services, auth: AuthContext, context: RequestContext): Promise<void> {
  await services.db.transaction().execute(async (trx) => {
    if (await revokeSession(services, auth.userId, auth.sessionUuid, 'logout', trx)) {
      await recordAudit(
        trx,
        { action: 'logout', userId: auth.userId, details: { session_uuid: auth.sessionUuid, kind: 'browser' } },
        context,
      );
    }
  });
}

/** Signs one of the user's sessions out from the account page; false when it is not theirs or not live. */
export async function signOutSession(
  services: Services,
  auth: AuthContext,
  sessionUuid: string,
  context: RequestContext,
): Promise<boolean> {
  const id = sessionUuid.toLowerCase();
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) return false;
  return services.db.transaction().execute(async (trx) => {
    if (!(await revokeSession(services, auth.userId, id, 'revoked_by_user', trx))) return false;
    await recordAudit(
      trx,
      {
        action: 'session_revoked',
        userId: auth.userId,
        details: { session_uuid: id, current: id === auth.sessionUuid },
      },
      context,
    );
    return true;
  });
}

/**
 * CSRF: a signed double-submit token. The browser holds a random secret in an
 * httpOnly cookie; each form carries HMAC(SECRET_KEY, secret + session). A
 * cross-site page can make the browser send the cookie but can neither read
 * it nor compute the MAC; binding to the session cookie means a token shown
 * before login is void after it (and the reverse).
 */
export function newCsrfSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function csrfToken(config: Config, secret: string, sessionCookieValue: string | undefined): string {
  const binding = sessionCookieValue ? sha256Hex(sessionCookieValue) : '-';
  return createHmac('sha256', config.secretKey).update(`gatehouse-csrf\n${secret}\n${binding}`).digest('base64url');
}

export function csrfTokenValid(
  config: Config,
  secret: string | undefined,
  sessionCookieValue: string | undefined,
  presented: unknown,
): boolean {
  if (!secret || typeof presented !== 'string' || presented === '') return false;
  const expected = Buffer.from(csrfToken(config, secret, sessionCookieValue));
  const given = Buffer.from(presented);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
