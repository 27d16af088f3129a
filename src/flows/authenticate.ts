import { AppError } from '../domain/errors.ts';
import type { Services } from '../infra/container.ts';
import type { AuthContext } from '../infra/sessions.ts';
import { sha256Hex } from '../infra/sha256.ts';

/**
 * Verifies an access token and that its session is live and belongs to its
 * subject. Throws TOKEN_EXPIRED or TOKEN_INVALID (revoked sessions included).
 */
export async function authenticateAccessToken(services: Services, token: string): Promise<AuthContext> {
  const claims = await services.tokens.verify(token, 'access');
  // A token naming one user and another's session was never issued: refused like a revoked one.
  const session = await services.revocations.liveSession(claims.sid, claims.sub);
  if (!session) throw new AppError('TOKEN_INVALID', { detail: 'The session has been revoked' });
  return {
    userId: session.userId,
    userUuid: claims.sub,
    email: claims.email as string,
    sessionId: session.id,
    sessionUuid: claims.sid,
  };
}

/** FORBIDDEN unless the signed-in user is an active superuser. */
export async function assertSuperuser(services: Services, auth: AuthContext): Promise<void> {
  const user = await services.db
    .selectFrom('users')
    .select(['is_superuser', 'is_active'])
    .where('id', '=', auth.userId)
    .executeTakeFirst();
  if (!user?.is_active || !user.is_superuser) throw new AppError('FORBIDDEN');
}

/**
 * The HTML pages' session: a `browser` session (the same rows, revocation and
 * audit as an API login) whose refresh token lives in an httpOnly cookie. The
 * page never sees a token; JavaScript on the site cannot read it.
 */
export interface BrowserSession {
  auth: AuthContext;
  expiresAt: Date;
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
