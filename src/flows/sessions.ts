import { canonicalUuid } from '../domain/identifiers.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { type AuthContext, revokeSession } from '../infra/sessions.ts';

export interface SessionView {
  id: string;
  user_agent: string | null;
  ip_address: string | null;
  kind: string;
  client_id?: string;
  client_name?: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  current: boolean;
}

/** The user's live sessions, newest first. */
export function listSessions(services: Services, auth: AuthContext): Promise<SessionView[]> {
  return listUserSessions(services, auth.userId, auth.sessionId);
}

/** A user's live sessions, newest first; `current` marks the one of `currentSessionId` (null: none). */
export async function listUserSessions(
  services: Services,
  userId: number,
  currentSessionId: number | null,
): Promise<SessionView[]> {
  const rows = await services.db
    .selectFrom('sessions')
    .leftJoin('oauth_clients', 'oauth_clients.client_id', 'sessions.oauth_client_id')
    .select([
      'sessions.id',
      'sessions.uuid',
      'sessions.user_agent',
      'sessions.ip_address',
      'sessions.kind',
      'sessions.created_at',
      'sessions.last_used_at',
      'sessions.expires_at',
      'sessions.oauth_client_id',
      'oauth_clients.client_name',
    ])
    .where('sessions.user_id', '=', userId)
    .where('sessions.revoked_at', 'is', null)
    .where('sessions.expires_at', '>', services.clock.now())
    .orderBy('sessions.created_at', 'desc')
    .orderBy('sessions.id', 'desc')
    .execute();
  return rows.map((r) => ({
    id: r.uuid,
    user_agent: r.user_agent,
    ip_address: r.ip_address,
    kind: r.kind,
    ...(r.oauth_client_id ? { client_id: r.oauth_client_id } : {}),
    ...(r.client_name ? { client_name: r.client_name } : {}),
    created_at: r.created_at.toISOString(),
    last_used_at: r.last_used_at.toISOString(),
    expires_at: r.expires_at.toISOString(),
    current: r.id === currentSessionId,
  }));
}

/**
 * Signs one of the user's own sessions out (the API's `DELETE /sessions/{id}`
 * and the account page). False when it is not theirs, unknown, malformed or
 * already revoked: the caller answers not found for all of these alike.
 */
export async function revokeOwnSession(
  services: Services,
  auth: AuthContext,
  sessionUuid: string,
  context: RequestContext,
): Promise<boolean> {
  const id = canonicalUuid(sessionUuid);
  if (id === undefined) return false;
  return services.db.transaction().execute(async (trx) => {
    if ((await revokeSession(services, auth.userId, id, 'revoked_by_user', trx)) === undefined) return false;
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
