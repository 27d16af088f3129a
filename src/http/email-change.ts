import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { confirmEmailChange, requestEmailChange, revertEmailChange } from '../flows/email-change.ts';
import { requireUser } from './auth-guard.ts';
import { problems } from './schemas.ts';

const RequestBody = Type.Object(
  {
    new_email: Type.String({ maxLength: 1024, description: 'The address the account should move to' }),
    password: Type.Optional(
      Type.String({
        maxLength: 1024,
        description: 'The current password; not asked of an account without one (made by a provider sign-in)',
      }),
    ),
  },
  { additionalProperties: true },
);

const TokenBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 512, description: 'The token from the mailed link' }) },
  { additionalProperties: true },
);

const Changed = Type.Object({
  email: Type.String({ description: 'The address the account has now' }),
  email_verified: Type.Literal(true),
});

export const emailChangeRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;

  app.post(
    '/me/email',
    {
      // Before the body is parsed: without a valid token the answer is 401, whatever the body holds.
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags: ['account'],
        summary: 'Change the e-mail address',
        description:
          'Checks the current password as a login attempt of this session (a wrong one is 401 INVALID_CREDENTIALS and counts towards the lockout, then 423 ACCOUNT_LOCKED; RATE_LIMIT_REAUTHENTICATE per client IP). With a second factor on, or for an account without a password (made by a provider sign-in, which sends no password), the session must also be recently authenticated (403 REAUTHENTICATION_REQUIRED otherwise; see POST /reauthenticate). ' +
          'Mails a single-use link (24 hours) to the new address as `PUBLIC_URL/account/email/confirm?token=…`; nothing changes until it is followed. When another account has the new address, that address is told instead and the answer is the same 202. The current address is 422 EMAIL_UNCHANGED.',
        security: [{ bearer: [] }, { oauth2: [] }],
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: RequestBody,
        response: {
          202: Type.Object({ message: Type.String() }),
          ...problems(400, 401, 403, 413, 415, 422, 423, 429),
        },
      },
    },
    async (request, reply) =>
      reply.code(202).send(await requestEmailChange(services, request.auth, request.body, request.caller)),
  );

  app.post(
    '/me/email/confirm',
    {
      schema: {
        tags: ['account'],
        summary: 'Confirm a change of e-mail address',
        description:
          'Spends the single-use token (valid 24 hours) mailed to the new address: the account takes the address, verified, and the old address is mailed a link that undoes the change for 7 days. No bearer token needed. An unknown, used or expired token is 422 TOKEN_INVALID_OR_EXPIRED; an address another account took meanwhile is 409 EMAIL_TAKEN.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: TokenBody,
        response: { 200: Changed, ...problems(400, 409, 413, 415, 422) },
      },
    },
    async (request) => confirmEmailChange(services, request.body.token, request.caller),
  );

  app.post(
    '/me/email/revert',
    {
      schema: {
        tags: ['account'],
        summary: 'Undo a change of e-mail address',
        description:
          'Spends the single-use token (valid 7 days) mailed to the old address when the change was made: the account gets the old address back, verified, every session is signed out, and every other change of the address (pending or made) is voided. No bearer token needed. An unknown, used or expired token is 422 TOKEN_INVALID_OR_EXPIRED; an old address another account took meanwhile is 409 EMAIL_TAKEN.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: TokenBody,
        response: {
          200: Type.Object({
            ...Changed.properties,
            sessions_revoked: Type.Integer({ description: 'Sessions signed out' }),
          }),
          ...problems(400, 409, 413, 415, 422),
        },
      },
    },
    async (request) => revertEmailChange(services, request.body.token, request.caller),
  );
};
