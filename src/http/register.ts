import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { AppError } from '../domain/errors.ts';
import { recordRefusedRegistration, register } from '../flows/register.ts';
import { requireCaptcha } from '../infra/captcha.ts';
import { toAppError } from './problem.ts';
import { OptionalText, problems, UserBodyProperties, UserOrganization } from './schemas.ts';
import { TokenResponse } from './token-response.ts';

const Username = Type.String({ description: '3–50 letters, digits, - or _; stored lower-cased; unique' });
const OptionalUsername = Type.Optional(
  Type.String({
    description:
      '3–50 letters, digits, - or _; stored lower-cased; unique. With USERNAME_REQUIRED=false it may be left out (or blank): one is made from the email address (docs/registration.md)',
  }),
);

/** The request body; `username` is required unless USERNAME_REQUIRED=false. */
const registerBody = (usernameRequired: boolean) =>
  Type.Object(
    {
      email: Type.String({ description: 'Trimmed, at most 254 characters, stored lower-cased; unique' }),
      username: usernameRequired ? Username : OptionalUsername,
      password: Type.String({ description: 'Must satisfy the password policy; checked against breach data' }),
      confirm_password: Type.Optional(Type.String({ description: 'When present, must equal password' })),
      first_name: OptionalText,
      last_name: OptionalText,
      name: Type.Optional(
        Type.Union([Type.String(), Type.Null()], { description: 'Full name, at most 200 characters; optional' }),
      ),
      organization_name: OptionalText,
      language_code: Type.Optional(Type.String({ description: 'BCP 47 tag such as en or pt-BR', default: 'en' })),
    },
    { additionalProperties: true },
  );

const RegisteredUser = Type.Object({
  ...UserBodyProperties,
  organization: Type.Union([UserOrganization, Type.Null()]),
  message: Type.String(),
  // With REGISTER_RETURNS_TOKENS=true: the login body's members.
  ...Type.Partial(TokenResponse).properties,
});

export interface RegisterRoutesOptions {
  /** Take registrations without a username whatever USERNAME_REQUIRED says (a COMPAT alias). */
  usernameOptional?: boolean;
}

export const registerRoutes: FastifyPluginAsyncTypebox<RegisterRoutesOptions> = async (app, options) => {
  const usernameOptional = options.usernameOptional === true;
  app.post(
    '/register',
    {
      config: { rateLimit: 'register' },
      // What the route refuses before the flow (the body's shape, the CAPTCHA) is recorded here; the flow
      // records its own refusals. Rate-limited requests are not: each would be a write the limit exists to stop.
      onError: async (request, _reply, error) => {
        const refusal = toAppError(error);
        const beforeFlow = !(error instanceof AppError) || refusal.code === 'CAPTCHA_FAILED';
        if (beforeFlow && refusal.status < 500 && refusal.code !== 'RATE_LIMIT_EXCEEDED') {
          const body = typeof request.body === 'object' && request.body !== null ? request.body : {};
          await recordRefusedRegistration(app.gatehouse, body, request.caller, refusal.code);
        }
      },
      schema: {
        tags: ['registration'],
        summary: 'Create an account',
        description:
          'Creates a user (and optionally an organization with the user as admin) and mails a verification link. Accepts JSON or form bodies. With REGISTRATION_ENUMERATION_SAFE=true every registration that passes validation answers the same 202, taken email or username or not; a conflict is told by mail instead of 409.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: registerBody(app.gatehouse.config.usernameRequired && !usernameOptional),
        response: {
          201: RegisteredUser,
          202: Type.Object(
            { message: Type.String() },
            { description: 'With REGISTRATION_ENUMERATION_SAFE=true: the one answer to every valid registration' },
          ),
          ...problems(400, 409, 413, 415, 422, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      await requireCaptcha(app.gatehouse.captcha, body, request.caller.ip);
      const input = {
        email: body.email,
        username: body.username,
        password: body.password,
        confirm_password: body.confirm_password,
        first_name: body.first_name,
        last_name: body.last_name,
        name: body.name,
        organization_name: body.organization_name,
        language_code: body.language_code,
      };
      const outcome = await register(app.gatehouse, input, request.caller, { signIn: true, usernameOptional });
      if (!('created' in outcome)) return reply.code(202).send(outcome.accepted);
      if (outcome.created.access_token) reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
      return reply.code(201).send(outcome.created);
    },
  );
};
