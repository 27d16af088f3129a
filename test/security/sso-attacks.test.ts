import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { PROBLEMS } from '../../src/domain/errors.ts';
import { sha256Hex } from '../../src/infra/sha256.ts';
import { startApp, strongPassword, uniqueName } from '../helpers.ts';
import { freePort } from '../support/ports.ts';
import { assertProblem } from '../support/problem.ts';

/**
 * Hostile answers to Gatehouse's federated sign-in. The issuer is crafted
 * here: a few lines of node:http speaking OpenID Connect's wire format, so
 * that each test chooses what the ID token says and who signed it.
 */

type Claims = Record<string, unknown>;

interface Authorization {
  nonce: string | null;
  clientId: string | null;
}

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

class CraftedIssuer {
  readonly issuer: string;
  readonly #server: Server;
  readonly #key: KeyPair;
  readonly #rogue: KeyPair;
  readonly #jwk: JWK;
  readonly #codes = new Map<string, Authorization>();
  /** What the next ID token says: the correct claims for the authorization, changed by the test. */
  claims: (correct: Claims) => Claims = (c) => c;
  /** Sign with a key that is not in the JWKS: under the published key's `kid`, or under a `kid` of its own. */
  rogueKey: 'no' | 'same_kid' | 'unknown_kid' = 'no';
  /** How the token endpoint answers. */
  tokenEndpoint: 'ok' | 'http_500' | 'garbage' = 'ok';
  /** Authorization requests as received. */
  readonly authorizations: URL[] = [];

  private constructor(issuer: string, server: Server, key: KeyPair, rogue: KeyPair, jwk: JWK) {
    this.issuer = issuer;
    this.#server = server;
    this.#key = key;
    this.#rogue = rogue;
    this.#jwk = jwk;
    server.on('request', (req, res) => {
      this.#handle(req, res).catch((error) => {
        res.statusCode = 599;
        res.end(String(error));
      });
    });
  }

  static async start(): Promise<CraftedIssuer> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    const issuer = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const key = await generateKeyPair('RS256');
    const rogue = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(key.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    return new CraftedIssuer(issuer, server, key, rogue, jwk);
  }

  reset(): void {
    this.claims = (c) => c;
    this.rogueKey = 'no';
    this.tokenEndpoint = 'ok';
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.issuer);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/.well-known/openid-configuration') {
      // No authorization_response_iss_parameter_supported: the redirect back carries no `iss`.
      return json(200, {
        issuer: this.issuer,
        authorization_endpoint: `${this.issuer}/authorize`,
        token_endpoint: `${this.issuer}/token`,
        jwks_uri: `${this.issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        token_endpoint_auth_methods_supported: ['client_secret_post'],
        code_challenge_methods_supported: ['S256'],
        scopes_supported: ['openid', 'email', 'profile'],
      });
    }
    if (url.pathname === '/jwks') return json(200, { keys: [this.#jwk] });
    if (url.pathname === '/authorize') {
      this.authorizations.push(url);
      const code = randomBytes(16).toString('base64url');
      this.#codes.set(code, { nonce: url.searchParams.get('nonce'), clientId: url.searchParams.get('client_id') });
      const back = new URL(String(url.searchParams.get('redirect_uri')));
      back.searchParams.set('code', code);
      back.searchParams.set('state', String(url.searchParams.get('state')));
      res.writeHead(302, { location: back.href });
      res.end();
      return;
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const form = new URLSearchParams(body);
      const authorization = this.#codes.get(String(form.get('code')));
      if (!authorization) return json(400, { error: 'invalid_grant' });
      if (this.tokenEndpoint === 'http_500') {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('Internal Server Error');
        return;
      }
      if (this.tokenEndpoint === 'garbage') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('<html><body>Oops</body></html>');
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      const correct: Claims = {
        iss: this.issuer,
        aud: authorization.clientId ?? form.get('client_id'),
        sub: 'subject-unset',
        nonce: authorization.nonce,
        iat: now,
        exp: now + 300,
      };
      const { iss, aud, sub, exp, iat, ...rest } = this.claims(correct);
      const signer = new SignJWT(rest)
        .setProtectedHeader({ alg: 'RS256', kid: this.rogueKey === 'unknown_kid' ? 'k2' : 'k1', typ: 'JWT' })
        .setIssuer(String(iss))
        .setSubject(String(sub))
        .setAudience(aud as string | string[])
        .setIssuedAt(Number(iat))
        .setExpirationTime(Number(exp));
      const idToken = await signer.sign(this.rogueKey === 'no' ? this.#key.privateKey : this.#rogue.privateKey);
      return json(200, {
        access_token: randomBytes(16).toString('base64url'),
        token_type: 'Bearer',
        expires_in: 300,
        id_token: idToken,
      });
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Discovery documents no client can read: HTML at `/html`, broken JSON at `/badjson`. */
async function garbageServer(): Promise<{ base: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/html/')) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>Maintenance</title><h1>Back soon</h1>');
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"issuer": "http://127.0.0.1/badjson", "authorization_endpoint": ');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return {
    base,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Gatehouse {
  app: FastifyInstance;
  base: string;
}

async function startGatehouse(env: Record<string, string>): Promise<Gatehouse> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const app = await startApp({
    PUBLIC_URL: base,
    REDIS_KEY_PREFIX: `t:${uniqueName('ssoa')}:`,
    SSO_PROVIDERS: 'acme',
    SSO_ACME_CLIENT_ID: 'gatehouse',
    SSO_ACME_CLIENT_SECRET: randomBytes(24).toString('base64url'),
    SSO_ACME_LABEL: 'Continue with Acme',
    ...env,
  });
  await app.listen({ host: '127.0.0.1', port });
  return { app, base };
}

interface Answer {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  setCookies: string[];
  location: string | null;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, { redirect: 'manual', headers });
  const received: Record<string, string> = {};
  res.headers.forEach((value, name) => {
    received[name] = value;
  });
  return {
    statusCode: res.status,
    headers: received,
    body: await res.text(),
    setCookies: res.headers.getSetCookie(),
    location: res.headers.get('location'),
  };
}

function cookieValue(answer: Answer, name: string): string | undefined {
  const header = answer.setCookies.find((c) => c.startsWith(`${name}=`));
  return header?.split(';')[0]?.slice(name.length + 1);
}

interface Started {
  binding: string;
  authorizeUrl: URL;
  state: string;
}

/** `/start` as a browser: the binding cookie and the provider's authorization URL. */
async function start(gh: Gatehouse, provider = 'acme', redirectTo?: string): Promise<Started> {
  const query = redirectTo === undefined ? '' : `?redirect_to=${encodeURIComponent(redirectTo)}`;
  const res = await get(`${gh.base}/api/v1/sso/${provider}/start${query}`);
  assert.equal(res.statusCode, 302, res.body);
  const binding = cookieValue(res, 'gatehouse-sso');
  assert.ok(binding, 'the binding cookie');
  const authorizeUrl = new URL(String(res.location));
  return { binding, authorizeUrl, state: String(authorizeUrl.searchParams.get('state')) };
}

/** The provider's redirect back to Gatehouse's callback (the crafted issuer answers at once). */
async function authorize(started: Started): Promise<string> {
  const res = await get(started.authorizeUrl.href);
  assert.equal(res.statusCode, 302, res.body);
  return String(res.location);
}

async function callback(url: string, binding: string | undefined, accept = 'application/json'): Promise<Answer> {
  return get(url, { accept, ...(binding === undefined ? {} : { cookie: `gatehouse-sso=${binding}` }) });
}

/** The whole round: start, the provider's answer, the callback with this browser's cookie. */
async function signInRound(gh: Gatehouse, accept = 'application/json'): Promise<Answer> {
  const started = await start(gh);
  return callback(await authorize(started), started.binding, accept);
}

interface Snapshot {
  users: number;
  identities: number;
  sessions: number;
  audit: number;
}

async function snapshot(app: FastifyInstance): Promise<Snapshot> {
  const db = app.gatehouse.db;
  const count = async (table: 'users' | 'user_identities' | 'sessions') =>
    Number(
      (
        await db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const audit = await db
    .selectFrom('audit_logs')
    .select((eb) => eb.fn.max<number>('id').as('id'))
    .executeTakeFirstOrThrow();
  return {
    users: await count('users'),
    identities: await count('user_identities'),
    sessions: await count('sessions'),
    audit: Number(audit.id ?? 0),
  };
}

/** Refusal reasons audited (`sso_refused`) since `before`. */
async function refusalsSince(app: FastifyInstance, before: Snapshot): Promise<string[]> {
  const rows = await app.gatehouse.db
    .selectFrom('audit_logs')
    .select('details')
    .where('action', '=', 'sso_refused')
    .where('id', '>', before.audit)
    .orderBy('id')
    .execute();
  return rows.map((r) => String((r.details as Record<string, unknown>).reason));
}

/** Nothing issued or linked since `before`, no session cookie, and one refusal audited for `reason`. */
async function assertNothingIssued(
  app: FastifyInstance,
  before: Snapshot,
  answer: Answer,
  reason: RegExp,
  email?: string,
): Promise<void> {
  const now = await snapshot(app);
  assert.equal(now.users, before.users, 'no account made');
  assert.equal(now.identities, before.identities, 'no identity linked');
  assert.equal(now.sessions, before.sessions, 'no session');
  for (const cookie of answer.setCookies) {
    assert.doesNotMatch(cookie, /gatehouse-session=[^;]/, 'no session cookie');
    assert.match(cookie, /^gatehouse-sso=;/, `only the binding cookie, cleared: ${cookie}`);
  }
  if (email) {
    const user = await app.gatehouse.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
    assert.equal(user, undefined, 'no account for the address');
  }
  const reasons = await refusalsSince(app, before);
  assert.equal(reasons.length, 1, `one refusal audited: ${reasons.join(', ')}`);
  assert.match(reasons[0] ?? '', reason);
}

function person(domain = 'example.com'): { sub: string; email: string } {
  const name = uniqueName('fed');
  return { sub: `sub-${name}`, email: `${name}@${domain}` };
}

let idp: CraftedIssuer;
before(async () => {
  idp = await CraftedIssuer.start();
});
after(async () => {
  await idp?.close();
});
beforeEach(() => idp?.reset());

describe('the callback is bound to the browser that started it, once', () => {
  let gh: Gatehouse;
  before(async () => {
    gh = await startGatehouse({ SSO_ACME_ISSUER: idp.issuer });
  });
  after(async () => {
    await gh?.app.close();
  });

  test('no state in the callback: 400 SSO_STATE_INVALID (state_missing)', async () => {
    const p = person();
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
    const started = await start(gh);
    const back = new URL(await authorize(started));
    back.searchParams.delete('state');
    const before = await snapshot(gh.app);
    const res = await callback(back.href, started.binding);
    assertProblem(res, 400, 'SSO_STATE_INVALID');
    await assertNothingIssued(gh.app, before, res, /^state_missing$/, p.email);
  });

  test("another browser's state with this browser's cookie: 400 SSO_STATE_INVALID (state_invalid)", async () => {
    const p = person();
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
    const victim = await start(gh);
    const attacker = await start(gh);
    const attackerCallback = await authorize(attacker);
    const before = await snapshot(gh.app);
    const res = await callback(attackerCallback, victim.binding);
    assertProblem(res, 400, 'SSO_STATE_INVALID');
    await assertNothingIssued(gh.app, before, res, /^state_invalid$/, p.email);
  });

  test('no binding cookie: 400 SSO_STATE_INVALID (state_missing)', async () => {
    const p = person();
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
    const started = await start(gh);
    const back = await authorize(started);
    const before = await snapshot(gh.app);
    const res = await callback(back, undefined);
    assertProblem(res, 400, 'SSO_STATE_INVALID');
    await assertNothingIssued(gh.app, before, res, /^state_missing$/, p.email);
  });

  test('an expired state: 400 SSO_STATE_INVALID (state_invalid)', async () => {
    const p = person();
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
    const started = await start(gh);
    const back = await authorize(started);
    const aged = await gh.app.gatehouse.db
      .updateTable('sso_states')
      .set({ expires_at: new Date(Date.now() - 60_000) })
      .where('state_hash', '=', sha256Hex(started.state))
      .executeTakeFirst();
    assert.equal(Number(aged.numUpdatedRows), 1);
    const before = await snapshot(gh.app);
    const res = await callback(back, started.binding);
    assertProblem(res, 400, 'SSO_STATE_INVALID');
    await assertNothingIssued(gh.app, before, res, /^state_invalid$/, p.email);
  });

  test('the provider answers with an error: 401 SSO_FAILED (provider_error), the state spent', async () => {
    const started = await start(gh);
    const back = new URL(started.authorizeUrl.searchParams.get('redirect_uri') ?? '');
    back.searchParams.set('error', 'access_denied');
    back.searchParams.set('state', started.state);
    const before = await snapshot(gh.app);
    const res = await callback(back.href, started.binding);
    assertProblem(res, 401, 'SSO_FAILED');
    await assertNothingIssued(gh.app, before, res, /^provider_error:access_denied$/);
    const again = await callback(await authorize(started), started.binding);
    assertProblem(again, 400, 'SSO_STATE_INVALID');
  });

  test('a replayed callback (same URL, same cookie) after a success: 400, no second session', async () => {
    const p = person();
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
    const started = await start(gh);
    const back = await authorize(started);
    const first = await callback(back, started.binding);
    assert.equal(first.statusCode, 303, first.body);
    assert.ok(cookieValue(first, 'gatehouse-session'), 'the first callback signs in');
    const user = await gh.app.gatehouse.db
      .selectFrom('users')
      .select('id')
      .where('email', '=', p.email)
      .executeTakeFirstOrThrow();

    const before = await snapshot(gh.app);
    const replay = await callback(back, started.binding);
    assertProblem(replay, 400, 'SSO_STATE_INVALID');
    await assertNothingIssued(gh.app, before, replay, /^state_invalid$/);
    const sessions = await gh.app.gatehouse.db
      .selectFrom('sessions')
      .select('id')
      .where('user_id', '=', user.id)
      .execute();
    assert.equal(sessions.length, 1, 'one session only');
  });
});

describe('ID tokens that do not check out (a crafted issuer)', () => {
  let gh: Gatehouse;
  before(async () => {
    gh = await startGatehouse({ SSO_ACME_ISSUER: idp.issuer });
  });
  after(async () => {
    await gh?.app.close();
  });

  test('control: a correct token from the crafted issuer signs in', async () => {
    const p = person();
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
    const res = await signInRound(gh);
    assert.equal(res.statusCode, 303, res.body);
    assert.ok(cookieValue(res, 'gatehouse-session'), 'a session cookie');
    const authorization = idp.authorizations.at(-1);
    assert.ok(authorization?.searchParams.get('nonce'), 'the authorization request carries a nonce');
    assert.equal(authorization?.searchParams.get('code_challenge_method'), 'S256');
    const user = await gh.app.gatehouse.db
      .selectFrom('users')
      .select('id')
      .where('email', '=', p.email)
      .executeTakeFirstOrThrow();
    const identity = await gh.app.gatehouse.db
      .selectFrom('user_identities')
      .select('subject')
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    assert.equal(identity.subject, p.sub);
  });

  const cases: { name: string; reason: RegExp; tamper: (p: { sub: string; email: string }) => void }[] = [
    {
      name: 'a wrong nonce',
      reason: /^token_refused:OAUTH_JWT_CLAIM_COMPARISON_FAILED$/,
      tamper: (p) => {
        idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true, nonce: 'not-the-nonce' });
      },
    },
    {
      name: 'the audience of another client',
      reason: /^token_refused:OAUTH_JWT_CLAIM_COMPARISON_FAILED$/,
      tamper: (p) => {
        idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true, aud: 'another-client' });
      },
    },
    {
      name: "signed by a key not in the JWKS, under the published key's kid",
      reason: /^token_refused:OAUTH_(INVALID_RESPONSE|JWS_SIGNATURE_VERIFICATION_FAILED)$/,
      tamper: (p) => {
        idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
        idp.rogueKey = 'same_kid';
      },
    },
    {
      name: 'signed by a key not in the JWKS, under a kid of its own',
      reason: /^token_refused:OAUTH_(INVALID_RESPONSE|KEY_SELECTION_FAILED)$/,
      tamper: (p) => {
        idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
        idp.rogueKey = 'unknown_kid';
      },
    },
    {
      name: 'expired',
      reason: /^token_refused:OAUTH_JWT_TIMESTAMP_CHECK_FAILED$/,
      tamper: (p) => {
        const now = Math.floor(Date.now() / 1000);
        idp.claims = (c) => ({
          ...c,
          sub: p.sub,
          email: p.email,
          email_verified: true,
          iat: now - 7200,
          exp: now - 3600,
        });
      },
    },
    {
      name: 'the issuer of another provider (mix-up)',
      reason: /^token_refused:OAUTH_JWT_CLAIM_COMPARISON_FAILED$/,
      tamper: (p) => {
        idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true, iss: 'https://evil.example' });
      },
    },
  ];
  for (const { name, reason, tamper } of cases) {
    test(`${name}: 401 SSO_FAILED, nothing made`, async () => {
      const p = person();
      tamper(p);
      const before = await snapshot(gh.app);
      const res = await signInRound(gh);
      assertProblem(res, 401, 'SSO_FAILED');
      await assertNothingIssued(gh.app, before, res, reason, p.email);
    });
  }
});

/** An account made through the API, its address then marked verified. */
async function verifiedAccount(gh: Gatehouse): Promise<{ id: number; email: string }> {
  const username = uniqueName('owner');
  const email = `${username}@example.com`;
  const res = await gh.app.inject({
    method: 'POST',
    url: '/api/v1/register',
    payload: { email, username, password: strongPassword() },
  });
  assert.equal(res.statusCode, 201, res.body);
  await gh.app.gatehouse.db
    .updateTable('users')
    .set({ email_verified_at: new Date() })
    .where('email', '=', email)
    .execute();
  const user = await gh.app.gatehouse.db
    .selectFrom('users')
    .select('id')
    .where('email', '=', email)
    .executeTakeFirstOrThrow();
  return { id: user.id, email };
}

async function accountRow(gh: Gatehouse, id: number) {
  return gh.app.gatehouse.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

describe('an address that belongs to an existing account, trusted provider', () => {
  let gh: Gatehouse;
  before(async () => {
    gh = await startGatehouse({ SSO_ACME_ISSUER: idp.issuer, SSO_ACME_TRUSTED: 'true' });
  });
  after(async () => {
    await gh?.app.close();
  });

  test('an unverified address at the provider: 409 SSO_ACCOUNT_EXISTS, no link, the account untouched', async () => {
    const owner = await verifiedAccount(gh);
    const was = await accountRow(gh, owner.id);
    idp.claims = (c) => ({ ...c, sub: uniqueName('sub'), email: owner.email, email_verified: false });
    const before = await snapshot(gh.app);
    const res = await signInRound(gh);
    assertProblem(res, 409, 'SSO_ACCOUNT_EXISTS');
    await assertNothingIssued(gh.app, before, res, /^email_belongs_to_account$/);
    assert.deepEqual(await accountRow(gh, owner.id), was);
  });

  test('verified on both sides: linked, signed in, identity_linked audited and mailed', async () => {
    const owner = await verifiedAccount(gh);
    const sub = uniqueName('sub');
    idp.claims = (c) => ({ ...c, sub, email: owner.email, email_verified: true });
    const before = await snapshot(gh.app);
    const res = await signInRound(gh);
    assert.equal(res.statusCode, 303, res.body);
    assert.ok(cookieValue(res, 'gatehouse-session'), 'a session cookie');
    const identity = await gh.app.gatehouse.db
      .selectFrom('user_identities')
      .select(['user_id', 'subject'])
      .where('provider', '=', 'acme')
      .where('subject', '=', sub)
      .executeTakeFirstOrThrow();
    assert.equal(identity.user_id, owner.id);
    const sessions = await gh.app.gatehouse.db
      .selectFrom('sessions')
      .select('id')
      .where('user_id', '=', owner.id)
      .execute();
    assert.equal(sessions.length, 1);
    assert.equal((await snapshot(gh.app)).users, before.users, 'no second account');
    const linked = await gh.app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'identity_linked')
      .where('user_id', '=', owner.id)
      .executeTakeFirstOrThrow();
    assert.equal((linked.details as Record<string, unknown>).how, 'verified_email');
    const mail = await gh.app.gatehouse.db
      .selectFrom('email_outbox')
      .select('template')
      .where('to_address', '=', owner.email)
      .where('template', '=', 'identity_linked')
      .execute();
    assert.equal(mail.length, 1);
  });
});

describe('an address that belongs to an existing account, provider not trusted', () => {
  let gh: Gatehouse;
  before(async () => {
    gh = await startGatehouse({ SSO_ACME_ISSUER: idp.issuer });
  });
  after(async () => {
    await gh?.app.close();
  });

  test('verified on both sides but not trusted: 409 SSO_ACCOUNT_EXISTS, no automatic link', async () => {
    const owner = await verifiedAccount(gh);
    const was = await accountRow(gh, owner.id);
    idp.claims = (c) => ({ ...c, sub: uniqueName('sub'), email: owner.email, email_verified: true });
    const before = await snapshot(gh.app);
    const res = await signInRound(gh);
    assertProblem(res, 409, 'SSO_ACCOUNT_EXISTS');
    await assertNothingIssued(gh.app, before, res, /^email_belongs_to_account$/);
    assert.deepEqual(await accountRow(gh, owner.id), was);
  });
});

describe('allowed domains', () => {
  let gh: Gatehouse;
  before(async () => {
    gh = await startGatehouse({ SSO_ACME_ISSUER: idp.issuer, SSO_ACME_ALLOWED_DOMAINS: 'example.com' });
  });
  after(async () => {
    await gh?.app.close();
  });

  test('a person at another domain: 403 SSO_DOMAIN_NOT_ALLOWED', async () => {
    const p = person('other.org');
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
    const before = await snapshot(gh.app);
    const res = await signInRound(gh);
    assertProblem(res, 403, 'SSO_DOMAIN_NOT_ALLOWED');
    await assertNothingIssued(gh.app, before, res, /^domain_not_allowed$/, p.email);
  });

  test('an unverified address of the allowed domain: 403 SSO_DOMAIN_NOT_ALLOWED', async () => {
    const p = person('example.com');
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: false });
    const before = await snapshot(gh.app);
    const res = await signInRound(gh);
    assertProblem(res, 403, 'SSO_DOMAIN_NOT_ALLOWED');
    await assertNothingIssued(gh.app, before, res, /^domain_not_allowed$/, p.email);
  });
});

describe('redirect_to at /start', () => {
  let gh: Gatehouse;
  before(async () => {
    gh = await startGatehouse({ SSO_ACME_ISSUER: idp.issuer });
  });
  after(async () => {
    await gh?.app.close();
  });

  async function states(): Promise<number> {
    const rows = await gh.app.gatehouse.db.selectFrom('sso_states').select('id').execute();
    return rows.length;
  }

  for (const target of ['https://evil.example/', '//evil.example', '/\\evil', 'javascript:alert(1)']) {
    test(`${JSON.stringify(target)}: 400 REDIRECT_NOT_ALLOWED, not sent to the provider`, async () => {
      const before = await states();
      const audited = await snapshot(gh.app);
      const res = await get(`${gh.base}/api/v1/sso/acme/start?redirect_to=${encodeURIComponent(target)}`, {
        accept: 'application/json',
      });
      assertProblem(res, 400, 'REDIRECT_NOT_ALLOWED');
      assert.equal(res.location, null);
      assert.equal(cookieValue(res, 'gatehouse-sso'), undefined, 'no binding cookie');
      assert.equal(await states(), before, 'no state stored');
      assert.deepEqual(await refusalsSince(gh.app, audited), ['redirect_not_allowed']);
    });
  }

  test('a local path and a URL of PUBLIC_URL are accepted, and the callback goes there', async () => {
    for (const target of ['/account?tab=identities', `${gh.base}/account`]) {
      const p = person();
      idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
      const started = await start(gh, 'acme', target);
      assert.ok(started.authorizeUrl.href.startsWith(`${idp.issuer}/authorize`));
      const res = await callback(await authorize(started), started.binding);
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.location, target);
    }
  });
});

describe('a provider that cannot be reached or answers garbage', () => {
  let gh: Gatehouse;
  let garbage: Awaited<ReturnType<typeof garbageServer>>;
  before(async () => {
    garbage = await garbageServer();
    const closed = await freePort();
    gh = await startGatehouse({
      SSO_PROVIDERS: 'acme,down,html,badjson',
      SSO_ACME_ISSUER: idp.issuer,
      SSO_DOWN_CLIENT_ID: 'gatehouse',
      SSO_DOWN_ISSUER: `http://127.0.0.1:${closed}`,
      SSO_HTML_CLIENT_ID: 'gatehouse',
      SSO_HTML_ISSUER: `${garbage.base}/html`,
      SSO_BADJSON_CLIENT_ID: 'gatehouse',
      SSO_BADJSON_ISSUER: `${garbage.base}/badjson`,
    });
  });
  after(async () => {
    await gh?.app.close();
    await garbage?.close();
  });

  for (const provider of ['down', 'html', 'badjson']) {
    test(`${provider}: /start answers 502 SSO_UNAVAILABLE, no state stored`, async () => {
      const before = await snapshot(gh.app);
      const res = await get(`${gh.base}/api/v1/sso/${provider}/start`, { accept: 'application/json' });
      assertProblem(res, 502, 'SSO_UNAVAILABLE');
      assert.equal(res.location, null);
      assert.equal(cookieValue(res, 'gatehouse-sso'), undefined);
      const rows = await gh.app.gatehouse.db
        .selectFrom('sso_states')
        .select('id')
        .where('provider', '=', provider)
        .execute();
      assert.equal(rows.length, 0);
      const now = await snapshot(gh.app);
      assert.deepEqual([now.users, now.identities, now.sessions], [before.users, before.identities, before.sessions]);
      assert.deepEqual(await refusalsSince(gh.app, before), ['provider_unavailable:discovery']);
    });
  }

  // A token endpoint that fails or answers what no client can parse is the provider's fault: 502, not a refusal.
  for (const [mode, reason] of [
    ['http_500', /^provider_unavailable:OAUTH_RESPONSE_IS_NOT_CONFORM$/],
    ['garbage', /^provider_unavailable:OAUTH_PARSE_ERROR$/],
  ] as const) {
    test(`the token endpoint answers ${mode}: 502 SSO_UNAVAILABLE (never 500), nothing made`, async () => {
      const p = person();
      idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true });
      idp.tokenEndpoint = mode;
      const before = await snapshot(gh.app);
      const res = await signInRound(gh);
      assertProblem(res, 502, 'SSO_UNAVAILABLE');
      await assertNothingIssued(gh.app, before, res, reason, p.email);
    });
  }

  test('a browser (Accept: text/html) is sent to the login page, which shows the message', async () => {
    const p = person();
    idp.claims = (c) => ({ ...c, sub: p.sub, email: p.email, email_verified: true, nonce: 'not-the-nonce' });
    const before = await snapshot(gh.app);
    const res = await signInRound(gh, 'text/html,application/xhtml+xml');
    assert.equal(res.statusCode, 303, res.body);
    assert.equal(res.location, '/login?sso_error=SSO_FAILED');
    await assertNothingIssued(gh.app, before, res, /^token_refused:/, p.email);
    const page = await get(`${gh.base}${res.location}`, { accept: 'text/html' });
    assert.equal(page.statusCode, PROBLEMS.SSO_FAILED.status);
    assert.match(page.body, new RegExp(PROBLEMS.SSO_FAILED.title));

    idp.tokenEndpoint = 'http_500';
    const down = await signInRound(gh, 'text/html');
    assert.equal(down.statusCode, 303, down.body);
    assert.equal(down.location, '/login?sso_error=SSO_UNAVAILABLE');
    const downPage = await get(`${gh.base}${down.location}`, { accept: 'text/html' });
    assert.equal(downPage.statusCode, PROBLEMS.SSO_UNAVAILABLE.status);
    assert.match(downPage.body, new RegExp(PROBLEMS.SSO_UNAVAILABLE.title));
  });
});
