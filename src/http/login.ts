import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AppError, type FieldError } from '../domain/errors.ts';
import { loginWithPassword } from '../flows/login.ts';
import { completeMfaLogin } from '../flows/login-mfa.ts';
import { rotateRefreshToken } from '../flows/refresh.ts';
import { captchaToken } from '../infra/captcha.ts';
import { setDeviceCookie, trustedDevice } from './device-cookie.ts';
import { signedInUserId } from './login-user.ts';
import { MULTIPART } from './multipart.ts';
import { problems } from './schemas.ts';
import { oauthErrorHandler, sendTokens, TokenResponse } from './token-response.ts';

const LoginBody = Type.Object(
  {
    grant_type: Type.Optional(
      Type.String({ description: '`password` (default), or `refresh_token` to refresh on this same endpoint' }),
    ),
    username: Type.Optional(Type.String({ description: 'Username or email' })),
    email: Type.Optional(Type.String({ description: 'JSON alternative to username' })),
    password: Type.Optional(Type.String()),
    refresh_token: Type.Optional(Type.String({ description: 'With grant_type=refresh_token' })),
    scope: Type.Optional(Type.String({ description: 'Ignored' })),
  },
  { additionalProperties: true },
);

const LoginJsonBody = Type.Object(
  {
    username: Type.Optional(Type.String({ description: 'Username or email' })),
    email: Type.Optional(Type.String({ description: 'Alternative to username' })),
    password: Type.String(),
  },
  { additionalProperties: true },
);

type LoginFields = { username?: string; email?: string; password?: string };

function credentials(body: LoginFields): { identifier: string; password: string; captchaToken: string | undefined } {
  const errors: FieldError[] = [];
  const identifier = body.username ?? body.email;
  if (identifier === undefined) {
    errors.push({ field: 'username', message: 'Username or email is required', code: 'required' });
  }
  if (body.password === undefined) errors.push({ field: 'password', message: 'Field is required', code: 'required' });
  if (errors.length > 0) throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  return { identifier: identifier as string, password: body.password as string, captchaToken: captchaToken(body) };
}

const description =
  'The OAuth2 password grant (RFC 6749 §4.3). Errors are problem+json and also carry the RFC 6749 `error` member. ' +
  'Unknown user and wrong password get the same answer. With a second factor on, the right password answers ' +
  '403 MFA_REQUIRED (`error: "mfa_required"`) with an `mfa_token` (single use, 5 minutes) and `methods`: ' +
  'complete the login with POST /login/mfa. No session exists before then.';

const MfaLoginBody = Type.Object(
  {
    mfa_token: Type.String({ maxLength: 128, description: 'From the 403 MFA_REQUIRED answer of POST /login' }),
    code: Type.Optional(Type.String({ maxLength: 64, description: 'The 6-digit code of the authenticator app' })),
    backup_code: Type.Optional(Type.String({ maxLength: 64, description: 'Or an unused backup code' })),
    webauthn_response: Type.Optional(
      Type.Object(
        {},
        { additionalProperties: true, description: "Or a passkey's answer to POST /login/mfa/webauthn-options" },
      ),
    ),
  },
  { additionalProperties: true },
);

export interface LoginRoutesOptions {
  /** Where the API is mounted (the refresh cookie's path); default: this plugin's prefix. */
  apiPrefix?: string;
  /** Also serve POST /login/json. Default true. */
  jsonAlias?: boolean;
}

export const loginRoutes: FastifyPluginAsyncTypebox<LoginRoutesOptions> = async (app, options) => {
  const { config } = app.gatehouse;
  const apiPrefix = options.apiPrefix ?? app.prefix;
  const context = (request: FastifyRequest) => request.caller;

  /** The password grant; a success also (re)sets the device cookie that earns this browser its own lockout allowance. */
  async function logIn(request: FastifyRequest, reply: FastifyReply, body: LoginFields): Promise<FastifyReply> {
    const { clock } = app.gatehouse;
    const device = trustedDevice(request, config, clock.now());
    const issued = await loginWithPassword(app.gatehouse, { ...credentials(body), device }, context(request));
    setDeviceCookie(reply, config, clock.now(), device, issued.userId);
    signedInUserId.set(request, issued.userId);
    return sendTokens(reply, issued, config, apiPrefix);
  }

  app.post(
    '/login',
    {
      config: { rateLimit: 'login' },
      errorHandler: oauthErrorHandler,
      schema: {
        tags: ['tokens'],
        summary: 'Log in (OAuth2 password grant)',
        description: `${description} Accepts form or JSON bodies; \`grant_type=refresh_token\` refreshes like POST /refresh.`,
        consumes: ['application/x-www-form-urlencoded', 'multipart/form-data', 'application/json'],
        body: LoginBody,
        response: { 200: TokenResponse, ...problems(400, 401, 403, 413, 415, 422, 423, 429, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const grant = body.grant_type ?? 'password';
      if (grant === 'refresh_token') {
        if (body.refresh_token === undefined || body.refresh_token === '') {
          throw new AppError('VALIDATION_ERROR', {
            detail: 'One or more fields are invalid',
            errors: [{ field: 'refresh_token', message: 'Field is required', code: 'required' }],
          });
        }
        const issued = await rotateRefreshToken(app.gatehouse, body.refresh_token, context(request));
        return sendTokens(reply, issued, config, apiPrefix);
      }
      if (grant !== 'password') {
        throw new AppError('MALFORMED_REQUEST', {
          detail: 'grant_type must be password or refresh_token',
          oauthError: 'unsupported_grant_type',
        });
      }
      return logIn(request, reply, body);
    },
  );

  app.post(
    '/login/mfa',
    {
      config: { rateLimit: 'login' },
      errorHandler: oauthErrorHandler,
      schema: {
        tags: ['tokens'],
        summary: 'Complete a login with the second factor',
        description:
          '`{"mfa_token", "code"}` or `{"mfa_token", "backup_code"}` → the login body; the access token carries `amr: ["pwd","otp"]` (or `["pwd","backup_code"]`). ' +
          'With a passkey: `{"mfa_token", "webauthn_response"}` after POST /login/mfa/webauthn-options, `amr: ["pwd","webauthn"]`. ' +
          'A wrong code is 401 INVALID_MFA_CODE and counts toward the lockout of the account; the token may be tried again until it expires. ' +
          'A spent, expired or unknown `mfa_token` is 401 TOKEN_INVALID.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: MfaLoginBody,
        response: { 200: TokenResponse, ...problems(400, 401, 403, 413, 415, 422, 423, 429) },
      },
    },
    async (request, reply) => {
      const { clock } = app.gatehouse;
      const issued = await completeMfaLogin(app.gatehouse, request.body, context(request), 'api');
      setDeviceCookie(reply, config, clock.now(), trustedDevice(request, config, clock.now()), issued.userId);
      return sendTokens(reply, issued, config, apiPrefix);
    },
  );

  if (options.jsonAlias === false) return;
  // JSON only: without the form parser in this scope a form body answers 415.
  await app.register(async (scope) => {
    scope.removeContentTypeParser(['application/x-www-form-urlencoded', MULTIPART]);
    const json = scope.withTypeProvider<TypeBoxTypeProvider>();
    json.post(
      '/login/json',
      {
        config: { rateLimit: 'login' },
        errorHandler: oauthErrorHandler,
        schema: {
          tags: ['tokens'],
          summary: 'Log in with a JSON body',
          description: `${description} JSON-only alias of POST /login: \`{"username"|"email", "password"}\`.`,
          body: LoginJsonBody,
          response: { 200: TokenResponse, ...problems(400, 401, 403, 413, 415, 422, 423, 429, 503) },
        },
      },
      async (request, reply) => {
        return logIn(request, reply, request.body);
      },
    );
  });
};
