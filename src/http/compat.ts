import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import { COMPAT_ROUTES, type CompatProfile } from '../domain/compat.ts';
import { AppError } from '../domain/errors.ts';
import { accountRoutes } from './account.ts';
import { addBodyConstraint, BODY_CONSTRAINT, type BodyKind } from './body-constraint.ts';
import { compatSuccess } from './compat-shapes.ts';
import { loginRoutes } from './login.ts';
import { logoutRoutes } from './logout.ts';
import { passwordChangeRoutes } from './password-change.ts';
import { passwordResetRoutes } from './password-reset.ts';
import { refreshRoutes } from './refresh.ts';
import { registerRoutes } from './register.ts';
import { verifyEmailRoutes } from './verify-email.ts';

/** The route's name in Gatehouse's terms: `/api/auth/login/json` → `login/json`, `/auth/signup` → `register`. */
function gatehouseRoute(path: string, prefix: string): string {
  return path.slice(prefix.length).replace(/^\/+|\/+$/g, '');
}

function notFound(): never {
  throw new AppError('NOT_FOUND');
}

interface AliasScope {
  profile: CompatProfile;
  /** Where the aliases are mounted. */
  prefix: string;
  /** The Gatehouse routes served here, `METHOD name` (names relative to `prefix`); any other a plugin adds answers 404. */
  routes: readonly string[];
  /** Renamed routes: Gatehouse's name → the document's. */
  renamed?: Record<string, string>;
  /** Only bodies of these kinds reach the aliases (paths shared with the pages). */
  bodies?: readonly BodyKind[];
  /** Field names the document uses for Gatehouse's. */
  preValidation?: (request: FastifyRequest) => void;
}

/**
 * Register Gatehouse's route plugins again under `scope.prefix`, each route
 * answering in the profile's shapes; routes of those plugins the document has
 * no use for answer 404 and are left out of the OpenAPI document.
 */
async function aliasScope(app: FastifyInstance, alias: AliasScope, apiPrefix: string, afterRegister: string) {
  const kinds = alias.bodies ?? [undefined];
  for (const kind of kinds) {
    await app.register(
      async (scope) => {
        if (kind) addBodyConstraint(scope);
        scope.addHook('onRoute', (route: RouteOptions) => {
          const prefix = scope.prefix;
          let name = gatehouseRoute(route.url, prefix);
          route.schema = { ...route.schema, hide: true };
          const methods = [route.method].flat();
          if (!methods.some((method) => alias.routes.includes(`${method} ${name}`))) {
            route.handler = notFound;
            route.onRequest = undefined;
            route.preValidation = undefined;
            route.preHandler = undefined;
            route.schema = { hide: true };
            route.config = { ...route.config, rateLimit: undefined };
            return;
          }
          const renamed = alias.renamed?.[name];
          if (renamed) {
            route.url = `${prefix}/${renamed}`;
          }
          name = name.split('/')[0] as string;
          route.config = { ...route.config, compat: { profile: alias.profile, route: name } };
          if (kind) route.constraints = { ...route.constraints, [BODY_CONSTRAINT]: kind };
          if (alias.preValidation) {
            const own = alias.preValidation;
            const existing = route.preValidation ? [route.preValidation].flat() : [];
            route.preValidation = [async (request: FastifyRequest) => own(request), ...existing];
          }
        });
        scope.addHook('onSend', async (request, reply, payload) => {
          const compat = request.routeOptions.config.compat;
          if (!compat || reply.statusCode >= 400) return payload;
          return compatSuccess(compat, request, reply, payload, afterRegister) ?? payload;
        });
        for (const route of new Set(alias.routes.map((r) => (r.split(' ')[1] as string).split('/')[0]))) {
          switch (route) {
            case 'register':
              await scope.register(registerRoutes, { usernameOptional: alias.profile === 'fastpy' });
              break;
            case 'login':
              await scope.register(loginRoutes, { apiPrefix, jsonAlias: alias.routes.includes('POST login/json') });
              break;
            case 'refresh':
              await scope.register(refreshRoutes);
              break;
            case 'me':
              await scope.register(accountRoutes);
              break;
            case 'change-password':
              await scope.register(passwordChangeRoutes);
              break;
            case 'forgot-password':
              await scope.register(passwordResetRoutes);
              break;
            case 'verify-email':
              await scope.register(verifyEmailRoutes);
              break;
            case 'logout':
              await scope.register(logoutRoutes);
              break;
          }
        }
      },
      { prefix: alias.prefix },
    );
  }
}

function bodyOf(request: FastifyRequest): Record<string, unknown> | undefined {
  const body = request.body;
  return typeof body === 'object' && body !== null && !Array.isArray(body)
    ? (body as Record<string, unknown>)
    : undefined;
}

/** `004_…` sends the plain password as `hashed_password`. */
function hashedPasswordIsPassword(request: FastifyRequest): void {
  const body = bodyOf(request);
  if (body && body.password === undefined && body.hashed_password !== undefined) body.password = body.hashed_password;
}

/** `003_…`'s `/login` also takes a refresh token, in the body or as the bearer, in place of credentials. */
function refreshOnLogin(request: FastifyRequest): void {
  const body = bodyOf(request);
  if (!body || body.password !== undefined || body.grant_type !== undefined) return;
  const header = request.headers.authorization;
  const bearer = typeof header === 'string' && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
  const token = body.refresh_token ?? bearer;
  if (token === undefined) return;
  body.grant_type = 'refresh_token';
  body.refresh_token = token;
}

/** The route names each profile's aliases serve, from COMPAT_ROUTES. */
function routesUnder(profile: CompatProfile, prefix: string, renamed: Record<string, string> = {}): string[] {
  const back = Object.fromEntries(Object.entries(renamed).map(([k, v]) => [v, k]));
  return COMPAT_ROUTES[profile].map((r) => {
    const [method, path] = r.split(' ') as [string, string];
    const name = gatehouseRoute(path, prefix);
    return `${method} ${back[name] ?? name}`;
  });
}

/**
 * The aliases of every profile turned on by COMPAT. `depin` has none: its
 * paths are Gatehouse's own, whose errors `compatApi` reshapes.
 */
export async function compatRoutes(
  app: FastifyInstance,
  options: { profiles: readonly CompatProfile[]; apiPrefix: string },
): Promise<void> {
  const mount = app.prefix;
  // piccolo_api's redirect_to: where the page sends a new account too.
  const afterRegister = app.gatehouse.config.pages.redirectTo.register ?? `${mount}/login/`;
  for (const profile of options.profiles) {
    switch (profile) {
      case 'fastpy':
        await aliasScope(
          app,
          { profile, prefix: '/api/auth', routes: routesUnder(profile, '/api/auth') },
          options.apiPrefix,
          afterRegister,
        );
        break;
      case 'fastapi-tutorial': {
        const renamed = { register: 'signup' };
        await aliasScope(
          app,
          {
            profile,
            prefix: '/auth',
            routes: routesUnder(profile, '/auth', renamed),
            renamed,
            preValidation: hashedPasswordIsPassword,
          },
          options.apiPrefix,
          afterRegister,
        );
        break;
      }
      case 'simple-endpoints':
        await aliasScope(
          app,
          { profile, prefix: '', routes: routesUnder(profile, ''), bodies: ['json'], preValidation: refreshOnLogin },
          options.apiPrefix,
          afterRegister,
        );
        break;
      case 'piccolo':
        await aliasScope(
          app,
          { profile, prefix: '', routes: routesUnder(profile, ''), bodies: ['json', 'form'] },
          options.apiPrefix,
          afterRegister,
        );
        break;
      case 'depin':
        break;
    }
  }
}

/** With `depin` on, the API's own routes answer errors in its shapes. */
export function compatApi(api: FastifyInstance, profiles: readonly CompatProfile[]): void {
  if (!profiles.includes('depin')) return;
  api.addHook('onRoute', (route) => {
    const name = gatehouseRoute(route.url, api.prefix);
    route.config = { ...route.config, compat: { profile: 'depin', route: name } };
  });
}

/** The `METHOD /path` pairs the profiles answer at the pages' mount (so the JSON page aliases leave them). */
export function compatRootRoutes(profiles: readonly CompatProfile[]): string[] {
  return profiles.flatMap((p) => COMPAT_ROUTES[p]).filter((r) => !r.includes(' /api/') && !r.includes(' /auth/'));
}
