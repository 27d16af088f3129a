import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Config } from '../config.ts';
import { AppError } from '../domain/errors.ts';
import { finishSso, listIdentities, ssoProvider, startSso, unlinkIdentity } from '../flows/sso.ts';
import { requireUser } from './auth-guard.ts';
import { readCookies, serializeCookie, sessionCookie } from './pages/cookies.ts';
import { toAppError } from './problem.ts';
import { problems } from './schemas.ts';

/** The httpOnly cookie binding a provider's callback to the browser that started it. */
const SSO_COOKIE = 'gatehouse-sso';
/** The second step of a provider sign-in, handed to the login page's code form. */
export const SSO_MFA_COOKIE = 'gatehouse-sso-mfa';
const STATE_SECONDS = 600;
const MFA_SECONDS = 300;

const tags = ['sso'];
const Provider = Type.Object({ provider: Type.String({ maxLength: 32, description: 'A name in SSO_PROVIDERS' }) });

const IdentityView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  provider: Type.String(),
  email: Type.Union([Type.String(), Type.Null()]),
  email_verified: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

function ssoCallbackUrl(config: Config, apiPrefix: string, provider: string): string {
  return `${config.publicUrl}${apiPrefix}/sso/${provider}/callback`;
}

/** Starts a sign-in (or a link, from the account page) at a provider: the cookie, then the redirect. */
export async function redirectToProvider(
  request: FastifyRequest,
  reply: FastifyReply,
  input: { provider: string; redirectTo: unknown; linkUserId: number | null; apiPrefix: string },
): Promise<FastifyReply> {
  const services = request.server.gatehouse;
  const provider = ssoProvider(services, input.provider);
  const started = await startSso(
    services,
    provider,
    {
      redirectTo: input.redirectTo,
      linkUserId: input.linkUserId,
      callbackUrl: ssoCallbackUrl(services.config, input.apiPrefix, provider.name),
    },
    request.caller,
  );
  reply.header('set-cookie', serializeCookie(services.config, SSO_COOKIE, started.binding, STATE_SECONDS));
  reply.header('cache-control', 'no-store');
  return reply.code(302).header('location', started.url).send();
}

/**
 * `/sso/{provider}/start` and `/callback`, and the caller's linked identities.
 * The callback ends in a browser: a refusal is a problem+json for a program,
 * and for a browser (it asks for text/html) the login page with the message.
 */
export const ssoRoutes: FastifyPluginAsyncTypebox<{ pagesBase: string | undefined }> = async (app, options) => {
  const services = app.gatehouse;
  const apiPrefix = app.prefix;

  app.get(
    '/sso/:provider/start',
    {
      config: { rateLimit: 'login' },
      schema: {
        tags,
        summary: 'Sign in with an identity provider',
        description:
          "`302` to the provider (`state`, PKCE S256 and, for OpenID Connect, `nonce`), with an httpOnly cookie binding the callback to this browser. `redirect_to`: a path of this site or a URL of PUBLIC_URL's origin or a CORS_ORIGINS origin, else `400 REDIRECT_NOT_ALLOWED`. Unknown provider: `404`; the provider unreachable: `502 SSO_UNAVAILABLE`.",
        params: Provider,
        querystring: Type.Object({ redirect_to: Type.Optional(Type.String({ maxLength: 2048 })) }),
        response: { 302: Type.Null({ description: 'To the provider' }), ...problems(400, 404, 429, 502) },
      },
    },
    async (request, reply) =>
      redirectToProvider(request, reply, {
        provider: request.params.provider,
        redirectTo: request.query.redirect_to,
        linkUserId: null,
        apiPrefix,
      }),
  );

  app.get(
    '/sso/:provider/callback',
    {
      config: { rateLimit: 'login' },
      schema: {
        tags,
        summary: "The provider's redirect back",
        description:
          "Checks `state` against the browser's cookie (single use, 10 minutes), exchanges the code (PKCE), validates the ID token (signature by the issuer's JWKS, issuer, audience, nonce, expiry) or reads GitHub's user and verified primary address. Then a browser session (`amr: [\"fed\"]`) and `303` to `redirect_to` (default the account page); with a second factor on, `303` to the login page's code step. Refusals (each audited `sso_refused`): `400 SSO_STATE_INVALID`, `401 SSO_FAILED`, `403 SSO_DOMAIN_NOT_ALLOWED`, `403 ACCOUNT_DISABLED`, `409 SSO_ACCOUNT_EXISTS` (the address belongs to an account: sign in to it and link from the account page), `502 SSO_UNAVAILABLE`. A browser (Accept: text/html) is sent to the login page with the message instead.",
        params: Provider,
        querystring: Type.Object({}, { additionalProperties: true }),
        response: { 303: Type.Null({ description: 'Signed in' }), ...problems(400, 401, 403, 404, 409, 429, 502) },
      },
    },
    async (request, reply) => {
      const provider = ssoProvider(services, request.params.provider);
      const binding = readCookies(request.headers.cookie)[SSO_COOKIE];
      // Spent or not, the binding cookie has done its work.
      reply.header('set-cookie', serializeCookie(services.config, SSO_COOKIE, '', 0));
      reply.header('cache-control', 'no-store');
      const pages = options.pagesBase;
      try {
        const outcome = await finishSso(
          services,
          provider,
          {
            currentUrl: new URL(request.url, 'http://callback.invalid'),
            binding,
            callbackUrl: ssoCallbackUrl(services.config, apiPrefix, provider.name),
          },
          request.caller,
          { kind: 'browser' },
        );
        const account = pages === undefined ? '/' : `${pages}/account`;
        if (outcome.kind === 'signed_in') reply.header('set-cookie', sessionCookie(services.config, outcome.issued));
        return reply
          .code(303)
          .header('location', outcome.redirectTo ?? account)
          .send(null);
      } catch (thrown) {
        const error = toAppError(thrown);
        if (error.code === 'MFA_REQUIRED' && pages !== undefined) {
          const token = String(error.options.extensions?.mfa_token ?? '');
          reply.header('set-cookie', serializeCookie(services.config, SSO_MFA_COOKIE, token, MFA_SECONDS));
          const redirectTo = error.options.extensions?.redirect_to;
          const query = typeof redirectTo === 'string' ? `?redirect_to=${encodeURIComponent(redirectTo)}` : '';
          return reply.code(303).header('location', `${pages}/login/mfa${query}`).send(null);
        }
        const wantsPage = pages !== undefined && /\btext\/html\b/.test(String(request.headers.accept ?? ''));
        if (wantsPage) return reply.code(303).header('location', `${pages}/login?sso_error=${error.code}`).send(null);
        throw error;
      }
    },
  );

  app.get(
    '/me/identities',
    {
      preHandler: requireUser,
      schema: {
        tags,
        summary: "The caller's linked identity providers",
        security: [{ bearer: [] }, { oauth2: [] }],
        response: { 200: Type.Array(IdentityView), ...problems(401) },
      },
    },
    async (request) => listIdentities(services, request.auth.userId),
  );

  app.delete(
    '/me/identities/:id',
    {
      preHandler: requireUser,
      schema: {
        tags,
        summary: 'Unlink an identity provider',
        description:
          "`204`; `404` when it is not the caller's; `409 CONFLICT` when it is the only way into the account (no password, no passkey, no other identity, e-mail sign-in off).",
        security: [{ bearer: [] }, { oauth2: [] }],
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
        response: { 204: Type.Null(), ...problems(401, 404, 409) },
      },
    },
    async (request, reply) => {
      if (!(await unlinkIdentity(services, request.auth, request.params.id, request.caller))) {
        throw new AppError('NOT_FOUND', { detail: 'No such linked identity on this account.' });
      }
      return reply.code(204).send(null);
    },
  );
};
