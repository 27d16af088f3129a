import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  confirmTotp,
  disableTotp,
  reauthenticateSession,
  regenerateBackupCodes,
  startTotpSetup,
} from '../flows/mfa.ts';
import { requireUser } from './auth-guard.ts';
import { problems } from './schemas.ts';

const security: Record<string, string[]>[] = [{ bearer: [] }, { oauth2: [] }];
const tags = ['second factor'];
const FORMS = ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'];

const Code = Type.String({
  maxLength: 64,
  description: 'The 6-digit code of the authenticator app, or an unused backup code (`xxxx-xxxx`)',
});

const BackupCodes = Type.Object({
  backup_codes: Type.Array(Type.String(), {
    minItems: 10,
    maxItems: 10,
    description: 'Shown this once; each works once, in place of a code, case- and hyphen-insensitively',
  }),
});

const WINDOW =
  'The session must be recently authenticated (its login, or POST /reauthenticate, within REAUTHENTICATION_WINDOW_SECONDS): otherwise 403 REAUTHENTICATION_REQUIRED.';
const COUNTED =
  'A wrong code is 401 INVALID_MFA_CODE and, like a wrong password, counts toward the lockout of the account (then 423 ACCOUNT_LOCKED).';

/** `/mfa/*` and `/reauthenticate`: the signed-in user's second factor (TOTP and backup codes). */
export const mfaRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;

  app.post(
    '/mfa/totp/setup',
    {
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags,
        summary: 'Start adding an authenticator app (TOTP)',
        description: `A new secret, as text, as an otpauth:// URL and as a QR code (SVG). Nothing is on until POST /mfa/totp/confirm. ${WINDOW} 409 when an app is already on.`,
        security,
        response: {
          200: Type.Object({
            secret: Type.String({ description: 'Base32, for typing into the app' }),
            otpauth_url: Type.String({ description: 'Key URI (SHA1, 6 digits, 30 s)' }),
            qr_svg: Type.String({ description: 'The otpauth URL as an SVG QR code' }),
          }),
          ...problems(401, 403, 409, 429),
        },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return startTotpSetup(services, request.auth);
    },
  );

  app.post(
    '/mfa/totp/confirm',
    {
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags,
        summary: 'Turn the authenticator app on with a first code',
        description:
          'Answers the 10 backup codes, shown this once. A code that does not match the pending secret is 401 INVALID_MFA_CODE; 409 without a pending setup (or older than 15 minutes).',
        security,
        consumes: FORMS,
        body: Type.Object({ code: Code }, { additionalProperties: true }),
        response: { 200: BackupCodes, ...problems(400, 401, 403, 409, 413, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return confirmTotp(services, request.auth, request.body.code, request.caller);
    },
  );

  app.delete(
    '/mfa/totp',
    {
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags,
        summary: 'Turn the authenticator app off',
        description: `Needs the password and a code (TOTP or backup). ${WINDOW} ${COUNTED} The backup codes go with it; the user is mailed.`,
        security,
        consumes: FORMS,
        body: Type.Object({ password: Type.String(), code: Code }, { additionalProperties: true }),
        response: { 204: Type.Null(), ...problems(400, 401, 403, 409, 413, 415, 422, 423, 429) },
      },
    },
    async (request, reply) => {
      await disableTotp(services, request.auth, request.body, request.caller);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/mfa/backup-codes',
    {
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags,
        summary: 'Replace the backup codes',
        description: `A fresh set of 10; the old set stops working. Needs a code (TOTP or backup). ${WINDOW} ${COUNTED}`,
        security,
        consumes: FORMS,
        body: Type.Object({ code: Code }, { additionalProperties: true }),
        response: { 200: BackupCodes, ...problems(400, 401, 403, 409, 413, 415, 422, 423, 429) },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return regenerateBackupCodes(services, request.auth, request.body, request.caller);
    },
  );

  app.post(
    '/reauthenticate',
    {
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags,
        summary: 'Prove it is you again (step-up)',
        description: `The password, and \`code\` when a second factor is on. The session is then recently authenticated for REAUTHENTICATION_WINDOW_SECONDS (default 300): setup and removal of the second factor, new backup codes, and (with a second factor on) change-password and account deletion need that. A wrong password is 401 INVALID_CREDENTIALS; ${COUNTED}`,
        security,
        consumes: FORMS,
        body: Type.Object({ password: Type.String(), code: Type.Optional(Code) }, { additionalProperties: true }),
        response: {
          200: Type.Object({
            auth_time: Type.String({ format: 'date-time' }),
            expires_at: Type.String({ format: 'date-time', description: 'End of the recent-authentication window' }),
          }),
          ...problems(400, 401, 403, 413, 415, 422, 423, 429),
        },
      },
    },
    async (request) => reauthenticateSession(services, request.auth, request.body, request.caller),
  );
};
