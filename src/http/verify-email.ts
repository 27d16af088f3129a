import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { resendVerification, verifyEmail } from '../flows/verify-email.ts';
import { problems } from './schemas.ts';

const TokenBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 512, description: 'The token from the mailed link' }) },
  { additionalProperties: true },
);

const EmailBody = Type.Object(
  { email: Type.String({ maxLength: 1024, description: 'The address the account was registered with' }) },
  { additionalProperties: true },
);

const Accepted = Type.Object({ message: Type.String() });

export const verifyEmailRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/verify-email',
    {
      schema: {
        tags: ['email verification'],
        summary: 'Confirm an email address',
        description:
          'Spends the single-use token (valid 24 hours) mailed as `PUBLIC_URL/verify-email?token=…` and marks the address verified.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: TokenBody,
        response: { 200: Type.Object({ email_verified: Type.Literal(true) }), ...problems(400, 413, 415, 422, 429) },
      },
    },
    async (request) => verifyEmail(app.gatehouse, request.body.token, request.caller),
  );

  app.post(
    '/resend-verification',
    {
      config: { rateLimit: 'resend_verification' },
      schema: {
        tags: ['email verification'],
        summary: 'Mail a new verification link',
        description:
          'Always answers 202 with the same body, whether or not the address has an account awaiting verification. A new link voids the older ones.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: EmailBody,
        response: { 202: Accepted, ...problems(400, 413, 415, 422, 429) },
      },
    },
    async (request, reply) =>
      reply.code(202).send(await resendVerification(app.gatehouse, request.body.email, request.caller)),
  );
};
