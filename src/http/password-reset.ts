import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { requestPasswordReset, resetPassword } from '../flows/password-reset.ts';
import { NewPassword, problems } from './schemas.ts';

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

/** `/forgot-password` mails a link; `/reset-password` spends it. */
export const passwordResetRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/forgot-password',
    {
      config: { rateLimit: 'forgot_password' },
      schema: {
        tags: ['password'],
        summary: 'Mail a password reset link',
        description:
          'Always answers 202 with the same body, whether or not the address has an account. The link is valid for 1 hour, works once, and voids older links.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
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
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: ResetBody,
        response: { 204: Type.Null(), ...problems(400, 413, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      await resetPassword(app.gatehouse, request.body, request.caller);
      return reply.code(204).send(null);
    },
  );
};
