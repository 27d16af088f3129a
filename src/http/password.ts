import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { changePassword } from '../flows/password-change.ts';
import { requestPasswordReset, resetPassword } from '../flows/password-reset.ts';
import { requireUser } from './auth-guard.ts';
import { problems } from './schemas.ts';

const NewPassword = {
  new_password: Type.String({ description: 'Must satisfy the password policy; checked against breach data' }),
  confirm_password: Type.String({ description: 'Must equal new_password' }),
};

const ForgotBody = Type.Object(
  { email: Type.String({ maxLength: 1024, description: 'The address of the account' }) },
  { additionalProperties: true },
);

const ResetBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 512, description: 'The token from the mailed link' }),
    ...NewPassword,
  },
  { additionalProperties: true },
);

const ChangeBody = Type.Object(
  { current_password: Type.String({ description: 'The password in use now' }), ...NewPassword },
  { additionalProperties: true },
);

export const passwordRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/forgot-password',
    {
      config: { rateLimit: 'forgot_password' },
      schema: {
        tags: ['password'],
        summary: 'Mail a password reset link',
        description:
          'Always answers 202 with the same body, whether or not the address has an account. The link is valid for 1 hour, works once, and voids older links.',
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        body: ForgotBody,
        response: { 202: Type.Object({ message: Type.String() }), ...problems(400, 413, 415, 422, 429) },
      },
    },
    async (request, reply) =>
      reply.code(202).send(await requestPasswordReset(app.gatehouse, request.body.email, request.caller)),
  );

  app.post(
    '/reset-password',
    {
      schema: {
        tags: ['password'],
        summary: 'Set a new password with a reset token',
        description:
          'Spends the token, sets the password, revokes every session, clears the lockout and marks the email verified.',
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        body: ResetBody,
        response: { 204: Type.Null(), ...problems(400, 413, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      await resetPassword(app.gatehouse, request.body, request.caller);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/change-password',
    {
      // Before the body is parsed: without a valid token the answer is 401, whatever the body holds.
      onRequest: requireUser,
      schema: {
        tags: ['password'],
        summary: 'Change the password',
        description:
          'Checks the current password (a wrong one is 401 INVALID_CREDENTIALS and counts towards the lockout), refuses the last 5 passwords, revokes every other session and mails a notice.',
        security: [{ bearer: [] }, { oauth2: [] }],
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
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
