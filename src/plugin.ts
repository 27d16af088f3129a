import cors from '@fastify/cors';
import formbody from '@fastify/formbody';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { type Config, loadConfig } from './config.ts';
import { type DatabaseHandle, explainConnectionError, migrateToLatest, openDatabase } from './db/index.ts';
import { AppError } from './domain/errors.ts';
import { resolvePagesConfig } from './domain/page-options.ts';
import type { RequestContext } from './domain/request-context.ts';
import { hostPermissions } from './domain/roles.ts';
import { type AdminUserView, setAppMetadata } from './flows/admin.ts';
import type { OrganizationAccess } from './flows/org-access.ts';
import { accountRoutes } from './http/account.ts';
import { adminRoutes } from './http/admin.ts';
import { clientIpResolver } from './http/client-ip.ts';
import { compatApi, compatRootRoutes, compatRoutes } from './http/compat.ts';
import { corsOptions } from './http/cors.ts';
import { emailChangeRoutes } from './http/email-change.ts';
import { emailSignInRoutes } from './http/email-sign-in.ts';
import { healthRoutes } from './http/health.ts';
import { invitationRoutes } from './http/invitations.ts';
import { jwksRoutes } from './http/jwks.ts';
import { loginRoutes } from './http/login.ts';
import { logoutRoutes } from './http/logout.ts';
import { memberRoutes } from './http/members.ts';
import { metricsRoutes, metricsServer, observeRequests } from './http/metrics.ts';
import { mfaRoutes } from './http/mfa.ts';
import { addMultipartParser } from './http/multipart.ts';
import { oauthClientRoutes } from './http/oauth-clients.ts';
import { undeclaredPermission } from './http/org-guard.ts';
import { organizationRoutes } from './http/organizations.ts';
import { pageJsonRoutes } from './http/page-json.ts';
import { type PagesOptions, pageRoutes } from './http/pages/index.ts';
import { passkeyRoutes } from './http/passkeys.ts';
import { passwordChangeRoutes } from './http/password-change.ts';
import { passwordResetRoutes } from './http/password-reset.ts';
import { sendProblem } from './http/problem.ts';
import { problemPages } from './http/problem-pages.ts';
import { rateLimitRoutes } from './http/rate-limit.ts';
import { refreshRoutes } from './http/refresh.ts';
import { registerRoutes } from './http/register.ts';
import { roleRoutes } from './http/roles.ts';
import { Problem, ProblemRef } from './http/schemas.ts';
import { DOCS_CSP, securityHeaders } from './http/security-headers.ts';
import { sessionRoutes } from './http/sessions.ts';
import { ssoRoutes } from './http/sso.ts';
import { validatorCompiler } from './http/validation.ts';
import { verifyEmailRoutes } from './http/verify-email.ts';
import { webhookRoutes } from './http/webhooks.ts';
import type { BreachChecker } from './infra/breach.ts';
import type { ClaimsHook } from './infra/claims.ts';
import type { Clock } from './infra/clock.ts';
import { createServices, type Services } from './infra/container.ts';
import type { AuthContext } from './infra/sessions.ts';

export interface GatehouseOptions {
  /** Full configuration; read from the environment (and `.env`) when omitted. */
  config?: Config;
  /** Where the JSON API is mounted. Default `/api/v1`. */
  prefix?: string;
  /** Serve `/docs` and `/openapi.json`. Default true. */
  docs?: boolean;
  /**
   * Serve `GET /metrics`: on the application port with METRICS_TOKEN, or on
   * METRICS_PORT once the app listens; with neither it is not served. Default
   * true. A host with its own `/metrics` can turn this off and merge
   * `app.gatehouse.metrics.registry` into its registry.
   */
  metrics?: boolean;
  /** An already-open database (the plugin then leaves closing it to the caller). */
  database?: DatabaseHandle;
  /** Time source for expiries and timestamps. Default: the system clock (tests pass a fixed one). */
  clock?: Clock;
  /** Replaces the checker BREACH_CHECK selects, e.g. with an in-house corpus service. */
  breachChecker?: BreachChecker;
  /**
   * The HTML pages (register, login, account…), mounted beside the API at the
   * root of this plugin. Overrides the PAGES_* configuration; `false` leaves them out.
   */
  pages?: PagesOptions | false;
  /**
   * Permissions of the host application's own (`scope:action`, e.g.
   * `['scans:start']`), checked on its routes with `requirePermission`.
   * Organization admins put them in custom roles; the built-in `admin` role
   * holds them all, `user` and `viewer` none.
   */
  permissions?: readonly string[];
  /**
   * Extra access token claims, computed at every login and refresh, e.g.
   * `async ({ user, session }) => ({ tenant: 'x' })`. Registered claims
   * (`sub`, `exp`, `sid`, `orgs`… see docs/auth.md) are never replaced: such
   * keys are dropped with a warning. A hook that throws, returns something
   * other than an object or takes over 5 s fails the login or refresh with
   * 503 CLAIMS_HOOK_FAILED, and nothing is written.
   */
  claims?: ClaimsHook;
}

/** What a host application calls on `app.gatehouse`, beside the services. */
export interface GatehouseHostApi {
  /** Replaces a user's `app_metadata` (a JSON object of at most 4096 bytes); audited as `admin_user_updated`. */
  setAppMetadata(userUuid: string, metadata: Record<string, unknown>): Promise<AdminUserView>;
}

declare module 'fastify' {
  interface FastifyInstance {
    gatehouse: Services & GatehouseHostApi;
  }
  interface FastifyRequest {
    caller: RequestContext;
  }
}

/** Auth routes take small bodies; a 1 MB "password" never reaches the hasher. */
export const AUTH_BODY_LIMIT = 16 * 1024;
const USER_AGENT_MAX = 512;

async function gatehousePlugin(app: FastifyInstance, options: GatehouseOptions): Promise<void> {
  const config = options.config ?? loadConfig();
  const prefix = (options.prefix ?? '/api/v1').replace(/\/+$/, '');
  const ownsDatabase = !options.database;
  // Before the database opens: a malformed host permission is a programming error.
  const declared = hostPermissions(options.permissions ?? []);
  for (const warning of config.warnings ?? []) app.log.warn(warning);
  const database =
    options.database ?? (await openDatabase(config.databaseUrl, config.dataDir, { poolSize: config.databasePoolSize }));
  try {
    await migrateToLatest(database.db);
  } catch (error) {
    if (ownsDatabase) await database.close().catch(() => {});
    throw ownsDatabase ? explainConnectionError(error, config.databaseUrl) : error;
  }

  if (config.oidcProvider && options.pages === false) {
    if (ownsDatabase) await database.close().catch(() => {});
    throw new Error(
      'OIDC_PROVIDER=true needs the pages (people sign in and consent on them): do not pass `pages: false`',
    );
  }
  if (options.claims !== undefined && typeof options.claims !== 'function') {
    if (ownsDatabase) await database.close().catch(() => {});
    throw new Error('the `claims` option must be a function ({ user, session }) => claims');
  }
  const services = await createServices(config, database, app.log, {
    ...(options.clock && { clock: options.clock }),
    ...(options.breachChecker && { breach: options.breachChecker }),
    hostPermissions: declared,
    ...(options.claims && { claims: options.claims }),
  });
  const hostApi: GatehouseHostApi = {
    setAppMetadata: (userUuid, metadata) => setAppMetadata(services, userUuid, metadata),
  };
  app.decorate('gatehouse', Object.assign(services, hostApi));
  app.decorateRequest('caller', null as unknown as RequestContext);
  app.decorateRequest('auth', null as unknown as AuthContext);
  app.decorateRequest('membership', null as unknown as OrganizationAccess);
  // A host route guarded by `requirePermission` for a permission it did not declare fails when it is declared.
  app.addHook('onRoute', (route) => {
    for (const hook of [route.onRequest, route.preValidation, route.preHandler].flat()) {
      const permission = undeclaredPermission(hook, declared);
      if (permission !== undefined) {
        throw new TypeError(
          `requirePermission: "${permission}" is not declared; add it to the \`permissions\` option of app.register(gatehouse, …)`,
        );
      }
    }
  });
  app.addHook('onReady', async () => services.outbox.start());
  app.addHook('onReady', async () => services.auditSealer.start());
  app.addHook('onReady', async () => services.housekeeper.start());
  app.addHook('onReady', async () => services.webhooks.start());
  if (options.metrics !== false && config.metricsPort !== undefined) {
    const server = await metricsServer({ metrics: services.metrics, token: config.metricsToken });
    app.addHook('onListen', async () => {
      if (server.server.listening) return; // the app listens on several addresses ('localhost')
      const url = await server.listen({ port: config.metricsPort, host: config.metricsHost });
      app.log.info({ metrics: `${url}/metrics` }, 'metrics served on their own port');
    });
    app.addHook('onClose', () => server.close());
  }
  app.addHook('onClose', async () => {
    await services.close();
    if (ownsDatabase) await database.close();
  });

  const pagesOn = options.pages !== false && config.pages.enabled;
  await app.register(async (scope) => {
    const clientIp = clientIpResolver(config.trustProxy);
    scope.setValidatorCompiler(validatorCompiler());
    scope.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));
    securityHeaders(scope);
    observeRequests(scope, services.metrics);
    // Requests that change things write audit rows: seal them now rather than at the next tick.
    scope.addHook('onResponse', async (request) => {
      if (!['GET', 'HEAD', 'OPTIONS'].includes(request.method)) services.auditSealer.kick();
    });
    scope.addHook('onRoute', (route) => {
      route.bodyLimit ??= AUTH_BODY_LIMIT;
      // Error statuses a route does not list (400 for a body it takes none of, 413, 415, 503) are problem details too.
      const response = route.schema?.response;
      if (response && typeof response === 'object') {
        route.schema = { ...route.schema, response: { '4xx': ProblemRef, '5xx': ProblemRef, ...response } };
      }
    });
    scope.addHook('onRequest', async (request) => {
      const userAgent = request.headers['user-agent'];
      request.caller = {
        ip: clientIp(request.raw),
        userAgent: typeof userAgent === 'string' ? userAgent.slice(0, USER_AGENT_MAX) : null,
      };
    });
    // Prototype-poisoning keys are refused outright rather than stripped.
    scope.removeContentTypeParser(['application/json', 'text/plain']);
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, scope.getDefaultJsonParser('error', 'error'));
    await scope.register(formbody);
    addMultipartParser(scope);
    // Before any route: routes with `config: { rateLimit: '<name>' }` get the limiter hook.
    await scope.register(rateLimitRoutes);
    scope.addSchema(Problem);

    if (options.docs !== false) {
      await scope.register(swagger, {
        openapi: {
          openapi: '3.1.0',
          info: {
            title: 'Gatehouse',
            version: '0.1.0',
            description: 'User registration and authentication. Errors are RFC 9457 problem details.',
          },
          components: {
            securitySchemes: {
              oauth2: { type: 'oauth2', flows: { password: { tokenUrl: `${prefix}/login`, scopes: {} } } },
              bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
              ...(config.oidcProvider && {
                openIdConnect: {
                  type: 'openIdConnect',
                  openIdConnectUrl: `${config.publicUrl.replace(/\/+$/, '')}/.well-known/openid-configuration`,
                  description:
                    'Gatehouse as an OpenID Connect provider (OIDC_PROVIDER=true): the authorization code flow with PKCE for products; endpoints under /oauth/ (docs/oidc.md).',
                },
              }),
            },
          },
        },
      });
      await scope.register(swaggerUi, {
        routePrefix: '/docs',
        uiConfig: { persistAuthorization: false },
        staticCSP: DOCS_CSP,
      });
      scope.get('/openapi.json', { schema: { hide: true } }, async () => scope.swagger());
    }

    await scope.register(healthRoutes);
    await scope.register(jwksRoutes);
    // Metrics name the routes, the traffic and the failures: never public on the application port.
    if (options.metrics !== false && config.metricsToken !== undefined && config.metricsPort === undefined) {
      await scope.register(metricsRoutes, { metrics: services.metrics, token: config.metricsToken });
    }
    await scope.register(problemPages);
    if (pagesOn) {
      await scope.register(pageRoutes, { pages: options.pages || undefined, apiPrefix: prefix });
      // Read-only pages refuse every POST, JSON ones too.
      if (!resolvePagesConfig(config.pages, options.pages || undefined).readOnly) {
        await scope.register(pageJsonRoutes, { apiPrefix: prefix, skip: compatRootRoutes(config.compat) });
      }
    }
    if (config.compat.length > 0) await scope.register(compatRoutes, { profiles: config.compat, apiPrefix: prefix });
    await scope.register(
      async (api) => {
        compatApi(api, config.compat);
        api.setNotFoundHandler((request, reply) => sendProblem(request, reply, new AppError('NOT_FOUND')));
        if (config.corsOrigins.length > 0) await api.register(cors, corsOptions(config.corsOrigins));
        await api.register(registerRoutes);
        await api.register(verifyEmailRoutes);
        await api.register(passwordResetRoutes);
        await api.register(passwordChangeRoutes);
        await api.register(loginRoutes);
        await api.register(refreshRoutes);
        await api.register(logoutRoutes);
        await api.register(sessionRoutes);
        await api.register(accountRoutes);
        await api.register(emailChangeRoutes);
        await api.register(mfaRoutes);
        await api.register(passkeyRoutes);
        await api.register(adminRoutes);
        await api.register(oauthClientRoutes);
        await api.register(webhookRoutes);
        await api.register(organizationRoutes);
        await api.register(memberRoutes);
        await api.register(invitationRoutes);
        await api.register(roleRoutes);
        // Off: the routes do not exist (404).
        if (config.emailSignIn !== 'off') await api.register(emailSignInRoutes);
        await api.register(ssoRoutes, { pagesBase: pagesOn ? scope.prefix : undefined });
      },
      { prefix },
    );
  });
}

/** Mount with `app.register(gatehouse, options)`; the standalone server is this plugin in an empty app. */
export const gatehouse: FastifyPluginAsync<GatehouseOptions> = fp(gatehousePlugin, {
  fastify: '5.x',
  name: 'gatehouse',
});

export default gatehouse;
export type { Config } from './config.ts';
export { loadConfig } from './config.ts';
export { AppError } from './domain/errors.ts';
export type { OrganizationAccess } from './flows/org-access.ts';
export { requireSuperuser, requireUser } from './http/auth-guard.ts';
export { type OrgGuardOptions, requireOrgPermission, requireOrgRole, requirePermission } from './http/org-guard.ts';
export { sendProblem } from './http/problem.ts';
export type { ClaimsHook, ClaimsHookContext } from './infra/claims.ts';
