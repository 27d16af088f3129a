import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import Provider from 'oidc-provider';
import { formIn, type HttpBrowser } from './http-browser.ts';

export interface UpstreamAccount {
  email?: string;
  email_verified?: boolean;
  name?: string;
  given_name?: string;
  family_name?: string;
}

/**
 * A real OpenID Connect provider (`oidc-provider`) on a loopback port: the
 * issuer Gatehouse federates with in tests, found through discovery. Its
 * own development login page takes any login (it becomes the `sub`) and
 * any password; `accounts` says what each `sub` asserts.
 */
export class UpstreamIdp {
  readonly issuer: string;
  readonly provider: Provider;
  readonly accounts: Record<string, UpstreamAccount>;
  readonly #server: Server;

  private constructor(issuer: string, provider: Provider, server: Server, accounts: Record<string, UpstreamAccount>) {
    this.issuer = issuer;
    this.provider = provider;
    this.#server = server;
    this.accounts = accounts;
  }

  static async start(options: {
    clients: { client_id: string; client_secret: string; redirect_uris: string[] }[];
    accounts?: Record<string, UpstreamAccount>;
  }): Promise<UpstreamIdp> {
    const accounts = options.accounts ?? {};
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    const issuer = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const provider = new Provider(issuer, {
      clients: options.clients.map((c) => ({ ...c, token_endpoint_auth_method: 'client_secret_post' })),
      cookies: { keys: [randomBytes(32).toString('base64url')] },
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'given_name', 'family_name'] },
      conformIdTokenClaims: false,
      features: { devInteractions: { enabled: true } },
      pkce: { required: () => true },
      ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
      async findAccount(_ctx, sub) {
        return { accountId: sub, claims: async () => ({ sub, ...(accounts[sub] ?? {}) }) };
      },
    });
    server.on('request', provider.callback());
    return new UpstreamIdp(issuer, provider, server, accounts);
  }

  /**
   * In `browser`, at the provider's login page `page` (where Gatehouse sent
   * it): sign in as `login`, agree, and follow on until the browser is back
   * at `stopAt` (or further, to where Gatehouse sends it).
   */
  async signIn(
    browser: HttpBrowser,
    page: { url: string; body: string },
    login: string,
    stopAt?: string,
  ): Promise<{ response: Response; url: string }> {
    assert.ok(page.url.startsWith(this.issuer), `at the provider: ${page.url}`);
    const loginForm = formIn(page.body, 'name="login"');
    let next = await browser.follow(
      await browser.post(new URL(loginForm.action, this.issuer).href, { ...loginForm.fields, login, password: 'any' }),
      stopAt,
    );
    if (next.url.startsWith(this.issuer) && next.response.status === 200) {
      const body = await next.response.text();
      const consent = formIn(body, 'value="consent"');
      next = await browser.follow(
        await browser.post(new URL(consent.action, this.issuer).href, consent.fields),
        stopAt,
      );
    }
    return next;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
