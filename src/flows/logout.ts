import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { type AuthContext, revokeSession, revokeUserSessions } from '../infra/sessions.ts';

/**
 * Logs the caller's session out (the API's `/logout` and the pages' "Log
 * out"): revoked on the server, not only forgotten by the client, on every
 * instance from the next request.
 */
export async function logout(services: Services, auth: AuthContext, context: RequestContext): Promise<void> {
  await services.db.transaction().execute(async (trx) => {
    const kind = await revokeSession(services, auth.userId, auth.sessionUuid, 'logout', trx);
    if (kind === undefined) return;
    await recordAudit(
      trx,
      { action: 'logout', userId: auth.userId, details: { session_uuid: auth.sessionUuid, kind } },
      context,
    );
  });
}

/** Logs out every session of the user, the caller's included. */
export async function logoutEverywhere(services: Services, auth: AuthContext, context: RequestContext): Promise<void> {
  await services.db.transaction().execute(async (trx) => {
    const revoked = await revokeUserSessions(services, auth.userId, { reason: 'logout_all' }, trx);
    await recordAudit(
      trx,
      {
        action: 'logout',
        userId: auth.userId,
        details: { session_uuid: auth.sessionUuid, all_sessions: true, sessions_revoked: revoked.length },
      },
      context,
    );
  });
}
