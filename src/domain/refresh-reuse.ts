/**
 * What a presented refresh token means for its session: the rules of
 * rotation and reuse detection, without I/O. The caller reads the session
 * (under its row lock when it will act on a race or a reuse) and does what
 * the decision says.
 */

/** The session as the refresh read it. */
export interface RefreshableSession {
  ownerUuid: string;
  ownerActive: boolean;
  currentTokenHash: string;
  previousTokenHash: string | null;
  /** When the current token replaced the previous one (the session's start before any rotation). */
  rotatedAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
}

/** The presented token, once its signature checked out. */
export interface PresentedRefresh {
  subject: string;
  tokenHash: string;
}

export type RefreshDecision =
  | { kind: 'invalid'; detail: string }
  /** Past its end (REFRESH_TOKEN_EXPIRE_DAYS since the last refresh, or SESSION_MAX_AGE_DAYS since the login). */
  | { kind: 'expired' }
  | { kind: 'disabled' }
  /** The current token: spend it, issue the next generation. */
  | { kind: 'rotate' }
  /** The token spent just now by a racing refresh (parallel tabs): hand out the same successor again. */
  | { kind: 'successor' }
  /** A token of this session spent earlier and presented again: probably stolen, revoke the session. */
  | { kind: 'reuse' };

export function decideRefresh(
  session: RefreshableSession | undefined,
  presented: PresentedRefresh,
  now: Date,
  reuseIntervalMs: number,
): RefreshDecision {
  if (!session || session.ownerUuid !== presented.subject)
    return { kind: 'invalid', detail: 'Refresh token is invalid' };
  if (session.revokedAt !== null) return { kind: 'invalid', detail: 'The session has been revoked' };
  // The same answer as a refresh token past its `exp`: the session ended, log in again.
  if (session.expiresAt.getTime() <= now.getTime()) return { kind: 'expired' };
  if (!session.ownerActive) return { kind: 'disabled' };
  if (presented.tokenHash === session.currentTokenHash) return { kind: 'rotate' };
  const withinGrace = now.getTime() - session.rotatedAt.getTime() <= reuseIntervalMs;
  if (presented.tokenHash === session.previousTokenHash && withinGrace) return { kind: 'successor' };
  return { kind: 'reuse' };
}
