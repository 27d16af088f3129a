import { hkdfSync, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import Provider, { type Configuration, errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { RequestContext } from '../domain/request-context.ts';
import {
  accountClaims,
  clientInfo,
  codeIssued,
  endPageSession,
  grantRevoked,
  grantTokensIssued,
  OIDC_CLAIMS,
  OIDC_SCOPES,
  pageSessionOf,
  spentGrantSourceReused,
} from '../flows/oidc.ts';
import type { Services } from '../infra/container.ts';
import { DatabaseOidcAdapter, type OidcStoreHooks } from '../infra/oidc-adapter.ts';
import { oidcSigningKeys } from '../infra/oidc-keys.ts';
import { sha256Hex } from '../infra/sha256.ts';
import { cookieNames, readCookies, serializeCookie } from './pages/cookies.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** An endpoint of the OpenID provider: handed to it unparsed, outside the pages' form checks. */
    oidcProvider?: boolean;
  }
}

/** The provider's endpoints, beside the pages (docs/oidc.md). Discovery is `/.well-known/openid-configuration`. */
const OIDC_ROUTES = {
  authorization: '/oauth/authorize',
  token: '/oauth/token',
  userinfo: '/oauth/userinfo',
  revocation: '/oauth/revoke',
  introspection: '/oauth/introspect',
  end_session: '/oauth/logout',
  jwks: '/oauth/jwks',
  pushed_authorization_request: '/oauth/par',
} as const;

/** The provider's HTML (a sign-out question, an error it cannot send back to the client) in the pages' look. */
export interface OidcViews {
  interactionUrl(uid: string): string;
  logout(ctx: KoaContextWithOIDC, form: string, client: { name: string; origins: string[] } | undefined): void;
  loggedOut(ctx: KoaContextWithOIDC): void;
  error(ctx: KoaContextWithOIDC, out: { error: string; error_description?: string }): void;
}

/** Endpoints a browser visits (with Gatehouse's page cookie); the rest are called by clients. */
const BROWSER_ROUTES = new Set([
  'authorization',
  'resume',
  'end_session',
  'end_session_confirm',
  'end_session_success',
]);

const pageSessions = new WeakMap<object, Promise<{ sessionUuid: string; accountId: string } | null>>();

/** The Gatehouse request context (client IP by TRUST_PROXY, user agent) of a request the provider is answering. */
const callers = new WeakMap<IncomingMessage, RequestContext>();
const UNKNOWN_CALLER: RequestContext = { ip: null, userAgent: null };

function callerOf(ctx: KoaContextWithOIDC | undefined): RequestContext {
  return (ctx && callers.get(ctx.req)) ?? UNKNOWN_CALLER;
}

/**
 * Gatehouse as an OAuth 2.1 / OpenID Connect provider, on `oidc-provider`
 * (OpenID Certified): authorization code flow with PKCE S256 only, exact
 * redirect URIs, single-use 60-second codes, rotating refresh tokens,
 * revocation, introspection for confidential clients, RP-initiated logout.
 * Its state lives in the database (`DatabaseOidcAdapter`); people sign in and
 * consent on Gatehouse's own pages.
 */
export async function createOidcProvider(
  services: Services,
  options: { issuer: string; views: OidcViews },
): Promise<Provider> {
  const { config } = services;
  const keys = await oidcSigningKeys(services);
  const algorithms = [...new Set(keys.map((k) => k.alg as string))];
  const secure = config.publicUrl.startsWith('https:');
  const pageCookie = cookieNames(config).session;
  const pageCookieOf = (ctx: KoaContextWithOIDC | undefined) =>
    ctx ? readCookies(ctx.get('cookie'))[pageCookie] : undefined;

  const hooks: OidcStoreHooks = {
    async tokenSaved(model, payload, expiresAt) {
      if (!payload.grantId || !payload.clientId || !payload.accountId) return;
      await grantTokensIssued(
        services,
        {
          model,
          grantId: payload.grantId,
          clientId: payload.clientId,
          accountId: payload.accountId,
          ...(payload.gty ? { gty: payload.gty } : {}),
        },
        expiresAt,
        callerOf(Provider.ctx as KoaContextWithOIDC | undefined),
      );
    },
    async codeIssued(payload) {
      if (!payload.clientId || !payload.accountId) return;
      await codeIssued(
        services,
        {
          clientId: payload.clientId,
          accountId: payload.accountId,
          ...(payload.scope ? { scope: payload.scope } : {}),
        },
        callerOf(Provider.ctx as KoaContextWithOIDC | undefined),
      );
    },
    async reused(model, payload) {
      if (model !== 'AuthorizationCode' && model !== 'RefreshToken') return;
      await spentGrantSourceReused(
        services,
        model,
        {
          ...(payload.clientId ? { clientId: payload.clientId } : {}),
          ...(payload.accountId ? { accountId: payload.accountId } : {}),
          ...(payload.grantId ? { grantId: payload.grantId } : {}),
        },
        callerOf(Provider.ctx as KoaContextWithOIDC | undefined),
      );
    },
    grantRevoked: (grantId) => grantRevoked(services, grantId),
    async pageSession() {
      const ctx = Provider.ctx as KoaContextWithOIDC | undefined;
      if (!ctx || !BROWSER_ROUTES.has(ctx.oidc?.route ?? '')) return undefined;
      // Read once per request: the provider loads and saves its session in the same request.
      let page = pageSessions.get(ctx);
      if (!page) {
        page = pageSessionOf(services, pageCookieOf(ctx)).then((found) => found ?? null);
        pageSessions.set(ctx, page);
      }
      return page;
    },
    alreadyConsumed: (model) =>
      new errors.InvalidGrant(
        `${model === 'AuthorizationCode' ? 'authorization code' : 'refresh token'} already consumed`,
      ),
  };

  const ttl = {
    AccessToken: services.tokens.accessLifetimeSeconds,
    AuthorizationCode: 60,
    IdToken: services.tokens.accessLifetimeSeconds,
    RefreshToken: services.tokens.refreshLifetimeSeconds,
    Grant: config.sessionMaxAgeDays * 86_400,
    Session: config.sessionMaxAgeDays * 86_400,
    Interaction: 3600,
  };

  const configuration: Configuration = {
    adapter: (name: string) => new DatabaseOidcAdapter(name, services.db, hooks),
    clients: [],
    async findAccount(_ctx, sub) {
      const claims = await accountClaims(services, sub);
      if (!claims) return undefined;
      return { accountId: sub, claims: async () => ({ ...claims }) };
    },
    claims: {
      ...OIDC_CLAIMS,
      acr: null,
      amr: null,
      sid: null,
      auth_time: null,
      iss: null,
    } as unknown as Configuration['claims'],
    scopes: Object.keys(OIDC_SCOPES),
    // `organizations`, `email`, `profile` claims in the ID token too, not only from userinfo.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post'],
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      id_token_signed_response_alg: (algorithms.includes('RS256') ? 'RS256' : (algorithms[0] ?? 'RS256')) as 'RS256',
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    enabledJWA: {
      idTokenSigningAlgValues: algorithms as NonNullable<Configuration['enabledJWA']>['idTokenSigningAlgValues'],
      userinfoSigningAlgValues: algorithms as NonNullable<Configuration['enabledJWA']>['userinfoSigningAlgValues'],
      introspectionSigningAlgValues: algorithms as NonNullable<
        Configuration['enabledJWA']
      >['introspectionSigningAlgValues'],
      authorizationSigningAlgValues: algorithms as NonNullable<
        Configuration['enabledJWA']
      >['authorizationSigningAlgValues'],
    },
    jwks: { keys: keys as NonNullable<Configuration['jwks']>['keys'] },
    cookies: {
      keys: [Buffer.from(hkdfSync('sha256', config.secretKey, '', 'gatehouse oidc cookies', 32)).toString('base64url')],
      names: {
        session: 'gatehouse-oidc-session',
        interaction: 'gatehouse-oidc-interaction',
        resume: 'gatehouse-oidc-resume',
      },
      long: { httpOnly: true, sameSite: 'lax', secure },
      short: { httpOnly: true, sameSite: 'lax', secure },
    },
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: true,
        // RFC 7009: a client revokes its own tokens.
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      introspection: {
        enabled: true,
        // RFC 7662: a resource server (a confidential client) asks; a public client may not.
        allowedPolicy: async (_ctx, client) => client.clientAuthMethod !== 'none',
      },
      userinfo: { enabled: true },
      resourceIndicators: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          const clientId = ctx.oidc.session?.state?.clientId as string | undefined;
          const client = clientId ? await clientInfo(services, clientId) : undefined;
          options.views.logout(ctx, form, client ? { name: client.name, origins: client.origins } : undefined);
        },
        async postLogoutSuccessSource(ctx) {
          options.views.loggedOut(ctx);
        },
      },
    },
    interactions: { url: async (_ctx, interaction) => options.views.interactionUrl(interaction.uid) },
    async loadExistingGrant(ctx) {
      const grantId =
        ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session?.grantIdFor(ctx.oidc.client?.clientId ?? '');
      const grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      // A first-party client is granted what it asks for (within its registered scope) without a consent page.
      const client = ctx.oidc.client;
      const accountId = ctx.oidc.session?.accountId;
      if (!client || !accountId) return grant;
      const info = await clientInfo(services, client.clientId);
      if (!info?.firstParty) return grant;
      const requested = [...ctx.oidc.requestParamOIDCScopes];
      const granted = new Set((grant?.getOIDCScope() ?? '').split(' '));
      if (grant && requested.every((scope) => granted.has(scope))) return grant;
      const first = grant ?? new ctx.oidc.provider.Grant({ accountId, clientId: client.clientId });
      if (requested.length > 0) first.addOIDCScope(requested.join(' '));
      await first.save();
      return first;
    },
    rotateRefreshToken: true,
    ttl,
    routes: OIDC_ROUTES,
    async renderError(ctx, out) {
      options.views.error(ctx, out as { error: string; error_description?: string });
    },
  };

  const provider = new Provider(options.issuer, configuration);
  provider.proxy = config.trustProxy !== false;

  // Secrets are stored as SHA-256: a presented secret is hashed, then compared in constant time.
  provider.Client.prototype.compareClientSecret = async function compareClientSecret(
    this: { clientSecret?: string },
    actual: string,
  ) {
    if (!this.clientSecret || typeof actual !== 'string') return false;
    const expected = Buffer.from(this.clientSecret);
    const given = Buffer.from(sha256Hex(actual));
    return expected.length === given.length && timingSafeEqual(expected, given);
  };

  // Signing out at the provider (RP-initiated logout, confirmed) signs the browser out of Gatehouse's pages too.
  provider.use(async (ctx, next) => {
    await next();
    const oidc = (ctx as KoaContextWithOIDC).oidc;
    if (oidc?.route === 'end_session_confirm' && ctx.status === 303 && oidc.params?.logout) {
      const cookie = pageCookieOf(ctx as KoaContextWithOIDC);
      await endPageSession(services, cookie, oidc.client?.clientId, callerOf(ctx as KoaContextWithOIDC));
      if (cookie !== undefined) ctx.append('set-cookie', serializeCookie(config, pageCookie, '', 0));
    }
  });

  provider.on('server_error', (_ctx, error) =>
    services.log.error({ err: { message: error.message } }, 'OpenID provider error'),
  );
  return provider;
}

/**
 * Mounts the provider's endpoints in a Fastify scope: each request is handed,
 * unparsed, to the provider (it reads its own bodies), with Gatehouse's view
 * of the caller attached for the audit trail.
 */
export async function oidcProviderRoutes(app: FastifyInstance, options: { provider: Provider }): Promise<void> {
  const handle = options.provider.callback();
  const prefix = app.prefix;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  const mount = (url: string) =>
    app.route({
      method: ['GET', 'POST', 'OPTIONS'],
      url,
      schema: { hide: true },
      config: { oidcProvider: true },
      handler: async (request, reply) => {
        reply.hijack();
        const raw = request.raw as IncomingMessage & { originalUrl?: string };
        callers.set(raw, request.caller);
        if (prefix && raw.url?.startsWith(prefix)) {
          raw.originalUrl = raw.url;
          raw.url = raw.url.slice(prefix.length) || '/';
        }
        await handle(raw, reply.raw);
      },
    });
  mount('/.well-known/openid-configuration');
  for (const path of Object.values(OIDC_ROUTES)) {
    mount(path);
    mount(`${path}/*`);
  }
}
