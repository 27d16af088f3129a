import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { changePassword } from '../flows/password-change.ts';
import { requireUser } from './auth-guard.ts';
import { NewPassword, problems } from './schemas.ts';

const ChangeBody = Type.Object(
  { current_password: Type.String({ description: 'The password in use now' }), ...NewPassword },
  { additionalProperties: true },
);

export const passwordChangeRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/change-password',
    {
      // Before the body is parsed: without a valid token the answer is 401, whatever the body holds.
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags: ['password'],
        summary: 'Change the password',
        description:
          'With a second factor on, the session must also be recently authenticated (403 REAUTHENTICATION_REQUIRED otherwise; see POST /reauthenticate). Checks the current password as a login attempt of this session (a wrong one is 401 INVALID_CREDENTIALS and counts towards the lockout, then 423 ACCOUNT_LOCKED; RATE_LIMIT_REAUTHENTICATE per client IP), refuses the last 5 passwords, revokes every other session and mails a notice.',
        security: [{ bearer: [] }, { oauth2: [] }],
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: ChangeBody,
        response: { 204: Type.Null(), ...problems(400, 401, 403, 409, 413, 415, 422, 423, 429) },
      },
    },
    async (request, reply) => {
      await changePassword(app.gatehouse, request.auth, request.body, request.caller);
      return reply.code(204).send(null);
    },
  );
};
