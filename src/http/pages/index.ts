import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PROBLEMS, type ProblemCode } from '../../domain/errors.ts';
import { type PagesOptions, resolvePagesConfig } from '../../domain/page-options.ts';
import { toAppError } from '../problem.ts';
import { acceptInvitationPages } from './accept-invitation.ts';
import { accountPages } from './account.ts';
import { emailChangePages } from './email-change.ts';
import { emailSignInPages } from './email-sign-in.ts';
import { forgotPasswordPages } from './forgot-password.ts';
import { loginPages } from './login.ts';
import { logoutPages } from './logout.ts';
import { mfaPages } from './mfa.ts';
import { interactionFormTargets, oidcPages } from './oidc.ts';
import { Pages } from './page.ts';
import { registerPages } from './register.ts';
import { resetPasswordPages } from './reset-password.ts';
import { verifyEmailPages } from './verify-email.ts';

export type { PagesOptions } from '../../domain/page-options.ts';

/**
 * The HTML pages: register, verify, log in, the account, password recovery.
 * Mounted at the root of the Gatehouse scope (beside the API prefix); every
 * link and redirect is relative to where the host mounted Gatehouse.
 */
export async function pageRoutes(
  app: FastifyInstance,
  options: { pages?: PagesOptions | undefined; apiPrefix?: string },
): Promise<void> {
  const services = app.gatehouse;
  const pages = new Pages(services, resolvePagesConfig(services.config.pages, options.pages), app.prefix);
  pages.apiPrefix = `${app.prefix}${options.apiPrefix ?? '/api/v1'}`;
  pages.ssoButtons = services.config.ssoProviders.map((provider) => ({
    name: provider.name,
    label: provider.label,
    href: `${pages.apiPrefix}/sso/${provider.name}/start`,
  }));

  app.decorateRequest('gatehousePage', null as unknown as FastifyRequest['gatehousePage']);
  app.addHook('onRequest', async (request) => pages.prepare(request));
  app.addHook('preHandler', async (request) => {
    // The OpenID provider's endpoints are an API for clients, with checks of their own (RFC 6749, 7009, 7662).
    if (request.method === 'POST' && !request.routeOptions.config.oidcProvider) pages.assertFormAllowed(request);
  });
  if (services.config.oidcProvider) app.addHook('preHandler', interactionFormTargets(pages));
  app.addHook('onSend', async (_request, reply, payload) => {
    pages.securityHeaders(reply);
    return payload;
  });
  app.setErrorHandler((error, request, reply) => renderError(pages, error, request, reply));

  app.get('/gatehouse.css', { schema: { hide: true } }, async (_request, reply) =>
    reply
      .type('text/css; charset=utf-8')
      .header('cache-control', 'public, max-age=86400')
      .header('etag', `"${pages.stylesheet.version}"`)
      .send(pages.stylesheet.css),
  );

  registerPages(app, pages);
  loginPages(app, pages);
  logoutPages(app, pages);
  verifyEmailPages(app, pages);
  forgotPasswordPages(app, pages);
  resetPasswordPages(app, pages);
  accountPages(app, pages);
  emailChangePages(app, pages);
  mfaPages(app, pages);
  acceptInvitationPages(app, pages);
  if (services.config.emailSignIn !== 'off') emailSignInPages(app, pages);
  if (services.config.oidcProvider) await oidcPages(app, pages);
}

/** Titles in the words of someone using a browser; other codes keep their API title. */
const PAGE_TITLES: Partial<Record<ProblemCode, string>> = {
  CSRF_INVALID: 'This form has expired',
  METHOD_NOT_ALLOWED: 'Forms are turned off',
  NOT_FOUND: 'Not found',
  RATE_LIMIT_EXCEEDED: 'Too many attempts',
  INTERNAL_ERROR: 'Something went wrong',
};

/** Errors on a page are pages too: the same status and code as the API, in HTML. */
function renderError(pages: Pages, thrown: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const error = toAppError(thrown);
  if (error.status >= 500) {
    const cause = error.code === 'INTERNAL_ERROR' ? thrown : error;
    request.log.error({ err: { message: cause instanceof Error ? cause.message : String(cause) } }, 'page failed');
  }
  if (error.options.retryAfter !== undefined) reply.header('retry-after', String(error.options.retryAfter));
  for (const [name, value] of Object.entries(error.options.headers ?? {})) reply.header(name, value);
  // A request that failed before the page hooks ran (an unparsable body) still gets a page.
  if (!request.gatehousePage) pages.prepare(request);
  return pages.render(request, reply, 'error', {
    title: PAGE_TITLES[error.code] ?? PROBLEMS[error.code].title,
    status: error.status,
    code: error.code,
    detail: error.status >= 500 ? PROBLEMS[error.code].fix : error.detail,
    back: request.method === 'POST' ? request.url : undefined,
    errors: { status: error.status, fields: {}, form: undefined },
  });
}
