import type { FastifyInstance } from 'fastify';
import { loginRoutes } from './login.ts';
import { passwordResetRoutes } from './password-reset.ts';
import { registerRoutes } from './register.ts';
import { verifyEmailRoutes } from './verify-email.ts';

/** The route constraint that sends a JSON POST to a page's path to the API route instead. */
const STRATEGY = 'gatehouseJsonBody';

/** `application/json` with or without parameters (`; charset=utf-8`), in any case. */
function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  return (contentType.split(';')[0] as string).trim().toLowerCase() === 'application/json';
}

function addJsonBodyStrategy(app: FastifyInstance): void {
  if (app.hasConstraintStrategy(STRATEGY)) return;
  app.addConstraintStrategy({
    name: STRATEGY,
    storage() {
      const handlers = new Map<unknown, unknown>();
      return {
        get: (value) => (handlers.get(value) ?? null) as never,
        set: (value, store) => void handlers.set(value, store),
      };
    },
    deriveConstraint: (req) => (req.method === 'POST' && isJson(req.headers['content-type']) ? 'json' : undefined),
    mustMatchWhenDerived: false,
  });
}

/**
 * A page's form endpoint (`POST /register`, `/login`, `/verify-email`, `/resend-verification`,
 * `/forgot-password`, `/reset-password`) posted with a JSON body is answered by the API route of
 * the same name: JSON in, JSON out, the same status codes and problem+json errors, the same rate
 * limit. A browser cannot send JSON to another site without a CORS preflight, and none is answered
 * at these paths, so the CSRF token and Origin check of the forms do not apply; form posts still
 * reach the page with both. The routes are registered a second time at the pages' mount, each
 * constrained to JSON bodies and hidden from the OpenAPI document (it lists them under the API prefix).
 */
export async function pageJsonRoutes(app: FastifyInstance, options: { apiPrefix: string }): Promise<void> {
  addJsonBodyStrategy(app);
  app.addHook('onRoute', (route) => {
    route.constraints = { ...route.constraints, [STRATEGY]: 'json' };
    route.schema = { ...route.schema, hide: true };
  });
  await app.register(registerRoutes);
  await app.register(loginRoutes, { apiPrefix: options.apiPrefix, jsonAlias: false });
  await app.register(verifyEmailRoutes);
  await app.register(passwordResetRoutes);
}
