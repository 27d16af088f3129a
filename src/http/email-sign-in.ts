import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  completeEmailSignIn,
  EMAIL_SIGN_IN_CODE_TRIES,
  EMAIL_SIGN_IN_TTL_SECONDS,
  requestEmailSignIn,
} from '../flows/email-sign-in.ts';
import { setDeviceCookie, trustedDevice } from './device-cookie.ts';
import { problems } from './schemas.ts';
import { oauthErrorHandler, sendTokens, TokenResponse } from './token-response.ts';

const RequestBody = Type.Object(
  { email: Type.String({ maxLength: 1024, description: 'The address of the account' }) },
  { additionalProperties: true },
);

const VerifyBody = Type.Object(
  {
    token: Type.Optional(Type.String({ maxLength: 512, description: 'The token of the mailed link' })),
    email: Type.Optional(
      Type.String({ maxLength: 1024, description: 'With `code`: the address the code was mailed to' }),
    ),
    code: Type.Optional(Type.String({ maxLength: 64, description: 'The mailed 6-digit code' })),
  },
  { additionalProperties: true },
);

const minutes = EMAIL_SIGN_IN_TTL_SECONDS / 60;

/** E-mail sign-in (EMAIL_SIGN_IN): `/login/email` mails a link and/or a code; `/login/email/verify` spends one. */
export const emailSignInRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { config } = app.gatehouse;

  app.post(
    '/login/email',
    {
      config: { rateLimit: 'email_sign_in' },
      schema: {
        tags: ['tokens'],
        summary: 'Mail a sign-in link or code',
        description:
          `Always answers 202 with the same body, whether or not the address has an active account. Mails a link (EMAIL_SIGN_IN=link), a 6-digit code (code) or both; each is valid ${minutes} minutes, works once, and voids the ones mailed before. ` +
          'Limited per client IP (RATE_LIMIT_EMAIL_SIGN_IN) and per address whatever the IP (EMAIL_SIGN_IN_LIMIT_PER_ADDRESS): 429 past either.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: RequestBody,
        response: { 202: Type.Object({ message: Type.String() }), ...problems(400, 413, 415, 422, 429) },
      },
    },
    async (request, reply) =>
      reply.code(202).send(await requestEmailSignIn(app.gatehouse, request.body.email, request.caller)),
  );

  app.post(
    '/login/email/verify',
    {
      config: { rateLimit: 'login' },
      errorHandler: oauthErrorHandler,
      schema: {
        tags: ['tokens'],
        summary: 'Sign in with a mailed link or code',
        description:
          '`{"token"}` (from the link) or `{"email", "code"}` → the login body; the access token carries `amr: ["email"]`, and the address counts as verified. ' +
          'With a second factor on: 403 MFA_REQUIRED with an `mfa_token`, completed by POST /login/mfa (then `amr: ["email","otp"]`). ' +
          `A spent, expired or unknown token, a wrong code, or a code after ${EMAIL_SIGN_IN_CODE_TRIES} wrong tries is 401 EMAIL_SIGN_IN_INVALID; a disabled account 403 ACCOUNT_DISABLED.`,
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: VerifyBody,
        response: { 200: TokenResponse, ...problems(400, 401, 403, 413, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      const { clock } = app.gatehouse;
      const device = trustedDevice(request, config, clock.now());
      const issued = await completeEmailSignIn(app.gatehouse, request.body, request.caller, { kind: 'api', device });
      setDeviceCookie(reply, config, clock.now(), device, issued.userId);
      return sendTokens(reply, issued, config, app.prefix);
    },
  );
};
