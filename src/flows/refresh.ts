import { sql } from 'kysely';
import { type Binder, CachedStatement } from '../db/prepared.ts';
import { AppError } from '../domain/errors.ts';
import { decideRefresh, type RefreshableSession } from '../domain/refresh-reuse.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { AUDIT_COLUMNS, type AuditEntry, auditSelection, recordAudit } from '../infra/audit.ts';
import { type ClaimSources, hostClaims, orgClaimsOf, productClaims } from '../infra/claims.ts';
import type { Services } from '../infra/container.ts';
import {
  amrOf,
  type IssuedSession,
  type SessionAuthentication,
  sessionEnd,
  sessionExpiry,
  tokenPair,
} from '../infra/sessions.ts';
import { sha256Hex } from '../infra/sha256.ts';

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
  const claims = await services.tokens.verify(refreshToken, 'refresh');
  const presented = { subject: claims.sub, tokenHash: sha256Hex(claims.jti) };

  const rotated =
    claims.gen !== undefined && !services.claimsHook
      ? await rotateCurrent(services, { ...presented, sid: claims.sid, generation: claims.gen }, context)
      : undefined;
  if (rotated) return rotated;

  // Everything else (a race lost, a spent token, a revoked or expired session) under the session's row lock.
  const outcome = await services.db.transaction().execute(async (trx) => {
    // The row lock serialises concurrent refreshes of one session: never two live successors.
    const row = await trx
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
        'sessions.amr',
        'sessions.auth_time',
        'users.uuid as user_uuid',
        'users.email',
        'users.is_active',
      ])
      .$if(services.config.accessTokenOrgClaims, (q) => q.select(orgClaimsOf(sql.ref('users.id')).as('org_claims')))
      .$if(services.config.accessTokenMetadataClaims, (q) => q.select(['users.user_metadata', 'users.app_metadata']))
      .where('sessions.uuid', '=', claims.sid)
      .forUpdate('sessions')
      .executeTakeFirst();
    const now = services.clock.now();
    const decision = decideRefresh(
      row && refreshable(services, row),
      presented,
      now,
      services.config.refreshReuseIntervalSeconds * 1000,
    );
    if (decision.kind === 'invalid' || decision.kind === 'expired' || decision.kind === 'disabled') return decision;
    if (!row) return { kind: 'invalid', detail: 'Refresh token is invalid' } as const;
    const user = { uuid: row.user_uuid, email: row.email };
    // Before the session changes: a failing hook rolls nothing forward (and cannot stop a reuse's revocation).
    const extraClaims = decision.kind === 'reuse' ? {} : await accessClaims(services, row, row.uuid);

    if (decision.kind === 'rotate') {
      const generation = row.generation + 1;
      const expiresAt = sessionExpiry(services, row.created_at, now);
      await trx
        .updateTable('sessions')
        .set({
          refresh_token_hash: sha256Hex(services.tokens.refreshTokenId(row.uuid, generation)),
          previous_token_hash: row.refresh_token_hash,
          rotated_at: now,
          generation,
          last_used_at: now,
          expires_at: expiresAt,
        })
        .where('id', '=', row.id)
        .execute();
      await recordAudit(
        trx,
        { action: 'token_refresh', userId: row.user_id, details: { session_uuid: row.uuid, generation } },
        context,
      );
      const tokens = await tokenPair(
        services,
        user,
        { uuid: row.uuid, generation, issuedAt: now, expiresAt, ...authenticationOf(row) },
        now,
        extraClaims,
      );
      return { kind: 'issued', issued: { tokens, session: { id: row.id, uuid: row.uuid, expiresAt } } } as const;
    }

    if (decision.kind === 'successor') {
      // Same successor as the refresh that won the race: byte-identical except with ES256's random signatures.
      const issuedAt = row.rotated_at ?? row.created_at;
      const session = {
        uuid: row.uuid,
        generation: row.generation,
        issuedAt,
        expiresAt: row.expires_at,
        ...authenticationOf(row),
      };
      const tokens = await tokenPair(services, user, session, now, extraClaims);
      const issued = { tokens, session: { id: row.id, uuid: row.uuid, expiresAt: row.expires_at } };
      return { kind: 'issued', issued } as const;
    }

    await trx
      .updateTable('sessions')
      .set({ revoked_at: now, revoked_reason: 'refresh_token_reuse' })
      .where('id', '=', row.id)
      .execute();
    await recordAudit(
      trx,
      {
        action: 'refresh_token_reuse',
        userId: row.user_id,
        details: { session_uuid: row.uuid, generation: row.generation },
      },
      context,
    );
    return { kind: 'reuse', revocation: { uuid: row.uuid, revokedAt: now } } as const;
  });

  switch (outcome.kind) {
    case 'issued':
      return outcome.issued;
    case 'invalid':
      throw new AppError('TOKEN_INVALID', { detail: outcome.detail });
    case 'expired':
      throw new AppError('TOKEN_EXPIRED', { detail: 'The session has expired' });
    case 'disabled':
      throw new AppError('ACCOUNT_DISABLED');
    case 'reuse':
      await services.revocations.published([outcome.revocation]);
      throw new AppError('REFRESH_TOKEN_REUSED', {
        detail: 'This refresh token was already used; the session has been revoked',
      });
  }
}

/**
 * The common refresh, in one statement and no transaction: the presented
 * token (generation `generation`, which it carries) is its live session's
 * current one. The UPDATE swaps it for the next generation's only if it is
 * still the current one, and writes the audit row in the same statement, so
 * of two refreshes racing with one token exactly one swaps; the other gets
 * undefined and takes the locked path, as does anything else (a spent token,
 * a revoked, expired or disabled session). With a claims hook the locked path
 * is taken throughout: the hook answers before the session changes.
 */
async function rotateCurrent(
  services: Services,
  presented: { subject: string; tokenHash: string; sid: string; generation: number },
  context: RequestContext,
): Promise<IssuedSession | undefined> {
  const { config, tokens } = services;
  const now = services.clock.now();
  const generation = presented.generation + 1;
  const shape =
    `${config.accessTokenOrgClaims ? 'orgs' : ''}+${config.accessTokenMetadataClaims ? 'metadata' : ''}` as const;
  const [row] = await swapStatement.execute(services.db, shape, {
    sid: presented.sid,
    subject: presented.subject,
    presentedHash: presented.tokenHash,
    presentedGeneration: presented.generation,
    nextHash: sha256Hex(tokens.refreshTokenId(presented.sid, generation)),
    generation,
    now,
    sliding: new Date(now.getTime() + tokens.refreshLifetimeSeconds * 1000),
    maxAgeMs: config.sessionMaxAgeDays * 86_400_000,
    ip: context.ip,
    userAgent: context.userAgent,
  });
  if (!row) return undefined;
  const session = {
    uuid: presented.sid,
    generation,
    issuedAt: now,
    expiresAt: row.expires_at,
    ...authenticationOf(row),
  };
  const issued = await tokenPair(
    services,
    { uuid: presented.subject, email: row.email },
    session,
    now,
    productClaims(config, row),
  );
  return { tokens: issued, session: { id: row.id, uuid: presented.sid, expiresAt: row.expires_at } };
}

type SwapShape = `${'orgs' | ''}+${'metadata' | ''}`;

interface SwapValues extends Record<string, unknown> {
  sid: string;
  subject: string;
  presentedHash: string;
  presentedGeneration: number;
  nextHash: string;
  generation: number;
  now: Date;
  /** REFRESH_TOKEN_EXPIRE_DAYS from now. */
  sliding: Date;
  /** SESSION_MAX_AGE_DAYS. */
  maxAgeMs: number;
  ip: string | null;
  userAgent: string | null;
}

/** The swap of rotateCurrent, compiled once per shape (which claims the access token carries). */
const swapStatement = new CachedStatement((db, bind: Binder<SwapValues>, shape: SwapShape) => {
  const now = bind('now');
  // sessionExpiry and refreshable() in SQL: the sliding expiry, capped at SESSION_MAX_AGE_DAYS from the login.
  const end = sql<Date>`sessions.created_at + ${bind('maxAgeMs')}::double precision * interval '1 millisecond'`;
  const audit: AuditEntry = {
    action: 'token_refresh',
    details: { session_uuid: bind('sid'), generation: bind('generation') },
  };
  return db
    .with('swapped', (qc) =>
      qc
        .updateTable('sessions')
        .from('users')
        .set({
          refresh_token_hash: bind('nextHash'),
          previous_token_hash: bind('presentedHash'),
          rotated_at: now,
          generation: bind('generation'),
          last_used_at: now,
          expires_at: sql<Date>`least(${bind('sliding')}::timestamptz, ${end})`,
        })
        .whereRef('users.id', '=', 'sessions.user_id')
        .where('sessions.uuid', '=', bind('sid'))
        .where('sessions.refresh_token_hash', '=', bind('presentedHash'))
        .where('sessions.generation', '=', bind('presentedGeneration'))
        .where('sessions.revoked_at', 'is', null)
        .where('sessions.expires_at', '>', now)
        .where(end, '>', now)
        .where('users.uuid', '=', bind('subject'))
        .where('users.is_active', '=', true)
        .returning([
          'sessions.id',
          'sessions.user_id',
          'sessions.expires_at',
          'sessions.amr',
          'sessions.auth_time',
          'users.email',
        ])
        .$if(shape.startsWith('orgs'), (q) => q.returning(orgClaimsOf(sql.ref('users.id')).as('org_claims')))
        .$if(shape.endsWith('metadata'), (q) => q.returning(['users.user_metadata', 'users.app_metadata'])),
    )
    .with('audit', (qc) =>
      qc
        .insertInto('audit_logs')
        .columns(AUDIT_COLUMNS)
        .expression((eb) =>
          eb
            .selectFrom('swapped')
            .select(auditSelection(audit, { ip: bind('ip'), userAgent: bind('userAgent') }, 'swapped.user_id')),
        ),
    )
    .selectFrom('swapped')
    .selectAll();
});

/** The host's claims, then the product's (which win: the hook cannot name them). */
async function accessClaims(
  services: Services,
  row: ClaimSources & { user_id: number; user_uuid: string; email: string; amr: string; auth_time: Date },
  sessionUuid: string,
): Promise<Record<string, unknown>> {
  const host = await hostClaims(services, {
    user: { id: row.user_id, uuid: row.user_uuid, email: row.email },
    session: { uuid: sessionUuid, amr: amrOf(row.amr), auth_time: Math.floor(row.auth_time.getTime() / 1000) },
  });
  return { ...host, ...productClaims(services.config, row) };
}

function authenticationOf(row: { amr: string; auth_time: Date }): SessionAuthentication {
  return { amr: amrOf(row.amr), authTime: row.auth_time };
}

interface SessionRow {
  refresh_token_hash: string;
  previous_token_hash: string | null;
  rotated_at: Date | null;
  created_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
  user_uuid: string;
  is_active: boolean;
}

/** A session that began before SESSION_MAX_AGE_DAYS was lowered ends at the cap all the same. */
function refreshable(services: Services, row: SessionRow): RefreshableSession {
  const end = sessionEnd(services, row.created_at);
  return {
    ownerUuid: row.user_uuid,
    ownerActive: row.is_active,
    currentTokenHash: row.refresh_token_hash,
    previousTokenHash: row.previous_token_hash,
    rotatedAt: row.rotated_at ?? row.created_at,
    expiresAt: row.expires_at < end ? row.expires_at : end,
    revokedAt: row.revoked_at,
  };
}
