import type { FastifyInstance } from 'fastify';
import { addBodyConstraint, BODY_CONSTRAINT } from './body-constraint.ts';
import { loginRoutes } from './login.ts';
import { passwordResetRoutes } from './password-reset.ts';
import { registerRoutes } from './register.ts';
import { verifyEmailRoutes } from './verify-email.ts';

/**
 * A page's form endpoint (`POST /register`, `/login`, `/verify-email`, `/resend-verification`,
 * `/forgot-password`, `/reset-password`) posted with a JSON body is answered by the API route of
 * the same name: JSON in, JSON out, the same status codes and problem+json errors, the same rate
 * limit. A browser cannot send JSON to another site without a CORS preflight, and none is answered
 * at these paths, so the CSRF token and Origin check of the forms do not apply; form posts still
 * reach the page with both. The routes are registered a second time at the pages' mount, each
 * constrained to JSON bodies and hidden from the OpenAPI document (it lists them under the API prefix).
 */
export async function pageJsonRoutes(
  app: FastifyInstance,
  options: { apiPrefix: string; skip?: readonly string[] },
): Promise<void> {
  // A COMPAT profile that answers one of these paths in its own way registers it itself.
  const skip = new Set(options.skip ?? []);
  addBodyConstraint(app);
  app.addHook('onRoute', (route) => {
    route.constraints = { ...route.constraints, [BODY_CONSTRAINT]: 'json' };
    route.schema = { ...route.schema, hide: true };
  });
  if (!skip.has('POST /register')) await app.register(registerRoutes);
  if (!skip.has('POST /login')) await app.register(loginRoutes, { apiPrefix: options.apiPrefix, jsonAlias: false });
  await app.register(verifyEmailRoutes);
  await app.register(passwordResetRoutes);
}
