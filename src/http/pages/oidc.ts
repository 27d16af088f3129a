import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type Provider from 'oidc-provider';
import type { InteractionResults, KoaContextWithOIDC } from 'oidc-provider';
import { AppError } from '../../domain/errors.ts';
import { clientInfo, consentGranted, interactionOrigins, OIDC_SCOPES, pageLogin } from '../../flows/oidc.ts';
import { createOidcProvider, oidcProviderRoutes } from '../oidc.ts';
import { field, formBody } from './forms.ts';
import type { Pages } from './page.ts';

const INTERACTION = '/oauth/interaction/';

type Interaction = Awaited<ReturnType<Provider['interactionDetails']>>;

/**
 * The OpenID provider on the pages: its endpoints, and the interactions it
 * sends the browser to: sign in (the `/login` page, whichever ways are on),
 * then consent (first-party clients skip it), then back to the client.
 */
export async function oidcPages(app: FastifyInstance, pages: Pages): Promise<void> {
  const { services } = pages;
  const issuer = `${services.config.publicUrl.replace(/\/+$/, '')}${pages.base}`;
  const provider = await createOidcProvider(services, {
    issuer,
    views: {
      interactionUrl: (uid) => pages.path(`${INTERACTION}${uid}`),
      logout(ctx, form, client) {
        sendPage(ctx, pages, 'oidc-logout', { title: 'Sign out', form, client: client?.name }, client?.origins ?? []);
      },
      loggedOut(ctx) {
        sendPage(ctx, pages, 'notice-page', {
          title: 'Signed out',
          message: 'You are signed out of Gatehouse and the applications you signed in to with it.',
        });
      },
      error(ctx, out) {
        sendPage(ctx, pages, 'error', {
          title: 'This sign-in cannot continue',
          status: ctx.status,
          code: out.error,
          detail: out.error_description ?? 'The application sent a request Gatehouse cannot accept.',
        });
      },
    },
  });
  await app.register(oidcProviderRoutes, { provider });

  const interactionPath = (uid: string) => pages.path(`${INTERACTION}${uid}`);

  async function details(request: FastifyRequest, reply: FastifyReply): Promise<Interaction> {
    try {
      return await provider.interactionDetails(request.raw, reply.raw);
    } catch {
      throw new AppError('NOT_FOUND', {
        detail: 'This sign-in has expired or was already finished. Go back to the application and sign in again.',
      });
    }
  }

  async function finish(
    request: FastifyRequest,
    reply: FastifyReply,
    result: InteractionResults,
  ): Promise<FastifyReply> {
    const location = await provider.interactionResult(request.raw, reply.raw, result, {
      mergeWithLastSubmission: true,
    });
    return pages.redirect(reply, location);
  }

  /** Grants what the interaction asks for (the person agreed, or the client is first-party). */
  async function grant(request: FastifyRequest, interaction: Interaction, firstParty: boolean): Promise<string> {
    const { prompt, params, session } = interaction;
    const accountId = session?.accountId;
    const clientId = String(params.client_id);
    if (!accountId) throw new AppError('NOT_FOUND', { detail: 'This sign-in has no signed-in person.' });
    const existing = interaction.grantId ? await provider.Grant.find(interaction.grantId) : undefined;
    const grant = existing ?? new provider.Grant({ accountId, clientId });
    const missing = prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    if (missing.missingOIDCScope?.length || !existing) {
      await consentGranted(
        services,
        accountId,
        { clientId, scopes: missing.missingOIDCScope ?? [], firstParty },
        request.caller,
      );
    }
    return grantId;
  }

  function loginRedirect(reply: FastifyReply, uid: string): FastifyReply {
    return pages.redirect(reply, `${pages.paths.login}?redirect_to=${encodeURIComponent(interactionPath(uid))}`);
  }

  app.get<{ Params: { uid: string } }>(`${INTERACTION}:uid`, { schema: { hide: true } }, async (request, reply) => {
    const interaction = await details(request, reply);
    const { prompt, params, uid } = interaction;
    const login = await pageLogin(services, request.gatehousePage.sessionCookie);
    if (prompt.name === 'login') {
      if (!login) return loginRedirect(reply, uid);
      const maxAge = typeof params.max_age === 'number' ? params.max_age : Number(params.max_age ?? Number.NaN);
      const now = Math.floor(Date.now() / 1000);
      const startedAt = (interaction as unknown as { iat?: number }).iat ?? now;
      // prompt=login and max_age ask for a sign-in newer than what the page session proves.
      const stale =
        (prompt.reasons.includes('login_prompt') && login.authTime < startedAt) ||
        (Number.isFinite(maxAge) && now - login.authTime > maxAge);
      if (stale) return loginRedirect(reply, uid);
      return finish(request, reply, {
        login: { accountId: login.accountId, amr: login.amr, ts: login.authTime, remember: true },
      });
    }
    if (prompt.name === 'consent') {
      // The person consenting is the person the provider signed in.
      if (!login || login.accountId !== interaction.session?.accountId) return loginRedirect(reply, uid);
      const client = await clientInfo(services, String(params.client_id));
      if (!client) throw new AppError('NOT_FOUND', { detail: 'The application is no longer registered.' });
      const missing = prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
      const nothingNew = !missing.missingOIDCScope?.length && !missing.missingOIDCClaims?.length;
      if (client.firstParty || nothingNew) {
        return finish(request, reply, { consent: { grantId: await grant(request, interaction, client.firstParty) } });
      }
      const requested = String(params.scope ?? '')
        .split(' ')
        .filter((scope): scope is keyof typeof OIDC_SCOPES => Object.hasOwn(OIDC_SCOPES, scope));
      return pages.render(request, reply, 'consent', {
        title: `Allow ${client.name}?`,
        signedIn: true,
        client: client.name,
        scopes: requested.map((scope) => ({ scope, description: OIDC_SCOPES[scope] })),
        action: interactionPath(uid),
        formTargets: client.origins,
      });
    }
    throw new AppError('NOT_FOUND', { detail: 'This sign-in asks for something Gatehouse does not do.' });
  });

  app.post<{ Params: { uid: string } }>(`${INTERACTION}:uid`, { schema: { hide: true } }, async (request, reply) => {
    const interaction = await details(request, reply);
    const login = await pageLogin(services, request.gatehousePage.sessionCookie);
    if (interaction.prompt.name !== 'consent' || !login || login.accountId !== interaction.session?.accountId) {
      return loginRedirect(reply, interaction.uid);
    }
    const decision = field(formBody(request.body), 'decision');
    if (decision === 'allow') {
      const client = await clientInfo(services, String(interaction.params.client_id));
      return finish(request, reply, {
        consent: { grantId: await grant(request, interaction, client?.firstParty ?? false) },
      });
    }
    if (decision === 'deny') {
      return finish(request, reply, { error: 'access_denied', error_description: 'The person declined the request.' });
    }
    throw new AppError('MALFORMED_REQUEST', { detail: 'The form did not say whether to allow the application.' });
  });
}

/**
 * preHandler of every page: a form that continues an authorization
 * (`redirect_to` = an interaction) may end at the client, whose origin then
 * goes into the page's `form-action` (browsers apply it to every redirect
 * that follows the post). Registered before the pages' routes.
 */
export function interactionFormTargets(pages: Pages): preHandlerAsyncHookHandler {
  const interactionPrefix = pages.path(INTERACTION);
  return async (request) => {
    if (!request.gatehousePage) return;
    const query = request.query as Record<string, unknown> | undefined;
    const body = request.body as Record<string, unknown> | undefined;
    const target = [query?.redirect_to, typeof body === 'object' && body ? body.redirect_to : undefined].find(
      (value): value is string => typeof value === 'string' && value.startsWith(interactionPrefix),
    );
    if (!target) return;
    const uid = target.slice(interactionPrefix.length).split(/[/?#]/)[0] ?? '';
    if (/^[A-Za-z0-9_-]{1,64}$/.test(uid)) {
      request.gatehousePage.formTargets = await interactionOrigins(pages.services, uid);
    }
  };
}

/** An answer of the provider's own (Koa) in the pages' look and with their headers. */
function sendPage(
  ctx: KoaContextWithOIDC,
  pages: Pages,
  template: string,
  data: Record<string, unknown> & { title: string },
  formTargets: string[] = [],
): void {
  ctx.type = 'text/html; charset=utf-8';
  ctx.set('content-security-policy', pages.contentSecurityPolicy(formTargets));
  ctx.set('x-frame-options', 'DENY');
  ctx.set('x-content-type-options', 'nosniff');
  ctx.set('referrer-policy', 'no-referrer');
  ctx.set('cache-control', 'no-store');
  ctx.body = pages.document(template, data);
}
