import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { logout, logoutEverywhere } from '../flows/logout.ts';
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
      await logout(services, request.auth, request.caller);
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
      await logoutEverywhere(services, request.auth, request.caller);
      clearRefreshCookie(reply, services.config, app.prefix);
      return reply.code(204).send(null);
    },
  );
};
