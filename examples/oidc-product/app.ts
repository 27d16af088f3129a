/**
 * An example product that signs people in with Gatehouse as its OpenID
 * provider: the authorization code flow with PKCE, server-rendered pages, and
 * no token ever handed to the browser.
 *
 *   GET /          signed out: a link to sign in; signed in: who, and their organizations
 *   GET /login     sends the browser to Gatehouse's authorization endpoint
 *   GET /callback  where Gatehouse sends it back: the code is exchanged for tokens
 *   GET /logout    ends the local session, then Gatehouse's (end-session endpoint)
 *
 * Run it with `node examples/oidc-product/server.ts` (see README.md). It needs
 * nothing of Gatehouse but its URL and a registered client.
 */
import { randomBytes } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import * as oidc from 'openid-client';

export interface OidcProductOptions {
  /** Gatehouse's issuer URL (its PUBLIC_URL), e.g. http://localhost:8080 */
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** This product's `/callback`, exactly as registered with the client. */
  redirectUri: string;
  /** Where Gatehouse sends the browser after signing out: this product's `/`, as registered. */
  postLogoutRedirectUri: string;
  /** Plain http to Gatehouse (a development machine, tests); never in production. */
  allowInsecureHttp?: boolean;
}

const SCOPE = 'openid profile email organizations';
const SESSION_COOKIE = 'product-session';
const SIGN_IN_COOKIE = 'product-sign-in';
/** A sign-in not back from Gatehouse within this time is forgotten. */
const SIGN_IN_TTL_MS = 10 * 60_000;
const SESSION_TTL_MS = 8 * 60 * 60_000;

/** What the product keeps between sending the browser to Gatehouse and its return. */
interface PendingSignIn {
  verifier: string;
  state: string;
  nonce: string;
  expiresAt: number;
}

/** A signed-in person: what the ID token and userinfo said, and the ID token for signing out. */
interface Session {
  claims: Record<string, unknown>;
  idToken: string;
  expiresAt: number;
}

/**
 * Server-side entries behind a random cookie value: the browser holds only
 * an unguessable key, never the tokens or the PKCE verifier.
 */
class Store<T extends { expiresAt: number }> {
  readonly #entries = new Map<string, T>();

  add(entry: T): string {
    const now = Date.now();
    for (const [key, stored] of this.#entries) if (stored.expiresAt <= now) this.#entries.delete(key);
    const key = randomBytes(32).toString('base64url');
    this.#entries.set(key, entry);
    return key;
  }

  get(key: string | undefined): T | undefined {
    const entry = key ? this.#entries.get(key) : undefined;
    if (!entry || entry.expiresAt <= Date.now()) return undefined;
    return entry;
  }

  /** The entry, removed: a pending sign-in is used once. */
  take(key: string | undefined): T | undefined {
    const entry = this.get(key);
    if (key) this.#entries.delete(key);
    return entry;
  }
}

export async function buildOidcProduct(options: OidcProductOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  const pending = new Store<PendingSignIn>();
  const sessions = new Store<Session>();
  const secure = new URL(options.redirectUri).protocol === 'https:';

  // Discovery on first use (and again after a failure): the product starts whether or not Gatehouse is up yet.
  let discovered: Promise<oidc.Configuration> | undefined;
  function configuration(): Promise<oidc.Configuration> {
    discovered ??= oidc
      .discovery(
        new URL(options.issuer),
        options.clientId,
        undefined,
        oidc.ClientSecretBasic(options.clientSecret),
        options.allowInsecureHttp ? { execute: [oidc.allowInsecureRequests] } : undefined,
      )
      .then((config) => {
        // The ID token's signature is checked against Gatehouse's published keys, not only its claims.
        oidc.enableNonRepudiationChecks(config);
        return config;
      })
      .catch((error: unknown) => {
        discovered = undefined;
        throw error;
      });
    return discovered;
  }

  function cookie(request: FastifyRequest, name: string): string | undefined {
    return parseCookie(request.headers.cookie ?? '')[name];
  }

  function setCookie(reply: FastifyReply, name: string, value: string, maxAgeMs: number): void {
    reply.header(
      'set-cookie',
      stringifySetCookie({
        name,
        value,
        httpOnly: true,
        secure,
        sameSite: 'lax',
        path: '/',
        maxAge: Math.floor(maxAgeMs / 1000),
      }),
    );
  }

  const signedIn = (request: FastifyRequest) => sessions.get(cookie(request, SESSION_COOKIE));

  // Gatehouse unreachable, or answering what the product cannot use: a page saying so.
  app.setErrorHandler((_error, _request, reply) =>
    reply
      .code(502)
      .type('text/html; charset=utf-8')
      .send(messagePage('Sign-in is unavailable', 'Gatehouse could not be reached. Try again in a moment.')),
  );

  app.get('/', async (request, reply) => {
    const session = signedIn(request);
    reply.header('cache-control', 'no-store');
    return reply.type('text/html; charset=utf-8').send(session ? homePage(session.claims) : signedOutPage());
  });

  app.get('/login', async (_request, reply) => {
    const config = await configuration();
    const signIn: PendingSignIn = {
      verifier: oidc.randomPKCECodeVerifier(),
      state: oidc.randomState(),
      nonce: oidc.randomNonce(),
      expiresAt: Date.now() + SIGN_IN_TTL_MS,
    };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: options.redirectUri,
      scope: SCOPE,
      code_challenge: await oidc.calculatePKCECodeChallenge(signIn.verifier),
      code_challenge_method: 'S256',
      state: signIn.state,
      nonce: signIn.nonce,
    });
    setCookie(reply, SIGN_IN_COOKIE, pending.add(signIn), SIGN_IN_TTL_MS);
    return reply.redirect(url.href, 303);
  });

  app.get('/callback', async (request, reply) => {
    const signIn = pending.take(cookie(request, SIGN_IN_COOKIE));
    setCookie(reply, SIGN_IN_COOKIE, '', 0);
    if (!signIn) {
      return reply
        .code(400)
        .type('text/html; charset=utf-8')
        .send(messagePage('This sign-in has expired', 'Start again from the home page.'));
    }
    const config = await configuration();
    // The URL Gatehouse sent the browser to: the registered redirect URI with the response's parameters.
    const current = new URL(options.redirectUri);
    current.search = new URL(request.url, current).search;
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: signIn.verifier,
        expectedState: signIn.state,
        expectedNonce: signIn.nonce,
        idTokenExpected: true,
      });
    } catch (error) {
      // access_denied (the person said no), a wrong state, a refused code: nobody is signed in.
      const reason = error instanceof oidc.AuthorizationResponseError ? error.error_description : undefined;
      return reply
        .code(400)
        .type('text/html; charset=utf-8')
        .send(messagePage('You are not signed in', reason ?? 'The sign-in did not complete.'));
    }
    const idClaims = tokens.claims();
    if (!idClaims || !tokens.id_token) throw new Error('the token response has no ID token');
    const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, idClaims.sub);
    const key = sessions.add({
      claims: { ...idClaims, ...userinfo },
      idToken: tokens.id_token,
      expiresAt: Date.now() + SESSION_TTL_MS,
    });
    setCookie(reply, SESSION_COOKIE, key, SESSION_TTL_MS);
    return reply.redirect('/', 303);
  });

  app.get('/logout', async (request, reply) => {
    const key = cookie(request, SESSION_COOKIE);
    const session = sessions.take(key);
    setCookie(reply, SESSION_COOKIE, '', 0);
    if (!session) return reply.redirect('/', 303);
    // Gatehouse asks whether to sign out there too, then comes back to postLogoutRedirectUri.
    const url = oidc.buildEndSessionUrl(await configuration(), {
      id_token_hint: session.idToken,
      post_logout_redirect_uri: options.postLogoutRedirectUri,
    });
    return reply.redirect(url.href, 303);
  });

  return app;
}

/** Text for HTML, attribute values included. */
function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

function document(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Example product</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function signedOutPage(): string {
  return document(
    'Welcome',
    `<h1>Example product</h1>
<p>You are not signed in.</p>
<p><a href="/login">Sign in with Gatehouse</a></p>`,
  );
}

interface Organization {
  name: string;
  role: string;
}

function homePage(claims: Record<string, unknown>): string {
  const name = [claims.given_name, claims.family_name].filter(Boolean).join(' ') || claims.preferred_username;
  const organizations = Array.isArray(claims.organizations) ? (claims.organizations as Organization[]) : [];
  const list = organizations.length
    ? `<ul>${organizations.map((o) => `<li>${escapeHtml(o.name)} (${escapeHtml(o.role)})</li>`).join('')}</ul>`
    : '<p>You are in no organization.</p>';
  return document(
    'Signed in',
    `<h1>Example product</h1>
<p id="signed-in-as">Signed in as <strong>${escapeHtml(name)}</strong> (<span id="email">${escapeHtml(claims.email)}</span>)</p>
<h2>Your organizations</h2>
${list}
<p><a href="/logout">Sign out</a></p>`,
  );
}

function messagePage(title: string, detail: string): string {
  return document(
    title,
    `<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(detail)}</p>
<p><a href="/">Home</a></p>`,
  );
}
