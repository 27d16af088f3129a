import { randomUUID } from 'node:crypto';
import type { Insertable, Kysely } from 'kysely';
import type { Database, SessionsTable } from '../db/schema.ts';
import type { RequestContext } from '../domain/request-context.ts';
import type { Services } from './container.ts';
import { sha256Hex } from './sha256.ts';

/** `oauth`: the tokens of an OpenID Connect grant (a product's sign-in through Gatehouse). */
export type SessionKind = 'api' | 'browser' | 'oauth';

/** The body of a token response (RFC 6749 §5.1). */
export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: 'bearer';
  expires_in: number;
  refresh_expires_in: number;
}

export interface IssuedSession {
  tokens: TokenPair;
  session: { id: number; uuid: string; expiresAt: Date };
}

/** Who holds a verified access token: `request.auth`. */
export interface AuthContext {
  userId: number;
  userUuid: string;
  email: string;
  sessionId: number;
  sessionUuid: string;
}

export interface SessionUser {
  id: number;
  uuid: string;
  email: string;
}

export type RevocationReason =
  | 'logout'
  | 'logout_all'
  | 'revoked_by_user'
  | 'refresh_token_reuse'
  | 'password_change'
  | 'password_reset'
  | 'account_disabled'
  | 'account_deleted'
  | 'admin'
  | 'email_change_reverted';

/** The columns of a new session's row, every one set by newSession (a cached statement binds each). */
export const NEW_SESSION_COLUMNS = [
  'uuid',
  'user_id',
  'refresh_token_hash',
  'user_agent',
  'ip_address',
  'kind',
  'created_at',
  'last_used_at',
  'expires_at',
  'auth_time',
  'amr',
] as const;

export type NewSessionRow = { [K in (typeof NEW_SESSION_COLUMNS)[number]]: Insertable<SessionsTable>[K] };

/** A session about to be inserted: its row, and what its first tokens need. */
export interface NewSession {
  row: NewSessionRow;
  uuid: string;
  issuedAt: Date;
  expiresAt: Date;
  amr: string[];
}

/** How a session's user proved who they are, and when: the access token's `amr` and `auth_time`. */
export interface SessionAuthentication {
  amr: string[];
  authTime: Date;
}

/** `sessions.amr` (comma-separated) as the claim carries it. */
export function amrOf(stored: string): string[] {
  return stored.split(',').filter(Boolean);
}

/**
 * When a session issued a refresh token `now` ends: REFRESH_TOKEN_EXPIRE_DAYS
 * later, but never past SESSION_MAX_AGE_DAYS after its login (`createdAt`),
 * however often it is refreshed: a stolen refresh token cannot be kept alive forever.
 */
export function sessionExpiry(services: Services, createdAt: Date, now: Date): Date {
  const sliding = now.getTime() + services.tokens.refreshLifetimeSeconds * 1000;
  return new Date(Math.min(sliding, sessionEnd(services, createdAt).getTime()));
}

/** SESSION_MAX_AGE_DAYS after the login: the latest a session can end. */
export function sessionEnd(services: Services, createdAt: Date): Date {
  return new Date(createdAt.getTime() + services.config.sessionMaxAgeDays * 86_400_000);
}

/** The sessions row of a new login; the uuid is chosen here so that the tokens can name it. */
export function newSession(
  services: Services,
  user: SessionUser,
  context: RequestContext,
  options: { kind: SessionKind; amr?: string[] },
): NewSession {
  const amr = options.amr ?? ['pwd'];
  const now = services.clock.now();
  const uuid = randomUUID();
  const expiresAt = sessionExpiry(services, now, now);
  return {
    uuid,
    issuedAt: now,
    expiresAt,
    amr,
    row: {
      uuid,
      user_id: user.id,
      refresh_token_hash: sha256Hex(services.tokens.refreshTokenId(uuid, 0)),
      user_agent: context.userAgent,
      ip_address: context.ip,
      kind: options.kind,
      created_at: now,
      last_used_at: now,
      expires_at: expiresAt,
      auth_time: now,
      amr: amr.join(','),
    },
  };
}

/** The first token pair of a session whose row (id `sessionId`) is written. */
export async function startedSession(
  services: Services,
  user: SessionUser,
  session: NewSession,
  sessionId: number,
  extraClaims: Record<string, unknown> = {},
): Promise<IssuedSession> {
  services.revocations.remember(session.uuid, { id: sessionId, userId: user.id, userUuid: user.uuid });
  const tokens = await tokenPair(
    services,
    user,
    {
      uuid: session.uuid,
      generation: 0,
      issuedAt: session.issuedAt,
      expiresAt: session.expiresAt,
      amr: session.amr,
      authTime: session.issuedAt,
    },
    session.issuedAt,
    extraClaims,
  );
  return { tokens, session: { id: sessionId, uuid: session.uuid, expiresAt: session.expiresAt } };
}

/** The access and refresh tokens of one generation of a session; `extraClaims` go into the access token. */
export async function tokenPair(
  services: Services,
  user: { uuid: string; email: string },
  session: { uuid: string; generation: number; issuedAt: Date; expiresAt: Date } & SessionAuthentication,
  now: Date,
  extraClaims: Record<string, unknown> = {},
): Promise<TokenPair> {
  const { tokens } = services;
  const [accessToken, refreshToken] = await Promise.all([
    tokens.signAccessToken(
      {
        sub: user.uuid,
        email: user.email,
        sid: session.uuid,
        amr: session.amr,
        authTime: Math.floor(session.authTime.getTime() / 1000),
      },
      now,
      extraClaims,
    ),
    tokens.signRefreshToken({
      sub: user.uuid,
      sid: session.uuid,
      generation: session.generation,
      issuedAt: session.issuedAt,
      expiresAt: session.expiresAt,
    }),
  ]);
  return {
    access_token: accessToken,
    refresh_token: refreshToken,
    token_type: 'bearer',
    expires_in: tokens.accessLifetimeSeconds,
    refresh_expires_in: Math.max(0, Math.floor((session.expiresAt.getTime() - now.getTime()) / 1000)),
  };
}

/**
 * Revokes one session of a user and publishes the revocation; the kind of the
 * session revoked, or undefined when it is not theirs, unknown, or already revoked.
 */
export async function revokeSession(
  services: Services,
  userId: number,
  sessionUuid: string,
  reason: RevocationReason,
  db: Kysely<Database> = services.db,
): Promise<SessionKind | undefined> {
  const now = services.clock.now();
  const rows = await db
    .updateTable('sessions')
    .set({ revoked_at: now, revoked_reason: reason })
    .where('user_id', '=', userId)
    .where('uuid', '=', sessionUuid)
    .where('revoked_at', 'is', null)
    .returning(['uuid', 'kind'])
    .execute();
  await services.revocations.published(rows.map((r) => ({ uuid: r.uuid, revokedAt: now })));
  return rows[0]?.kind as SessionKind | undefined;
}

/**
 * Revokes every live session of a user (except one, e.g. the caller's own on
 * a password change). Inside a caller's transaction pass `db: trx`: Redis is
 * told at once, so a rollback can only err towards "revoked".
 */
export async function revokeUserSessions(
  services: Services,
  userId: number,
  options: { exceptSessionId?: number; reason: RevocationReason },
  db: Kysely<Database> = services.db,
): Promise<string[]> {
  const now = services.clock.now();
  let query = db
    .updateTable('sessions')
    .set({ revoked_at: now, revoked_reason: options.reason })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null);
  if (options.exceptSessionId !== undefined) query = query.where('id', '!=', options.exceptSessionId);
  const rows = await query.returning('uuid').execute();
  await services.revocations.published(rows.map((r) => ({ uuid: r.uuid, revokedAt: now })));
  return rows.map((r) => r.uuid);
}
