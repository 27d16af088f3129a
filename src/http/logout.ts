import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { recordAudit } from '../infra/audit.ts';
import { revokeSession, revokeUserSessions } from '../infra/sessions.ts';
import { requireUser } from './auth-guard.ts';
import { problems } from './schemas.ts';
import { clearRefreshCookie } from './token-response.ts';

const NoContent = Type.Null({ description: 'No content' });

export const logoutRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;

  app.post(
    '/logout',
    {
      preHandler: requireUser,
      schema: {
        tags: ['tokens'],
        summary: 'Log out: revoke this session',
        description:
          "Revokes the caller's session: its refresh token at once, and its access tokens on every instance from the next request.",
        security: [{ bearer: [] }, { oauth2: [] }],
        response: { 204: NoContent, ...problems(401) },
      },
    },
    async (request, reply) => {
      const { auth } = request;
      await services.db.transaction().execute(async (trx) => {
        if (await revokeSession(services, auth.userId, auth.sessionUuid, 'logout', trx)) {
          await recordAudit(
            trx,
            { action: 'logout', userId: auth.userId, details: { session_uuid: auth.sessionUuid } },
            request.caller,
          );
        }
      });
      clearRefreshCookie(reply, services.config, app.prefix);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/logout-all',
    {
      preHandler: requireUser,
      schema: {
        tags: ['tokens'],
        summary: 'Log out everywhere: revoke every session of the user',
        security: [{ bearer: [] }, { oauth2: [] }],
        response: { 204: NoContent, ...problems(401) },
      },
    },
    async (request, reply) => {
      const { auth } = request;
      await services.db.transaction().execute(async (trx) => {
        const revoked = await revokeUserSessions(services, auth.userId, { reason: 'logout_all' }, trx);
        await recordAudit(
          trx,
          {
            action: 'logout',
            userId: auth.userId,
            details: { session_uuid: auth.sessionUuid, all_sessions: true, sessions_revoked: revoked.length },
          },
          request.caller,
        );
      });
      clearRefreshCookie(reply, services.config, app.prefix);
      return reply.code(204).send(null);
    },
  );
};
