import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface GithubUser {
  id: number;
  login: string;
  name: string | null;
  /** The public profile address (often null on GitHub). */
  email: string | null;
  emails: { email: string; primary: boolean; verified: boolean; visibility: 'public' | 'private' | null }[];
}

/** How the REST API misbehaves: `down` answers 503, `garbage` answers 200 with a body that is not JSON. */
export type GithubApiMode = 'ok' | 'down' | 'garbage';

interface PendingCode {
  login: string;
  clientId: string;
  redirectUri: string;
  challenge: string | undefined;
  method: string | undefined;
}

/**
 * GitHub as a relying party sees it, on a loopback port: the OAuth web flow
 * (`/login/oauth/authorize`, approving at once as `nextLogin`, and
 * `/login/oauth/access_token` with its 200-with-an-error answers) and the two
 * REST calls Gatehouse makes (`/user`, `/user/emails`) under `apiPath`, as
 * GitHub Enterprise Server serves them under `/api/v3`.
 */
export class GithubServer {
  readonly url: string;
  readonly apiUrl: string;
  readonly users = new Map<string, GithubUser>();
  /** The person who approves the next authorization. */
  nextLogin: string | undefined;
  apiMode: GithubApiMode = 'ok';
  /** Every `code_challenge` the authorize endpoint was given, in order. */
  readonly challenges: (string | undefined)[] = [];
  readonly #clients: Map<string, string>;
  readonly #codes = new Map<string, PendingCode>();
  readonly #tokens = new Map<string, string>();
  readonly #apiPath: string;
  readonly #server: Server;

  private constructor(server: Server, url: string, apiPath: string, clients: Map<string, string>) {
    this.#server = server;
    this.url = url;
    this.#apiPath = apiPath;
    this.apiUrl = `${url}${apiPath}`;
    this.#clients = clients;
  }

  static async start(options: { clients: Record<string, string>; apiPath?: string }): Promise<GithubServer> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const github = new GithubServer(server, url, options.apiPath ?? '', new Map(Object.entries(options.clients)));
    server.on('request', (req, res) => {
      github.#handle(req, res).catch((error: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
      });
    });
    return github;
  }

  /** Adds a user (a fresh numeric id) and returns it. */
  addUser(login: string, emails: GithubUser['emails'], name: string | null = null): GithubUser {
    const user: GithubUser = { id: 1_000_000 + this.users.size * 7 + 3, login, name, email: null, emails };
    this.users.set(login, user);
    return user;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    if (req.method === 'GET' && url.pathname === '/login/oauth/authorize') return this.#authorize(url, res);
    if (req.method === 'POST' && url.pathname === '/login/oauth/access_token') {
      return this.#accessToken(req, res, new URLSearchParams(await bodyOf(req)));
    }
    if (
      req.method === 'GET' &&
      (url.pathname === `${this.#apiPath}/user` || url.pathname === `${this.#apiPath}/user/emails`)
    ) {
      return this.#api(req, res, url.pathname.endsWith('/emails'));
    }
    sendJson(res, 404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
  }

  #authorize(url: URL, res: ServerResponse): void {
    const clientId = url.searchParams.get('client_id') ?? '';
    const redirectUri = url.searchParams.get('redirect_uri') ?? '';
    const state = url.searchParams.get('state');
    const challenge = url.searchParams.get('code_challenge') ?? undefined;
    this.challenges.push(challenge);
    if (!this.#clients.has(clientId) || !this.nextLogin || !this.users.has(this.nextLogin)) {
      res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>404</h1>');
      return;
    }
    const code = randomBytes(10).toString('hex');
    this.#codes.set(code, {
      login: this.nextLogin,
      clientId,
      redirectUri,
      challenge,
      method: url.searchParams.get('code_challenge_method') ?? undefined,
    });
    const back = new URL(redirectUri);
    back.searchParams.set('code', code);
    if (state !== null) back.searchParams.set('state', state);
    res.writeHead(302, { location: back.href }).end();
  }

  #accessToken(req: IncomingMessage, res: ServerResponse, form: URLSearchParams): void {
    const wantsJson = /application\/json/.test(String(req.headers.accept ?? ''));
    const answer = (body: Record<string, string>) => {
      // GitHub answers 200 whatever happened; the body says what.
      if (wantsJson) sendJson(res, 200, body);
      else
        res
          .writeHead(200, { 'content-type': 'application/x-www-form-urlencoded' })
          .end(new URLSearchParams(body).toString());
    };
    const clientId = form.get('client_id') ?? '';
    const secret = this.#clients.get(clientId);
    if (secret === undefined || form.get('client_secret') !== secret) {
      answer({
        error: 'incorrect_client_credentials',
        error_description: 'The client_id and/or client_secret passed are incorrect.',
        error_uri:
          'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials',
      });
      return;
    }
    const code = form.get('code') ?? '';
    const pending = this.#codes.get(code);
    this.#codes.delete(code);
    const verifier = form.get('code_verifier');
    const pkceOk =
      pending?.challenge === undefined ||
      (pending.method === 'S256' &&
        verifier !== null &&
        createHash('sha256').update(verifier).digest('base64url') === pending.challenge);
    if (!pending || pending.clientId !== clientId || !pkceOk || form.get('redirect_uri') !== pending.redirectUri) {
      answer({
        error: 'bad_verification_code',
        error_description: 'The code passed is incorrect or expired.',
        error_uri:
          'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code',
      });
      return;
    }
    const token = `gho_${randomBytes(18).toString('base64url')}`;
    this.#tokens.set(token, pending.login);
    answer({ access_token: token, token_type: 'bearer', scope: 'read:user,user:email' });
  }

  #api(req: IncomingMessage, res: ServerResponse, emails: boolean): void {
    if (this.apiMode === 'down') {
      sendJson(res, 503, { message: 'Service Unavailable' });
      return;
    }
    if (this.apiMode === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('<html>unicorn</html>');
      return;
    }
    const token = /^(?:Bearer|token) (.+)$/i.exec(String(req.headers.authorization ?? ''))?.[1];
    const login = token ? this.#tokens.get(token) : undefined;
    const user = login ? this.users.get(login) : undefined;
    if (!user) {
      sendJson(res, 401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
      return;
    }
    if (emails) sendJson(res, 200, user.emails);
    else sendJson(res, 200, { id: user.id, login: user.login, name: user.name, email: user.email, type: 'User' });
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
}

async function bodyOf(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}
