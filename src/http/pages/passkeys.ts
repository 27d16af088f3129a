import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../domain/errors.ts';
import type { LoggedIn } from '../../flows/login.ts';
import { mfaWebauthnOptions } from '../../flows/login-mfa.ts';
import {
  finishPasskeyLogin,
  finishPasskeyRegistration,
  removePasskey,
  startPasskeyLogin,
  startPasskeyRegistration,
} from '../../flows/passkeys.ts';
import { asAppError, field, formBody, safeRedirect } from './forms.ts';
import type { Pages } from './page.ts';

/** The largest `response` field read (a passkey's answer is about 1 KiB; the body limit is 16 KiB). */
const RESPONSE_MAX = 12 * 1024;

/**
 * The one page script: @simplewebauthn/browser's browser bundle, then the
 * code that wires the passkey buttons (`src/views/passkeys.js`), served as
 * one same-origin file so that the CSP needs only `script-src 'self'`.
 */
function passkeysScript(): { js: string; version: string } {
  const require = createRequire(import.meta.url);
  const browserPackage = dirname(require.resolve('@simplewebauthn/browser'));
  const bundle = readFileSync(join(browserPackage, '..', 'dist', 'bundle', 'index.umd.min.js'), 'utf8');
  const own = readFileSync(new URL('../../views/passkeys.js', import.meta.url), 'utf8');
  const js = `${bundle}\n${own}`;
  return { js, version: createHash('sha256').update(js).digest('hex').slice(0, 12) };
}

/** A form field holding a JSON object (the browser's answer), or undefined when it is not one. */
export function jsonField(body: Record<string, unknown>, name: string): unknown {
  const raw = field(body, name);
  if (raw === '' || raw.length > RESPONSE_MAX) return undefined;
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : 'invalid';
  } catch {
    return 'invalid';
  }
}

/**
 * Passkeys on the pages: the options the script asks for (form posts with
 * the CSRF token, answered in JSON), the forms it submits with the
 * browser's answer, and the remove form of the account page (no script).
 */
export function passkeyPages(
  app: FastifyInstance,
  pages: Pages,
  signedIn: (
    request: FastifyRequest,
    reply: FastifyReply,
    issued: LoggedIn,
    redirectTo: string | undefined,
  ) => FastifyReply,
): void {
  const { services } = pages;
  const script = passkeysScript();

  app.get('/gatehouse-passkeys.js', { schema: { hide: true } }, async (_request, reply) =>
    reply
      .type('text/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=86400')
      .header('etag', `"${script.version}"`)
      .send(script.js),
  );

  async function requireSession(request: FastifyRequest) {
    const session = await pages.session(request);
    if (!session) throw new AppError('UNAUTHORIZED', { detail: 'Your session ended. Log in again.' });
    return session;
  }

  app.post('/account/passkeys/options', { schema: { hide: true } }, async (request, reply) => {
    const session = await requireSession(request);
    reply.header('cache-control', 'no-store');
    return reply.type('application/json').send(await startPasskeyRegistration(services, session.auth));
  });

  app.post('/account/passkeys', { schema: { hide: true } }, async (request, reply) => {
    const session = await requireSession(request);
    const body = formBody(request.body);
    await finishPasskeyRegistration(
      services,
      session.auth,
      { response: jsonField(body, 'response'), name: field(body, 'name') },
      request.caller,
    );
    return pages.redirect(reply, pages.paths.account, 'passkey_added');
  });

  app.post<{ Params: { id: string } }>(
    '/account/passkeys/:id/delete',
    { schema: { hide: true } },
    async (request, reply) => {
      const session = await requireSession(request);
      await removePasskey(services, session.auth, request.params.id, request.caller);
      return pages.redirect(reply, pages.paths.account, 'passkey_removed');
    },
  );

  app.post(
    '/login/passkey/options',
    { schema: { hide: true }, config: { rateLimit: 'login' } },
    async (request, reply) => {
      const body = formBody(request.body);
      const username = field(body, 'username');
      reply.header('cache-control', 'no-store');
      return reply
        .type('application/json')
        .send(await startPasskeyLogin(services, username === '' ? {} : { username }));
    },
  );

  app.post('/login/passkey', { schema: { hide: true }, config: { rateLimit: 'login' } }, async (request, reply) => {
    const body = formBody(request.body);
    const redirectTo = safeRedirect(body.redirect_to);
    let issued: LoggedIn;
    try {
      issued = await finishPasskeyLogin(
        services,
        { challenge_id: field(body, 'challenge_id'), response: jsonField(body, 'response') },
        request.caller,
        'browser',
      );
    } catch (error) {
      const appError = asAppError(error);
      return pages.render(request, reply, 'login', {
        title: 'Log in',
        labels: { username: 'Username or email', password: 'Password' },
        redirectTo,
        errors: { status: appError.status, fields: {}, form: appError.detail },
      });
    }
    return signedIn(request, reply, issued, redirectTo);
  });

  app.post(
    '/login/mfa/passkey-options',
    { schema: { hide: true }, config: { rateLimit: 'login' } },
    async (request, reply) => {
      const body = formBody(request.body);
      reply.header('cache-control', 'no-store');
      return reply
        .type('application/json')
        .send(await mfaWebauthnOptions(services, { mfa_token: field(body, 'mfa_token') }));
    },
  );
}
