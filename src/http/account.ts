import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { deleteAccount, getAccountOfLiveSession, updateAccount } from '../flows/account.ts';
import { bearerToken, requireUser } from './auth-guard.ts';
import { Metadata, OptionalText, problems, UserBodyProperties, UserOrganization } from './schemas.ts';

const Account = Type.Object({
  ...UserBodyProperties,
  last_login_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  organizations: Type.Array(UserOrganization),
  mfa: Type.Object(
    {
      totp: Type.Boolean({ description: 'An authenticator app is on' }),
      backup_codes_left: Type.Integer({ description: 'Unused backup codes' }),
    },
    { description: 'The second factor' },
  ),
  user_metadata: Metadata("The user's own JSON object, changed with PATCH /me"),
  app_metadata: Metadata('Set by superusers and the host application only'),
});

const AccountUpdate = Type.Object(
  {
    first_name: OptionalText,
    last_name: OptionalText,
    language_code: Type.Optional(Type.String({ description: 'BCP 47 tag such as en or pt-BR' })),
    user_metadata: Type.Optional(
      Type.Unknown({
        description:
          'A JSON object of at most 4096 bytes; replaces the stored one (422 VALIDATION_ERROR otherwise). `app_metadata` is refused (422, code not_allowed).',
      }),
    ),
  },
  { additionalProperties: true, description: 'Only these fields; any other field is refused with 422' },
);

export const accountRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;
  const security: Record<string, string[]>[] = [{ bearer: [] }, { oauth2: [] }];

  app.get(
    '/me',
    {
      schema: {
        tags: ['account'],
        summary: 'The signed-in account, with its organizations and roles',
        security,
        response: { 200: Account, ...problems(401) },
      },
    },
    // No requireUser: the account read checks the session's revocation itself, in the same statement.
    async (request) => {
      const claims = await services.tokens.verify(bearerToken(request), 'access');
      return getAccountOfLiveSession(services, claims.sid, claims.sub);
    },
  );

  app.patch(
    '/me',
    {
      preHandler: requireUser,
      schema: {
        tags: ['account'],
        summary: 'Change first_name, last_name, language_code or user_metadata',
        security,
        body: AccountUpdate,
        response: { 200: Account, ...problems(400, 401, 413, 415, 422) },
      },
    },
    async (request) => updateAccount(services, request.auth, request.body, request.caller),
  );

  app.delete(
    '/me',
    {
      preHandler: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags: ['account'],
        summary: 'Delete the account',
        description:
          'With a second factor on, the session must also be recently authenticated (403 REAUTHENTICATION_REQUIRED otherwise; see POST /reauthenticate). Needs the password, checked as a login attempt of this session: a wrong one is 401 INVALID_CREDENTIALS and counts towards the lockout (then 423 ACCOUNT_LOCKED), and the route shares the RATE_LIMIT_REAUTHENTICATE limit. Refused with 409 while the user is the last admin of an organization that has other members; ' +
          'organizations where the user is the only member are deleted with the account.',
        security,
        body: Type.Object({ password: Type.String() }, { additionalProperties: true }),
        response: {
          204: Type.Null({ description: 'No content' }),
          ...problems(400, 401, 403, 409, 413, 415, 422, 423, 429),
        },
      },
    },
    async (request, reply) => {
      await deleteAccount(services, request.auth, request.body.password, request.caller);
      return reply.code(204).send(null);
    },
  );
};
