import { randomUUID } from 'node:crypto';
import type { Insertable, Kysely } from 'kysely';
import { executePrepared } from '../db/prepared.ts';
import type { Database, SessionsTable } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { AUDIT_COLUMNS, type AuditEntry, auditSelection, recordAudit } from './audit.ts';
import type { Services } from './container.ts';
import { sha256Hex } from './tokens.ts';

export type SessionKind = 'api' | 'browser';

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
  | 'admin';

/** A session about to be inserted: its row, and what its first tokens need. */
export interface NewSession {
  row: Insertable<SessionsTable>;
  uuid: string;
  issuedAt: Date;
  expiresAt: Date;
}

/** The sessions row of a new login; the uuid is chosen here so that the tokens can name it. */
export function newSession(
  services: Services,
  user: SessionUser,
  context: RequestContext,
  options: { kind: SessionKind },
): NewSession {
  const now = services.clock.now();
  const uuid = randomUUID();
  const expiresAt = new Date(now.getTime() + services.tokens.refreshLifetimeSeconds * 1000);
  return {
    uuid,
    issuedAt: now,
    expiresAt,
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
    },
  };
}

/** The first token pair of a session whose row (id `sessionId`) is written. */
export async function startedSession(
  services: Services,
  user: SessionUser,
  session: NewSession,
  sessionId: number,
): Promise<IssuedSession> {
  services.revocations.remember(session.uuid, { id: sessionId, userId: user.id });
  const tokens = await tokenPair(
    services,
    user,
    { uuid: session.uuid, generation: 0, issuedAt: session.issuedAt, expiresAt: session.expiresAt },
    session.issuedAt,
  );
  return { tokens, session: { id: sessionId, uuid: session.uuid, expiresAt: session.expiresAt } };
}

/**
 * Starts a session for a user whose credentials were already checked and
 * returns its first token pair. Used by password login, the HTML pages'
 * cookie login and any flow that signs a user in.
 */
export async function issueSession(
  services: Services,
  user: SessionUser,
  context: RequestContext,
  options: { kind: SessionKind },
  db: Kysely<Database> = services.db,
): Promise<IssuedSession> {
  const session = newSession(services, user, context, options);
  const row = await db.insertInto('sessions').values(session.row).returning('id').executeTakeFirstOrThrow();
  return startedSession(services, user, session, row.id);
}

async function tokenPair(
  services: Services,
  user: { uuid: string; email: string },
  session: { uuid: string; generation: number; issuedAt: Date; expiresAt: Date },
  now: Date,
): Promise<TokenPair> {
  const { tokens } = services;
  const [accessToken, refreshToken] = await Promise.all([
    tokens.signAccessToken({ sub: user.uuid, email: user.email, sid: session.uuid }, now),
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
 * Verifies an access token and that its session is live. Throws
 * TOKEN_EXPIRED or TOKEN_INVALID (revoked sessions included).
 */
export async function authenticateAccessToken(services: Services, token: string): Promise<AuthContext> {
  const claims = await services.tokens.verify(token, 'access');
  const session = await services.revocations.liveSession(claims.sid);
  if (!session) throw new AppError('TOKEN_INVALID', { detail: 'The session has been revoked' });
  return {
    userId: session.userId,
    userUuid: claims.sub,
    email: claims.email as string,
    sessionId: session.id,
    sessionUuid: claims.sid,
  };
}

const invalidGrant = (detail: string) => new AppError('TOKEN_INVALID', { detail, oauthError: 'invalid_grant' });

/**
 * Exchanges a refresh token for a new pair and spends the old one. A token
 * spent less than REFRESH_REUSE_INTERVAL_SECONDS ago gets the session's
 * current successor again (parallel tabs racing each other); a spent token
 * presented later revokes the whole session: it was probably stolen.
 */
export async function rotateRefreshToken(
  services: Services,
  refreshToken: string,
  context: RequestContext,
): Promise<IssuedSession> {
  let claims: Awaited<ReturnType<Services['tokens']['verify']>>;
  try {
    claims = await services.tokens.verify(refreshToken, 'refresh');
  } catch (error) {
    if (error instanceof AppError)
      throw new AppError(error.code, { detail: error.detail, oauthError: 'invalid_grant' });
    throw error;
  }
  const presented = sha256Hex(claims.jti);
  const reuseIntervalMs = services.config.refreshReuseIntervalSeconds * 1000;

  const rotated = await rotateCurrent(services, claims, presented, context);
  if (rotated) return rotated;

  // Everything else (a race lost, a spent token, a revoked or expired session) under the session's row lock.
  const outcome = await services.db.transaction().execute(async (trx) => {
    // The row lock serialises concurrent refreshes of one session: never two live successors.
    const session = await trx
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select([
        'sessions.id',
        'sessions.uuid',
        'sessions.user_id',
        'sessions.refresh_token_hash',
        'sessions.previous_token_hash',
        'sessions.rotated_at',
        'sessions.generation',
        'sessions.created_at',
        'sessions.expires_at',
        'sessions.revoked_at',
        'users.uuid as user_uuid',
        'users.email',
        'users.is_active',
      ])
      .where('sessions.uuid', '=', claims.sid)
      .forUpdate('sessions')
      .executeTakeFirst();
    const now = services.clock.now();
    if (!session || session.user_uuid !== claims.sub)
      return { kind: 'invalid', detail: 'Refresh token is invalid' } as const;
    if (session.revoked_at !== null) return { kind: 'invalid', detail: 'The session has been revoked' } as const;
    if (session.expires_at.getTime() <= now.getTime()) {
      return { kind: 'invalid', detail: 'The session has expired' } as const;
    }
    if (!session.is_active) return { kind: 'disabled' } as const;
    const user = { uuid: session.user_uuid, email: session.email };

    if (presented === session.refresh_token_hash) {
      const generation = session.generation + 1;
      const expiresAt = new Date(now.getTime() + services.tokens.refreshLifetimeSeconds * 1000);
      await trx
        .updateTable('sessions')
        .set({
          refresh_token_hash: sha256Hex(services.tokens.refreshTokenId(session.uuid, generation)),
          previous_token_hash: session.refresh_token_hash,
          rotated_at: now,
          generation,
          last_used_at: now,
          expires_at: expiresAt,
        })
        .where('id', '=', session.id)
        .execute();
      await recordAudit(
        trx,
        { action: 'token_refresh', userId: session.user_id, details: { session_uuid: session.uuid, generation } },
        context,
      );
      const tokens = await tokenPair(services, user, { uuid: session.uuid, generation, issuedAt: now, expiresAt }, now);
      return {
        kind: 'rotated',
        issued: { tokens, session: { id: session.id, uuid: session.uuid, expiresAt } },
      } as const;
    }

    const rotatedAt = session.rotated_at ?? session.created_at;
    if (presented === session.previous_token_hash && now.getTime() - rotatedAt.getTime() <= reuseIntervalMs) {
      // Same successor as the refresh that won the race: byte-identical except with ES256's random signatures.
      const tokens = await tokenPair(
        services,
        user,
        { uuid: session.uuid, generation: session.generation, issuedAt: rotatedAt, expiresAt: session.expires_at },
        now,
      );
      return {
        kind: 'rotated',
        issued: { tokens, session: { id: session.id, uuid: session.uuid, expiresAt: session.expires_at } },
      } as const;
    }

    // A validly signed token of this session that is no longer current: spent earlier, presented again.
    await trx
      .updateTable('sessions')
      .set({ revoked_at: now, revoked_reason: 'refresh_token_reuse' })
      .where('id', '=', session.id)
      .execute();
    await recordAudit(
      trx,
      {
        action: 'refresh_token_reuse',
        userId: session.user_id,
        details: { session_uuid: session.uuid, generation: session.generation },
      },
      context,
    );
    return { kind: 'reused', revocation: { uuid: session.uuid, revokedAt: now } } as const;
  });

  switch (outcome.kind) {
    case 'rotated':
      return outcome.issued;
    case 'invalid':
      throw invalidGrant(outcome.detail);
    case 'disabled':
      throw new AppError('ACCOUNT_DISABLED', { oauthError: 'invalid_grant' });
    case 'reused':
      await services.revocations.published([outcome.revocation]);
      throw new AppError('REFRESH_TOKEN_REUSED', {
        detail: 'This refresh token was already used; the session has been revoked',
        oauthError: 'invalid_grant',
      });
  }
}

/**
 * The common refresh, in two statements and no transaction: the presented
 * token is its live session's current one. The read is followed by an UPDATE
 * that swaps the token only if it is still the current one (and writes the
 * audit row in the same statement), so of two refreshes racing with one
 * token exactly one swaps; the other gets undefined and takes the locked path.
 */
async function rotateCurrent(
  services: Services,
  claims: { sid: string; sub: string },
  presented: string,
  context: RequestContext,
): Promise<IssuedSession | undefined> {
  const db = services.db;
  const [session] = await executePrepared(
    db,
    db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select([
        'sessions.id',
        'sessions.user_id',
        'sessions.refresh_token_hash',
        'sessions.generation',
        'sessions.expires_at',
        'sessions.revoked_at',
        'users.uuid as user_uuid',
        'users.email',
        'users.is_active',
      ])
      .where('sessions.uuid', '=', claims.sid),
  );
  const now = services.clock.now();
  if (
    !session ||
    session.refresh_token_hash !== presented ||
    session.revoked_at !== null ||
    session.expires_at.getTime() <= now.getTime() ||
    session.user_uuid !== claims.sub ||
    !session.is_active
  ) {
    return undefined;
  }
  const generation = session.generation + 1;
  const expiresAt = new Date(now.getTime() + services.tokens.refreshLifetimeSeconds * 1000);
  const audit: AuditEntry = {
    action: 'token_refresh',
    userId: session.user_id,
    details: { session_uuid: claims.sid, generation },
  };
  const [swapped] = await executePrepared(
    db,
    db
      .with('swapped', (qc) =>
        qc
          .updateTable('sessions')
          .set({
            refresh_token_hash: sha256Hex(services.tokens.refreshTokenId(claims.sid, generation)),
            previous_token_hash: presented,
            rotated_at: now,
            generation,
            last_used_at: now,
            expires_at: expiresAt,
          })
          .where('id', '=', session.id)
          .where('refresh_token_hash', '=', presented)
          .where('revoked_at', 'is', null)
          .returning('id'),
      )
      .with('audit', (qc) =>
        qc
          .insertInto('audit_logs')
          .columns(AUDIT_COLUMNS)
          .expression((eb) => eb.selectFrom('swapped').select(auditSelection(audit, context))),
      )
      .selectFrom('swapped')
      .select('id'),
  );
  if (!swapped) return undefined;
  const user = { uuid: session.user_uuid, email: session.email };
  const tokens = await tokenPair(services, user, { uuid: claims.sid, generation, issuedAt: now, expiresAt }, now);
  return { tokens, session: { id: session.id, uuid: claims.sid, expiresAt } };
}

/** Revokes one session of a user. False when it is not theirs, unknown, or already revoked. */
export async function revokeSession(
  services: Services,
  userId: number,
  sessionUuid: string,
  reason: RevocationReason,
  db: Kysely<Database> = services.db,
): Promise<boolean> {
  const now = services.clock.now();
  const rows = await db
    .updateTable('sessions')
    .set({ revoked_at: now, revoked_reason: reason })
    .where('user_id', '=', userId)
    .where('uuid', '=', sessionUuid)
    .where('revoked_at', 'is', null)
    .returning('uuid')
    .execute();
  await services.revocations.published(rows.map((r) => ({ uuid: r.uuid, revokedAt: now })));
  return rows.length > 0;
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

export interface SessionView {
  id: string;
  user_agent: string | null;
  ip_address: string | null;
  kind: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  current: boolean;
}

/** The user's live sessions, newest first. */
export async function listSessions(services: Services, auth: AuthContext): Promise<SessionView[]> {
  const rows = await services.db
    .selectFrom('sessions')
    .select(['id', 'uuid', 'user_agent', 'ip_address', 'kind', 'created_at', 'last_used_at', 'expires_at'])
    .where('user_id', '=', auth.userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', services.clock.now())
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
  return rows.map((r) => ({
    id: r.uuid,
    user_agent: r.user_agent,
    ip_address: r.ip_address,
    kind: r.kind,
    created_at: r.created_at.toISOString(),
    last_used_at: r.last_used_at.toISOString(),
    expires_at: r.expires_at.toISOString(),
    current: r.id === auth.sessionId,
  }));
}
