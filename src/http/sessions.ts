import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { AppError } from '../domain/errors.ts';
import { listSessions, revokeOwnSession } from '../flows/sessions.ts';
import { requireUser } from './auth-guard.ts';
import { problems } from './schemas.ts';

export const SessionView = Type.Object({
  id: Type.String({ format: 'uuid', description: 'The session id to DELETE' }),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  ip_address: Type.Union([Type.String(), Type.Null()]),
  kind: Type.String({
    description:
      '`api` (token login), `browser` (HTML pages) or `oauth` (the tokens a product got through the OpenID provider)',
  }),
  client_id: Type.Optional(Type.String({ description: 'For `oauth`: the client (product) the tokens were issued to' })),
  client_name: Type.Optional(Type.String({ description: "For `oauth`: the client's name" })),
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: Type.String({ format: 'date-time', description: 'Login or last refresh' }),
  expires_at: Type.String({ format: 'date-time' }),
  current: Type.Boolean({ description: 'The session of the token making this request' }),
});

export const sessionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;
  const security: Record<string, string[]>[] = [{ bearer: [] }, { oauth2: [] }];

  app.get(
    '/sessions',
    {
      preHandler: requireUser,
      schema: {
        tags: ['sessions'],
        summary: "The caller's live sessions, newest first",
        security,
        response: { 200: Type.Array(SessionView), ...problems(401) },
      },
    },
    async (request) => listSessions(services, request.auth),
  );

  app.delete(
    '/sessions/:id',
    {
      preHandler: requireUser,
      schema: {
        tags: ['sessions'],
        summary: 'Revoke one of your sessions',
        description: "404 for a session that is not the caller's, unknown or already revoked.",
        security,
        params: Type.Object({ id: Type.String() }),
        response: { 204: Type.Null({ description: 'No content' }), ...problems(401, 404) },
      },
    },
    async (request, reply) => {
      const revoked = await revokeOwnSession(services, request.auth, request.params.id, request.caller);
      if (!revoked) throw new AppError('NOT_FOUND', { detail: 'No such session' });
      return reply.code(204).send(null);
    },
  );
};
