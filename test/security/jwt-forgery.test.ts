/**
 * The attack: forging or bending a JWT to act as someone, or longer than
 * allowed. Tokens with `alg: none`; HS256 signed with the public key the
 * JWKS publishes (algorithm confusion); a foreign RSA or EC key naming the
 * real `kid`; a payload changed under the original signature; an expired
 * token; a wrong `iss` or `aud`; a refresh token used as an access token and
 * the reverse. Gatehouse's TokenService (src/infra/tokens.ts) looks the key
 * up by `kid` and pins the algorithm to that key (never the header's
 * choice), verifies with jose against the configured algorithms, `iss`,
 * `aud`, lifetime and required claims, then checks the `type` claim; every
 * refusal is 401 with `TOKEN_EXPIRED` (expired) or `TOKEN_INVALID`
 * (anything else), and a forged token changes nothing on the server.
 */
import assert from 'node:assert/strict';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import {
  type CryptoKey,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';
import type { DatabaseHandle } from '../../src/db/index.ts';
import {
  bearer,
  createAccount,
  login,
  refreshRequest,
  startAuthApp,
  type TestAccount,
  type Tokens,
  testDatabase,
} from '../api/auth-helpers.ts';
import { json } from '../helpers.ts';
import { Browser } from '../support/browser.ts';
import { testClock } from '../support/clock.ts';
import { assertProblem } from '../support/problem.ts';

const ISSUER = 'http://gatehouse.test';
const AUDIENCE = 'gatehouse';
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const parts = (token: string) => token.split('.') as [string, string, string];

function me(app: FastifyInstance, token: string) {
  return app.inject({ url: '/api/v1/me', headers: bearer(token) });
}

/** 401 with the code, the RFC 6750 challenge, and nothing of the account in the body. */
function assertRefused(res: LightMyRequestResponse, code: 'TOKEN_EXPIRED' | 'TOKEN_INVALID', account?: TestAccount) {
  assertProblem(res, 401, code);
  assert.match(String(res.headers['www-authenticate']), /^Bearer error="invalid_token"/);
  if (account) assert.ok(!res.body.includes(account.email), 'a refusal says nothing about the account');
}

/** An unsigned token: `alg` as given, the signature empty. */
function unsigned(alg: string, payload: JWTPayload, extra: Record<string, unknown> = {}): string {
  return `${b64({ alg, typ: 'JWT', ...extra })}.${b64(payload)}.`;
}

/** HS256 over header and payload with any bytes as the key, as an attacker computes it. */
function hs256(header: Record<string, unknown>, payload: JWTPayload, secret: string | Buffer): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT', ...header })}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

let database: DatabaseHandle;
before(async () => {
  database = await testDatabase();
});
after(() => database.close());

describe('forged tokens against the default HS256 deployment', () => {
  // The test knows SECRET_KEY so that it can sign a token the way Gatehouse does: the baseline
  // that each forgery below differs from in one respect only.
  const secretKey = randomBytes(32).toString('base64url');
  const hsKey = Buffer.from(hkdfSync('sha256', secretKey, '', 'gatehouse jwt hs256', 32));
  const clock = testClock();
  let app: FastifyInstance;
  let victim: TestAccount;
  let other: TestAccount;
  let tokens: Tokens;
  let kid: string;
  let claims: JWTPayload;

  before(async () => {
    app = await startAuthApp({ SECRET_KEY: secretKey }, { clock, database });
    victim = await createAccount(app);
    other = await createAccount(app);
    tokens = await login(app, victim);
    kid = String(decodeProtectedHeader(tokens.access_token).kid);
    claims = decodeJwt(tokens.access_token);
  });
  after(() => app.close());

  /** Signed with the real key, like Gatehouse signs: the claims are the only difference. */
  const sign = (payload: JWTPayload, header: Record<string, unknown> = {}) => hs256({ kid, ...header }, payload, hsKey);

  test('baseline: a token signed with the real key and the real claims is accepted', async () => {
    assert.equal((await me(app, tokens.access_token)).statusCode, 200);
    assert.deepEqual([claims.iss, claims.aud, claims.type], [ISSUER, AUDIENCE, 'access']);
    const res = await me(app, sign({ ...claims, jti: 'baseline' }));
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(json(res).uuid, victim.uuid);
  });

  test('alg "none" (any spelling, with or without kid) is refused 401 TOKEN_INVALID', async () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      assertRefused(await me(app, unsigned(alg, claims, { kid })), 'TOKEN_INVALID', victim);
      assertRefused(await me(app, unsigned(alg, claims)), 'TOKEN_INVALID', victim);
    }
    // The real token with its signature stripped.
    const [header, payload] = parts(tokens.access_token);
    assertRefused(await me(app, `${header}.${payload}.`), 'TOKEN_INVALID');
  });

  test('HS256 with a guessable key (empty, "secret", the kid, SECRET_KEY itself) is refused 401 TOKEN_INVALID', async () => {
    for (const guess of ['', 'secret', kid, secretKey]) {
      assertRefused(await me(app, hs256({ kid }, claims, guess)), 'TOKEN_INVALID');
    }
  });

  test("a payload changed under the original signature (another user's sub, a later exp) is refused 401 TOKEN_INVALID", async () => {
    const [header, , signature] = parts(tokens.access_token);
    const changes: JWTPayload[] = [
      { ...claims, sub: other.uuid, email: other.email },
      { ...claims, exp: (claims.exp as number) + 365 * 86_400 },
      { ...claims, is_superuser: true },
    ];
    for (const changed of changes) {
      assertRefused(await me(app, `${header}.${b64(changed)}.${signature}`), 'TOKEN_INVALID', victim);
    }
    // The signature of one real token on the payload of another.
    const [, otherPayload] = parts((await login(app, other)).access_token);
    assertRefused(await me(app, `${header}.${otherPayload}.${signature}`), 'TOKEN_INVALID');
  });

  test('an expired access token is refused 401 TOKEN_EXPIRED, also one that verified before', async () => {
    const fresh = await login(app, victim);
    assert.equal((await me(app, fresh.access_token)).statusCode, 200, 'verified once: in the verified-token cache');
    const expiredAt = (decodeJwt(fresh.access_token).exp as number) * 1000;
    const start = clock.now();
    try {
      // jose allows 5 s of clock difference: one second past that, the cached token is refused too.
      clock.set(new Date(expiredAt + 6_000));
      const res = await me(app, fresh.access_token);
      assertRefused(res, 'TOKEN_EXPIRED');
      assert.equal(json(res).detail, 'Token has expired');
      // A token never seen before, expired, signed with the real key.
      const now = Math.floor(clock.now().getTime() / 1000);
      assertRefused(await me(app, sign({ ...claims, jti: 'late', iat: now - 3600, exp: now - 60 })), 'TOKEN_EXPIRED');
    } finally {
      clock.set(start);
    }
  });

  test('a lifetime stretched past ACCESS_TOKEN_EXPIRE_MINUTES, or an iat in the future, is refused 401 TOKEN_INVALID', async () => {
    const now = Math.floor(clock.now().getTime() / 1000);
    assertRefused(await me(app, sign({ ...claims, jti: 'old', iat: now - 3 * 3600, exp: now + 600 })), 'TOKEN_INVALID');
    assertRefused(await me(app, sign({ ...claims, jti: 'future', iat: now + 3600, exp: now + 4000 })), 'TOKEN_INVALID');
  });

  test('a wrong or missing iss or aud is refused 401 TOKEN_INVALID', async () => {
    const variants: JWTPayload[] = [
      { ...claims, iss: 'https://evil.test' },
      { ...claims, aud: 'another-service' },
      { ...claims, aud: ['another-service'] },
      { ...claims, iss: undefined },
      { ...claims, aud: undefined },
    ];
    for (const [i, variant] of variants.entries()) {
      assertRefused(await me(app, sign({ ...variant, jti: `iss-aud-${i}` })), 'TOKEN_INVALID');
    }
  });

  test('a refresh token used as an access token is refused 401 TOKEN_INVALID', async () => {
    const res = await me(app, tokens.refresh_token);
    assertRefused(res, 'TOKEN_INVALID');
    assert.equal(json(res).detail, 'Token is not an access token');
    // Nor any other value of `type`, correctly signed.
    for (const type of ['refresh', 'admin', undefined]) {
      assertRefused(await me(app, sign({ ...claims, type, jti: `type-${String(type)}` })), 'TOKEN_INVALID');
    }
  });

  test('an access token used as a refresh token is refused 401 TOKEN_INVALID (invalid_grant), and the session is untouched', async () => {
    const fresh = await login(app, victim);
    const before = await sessionRow(app, fresh.access_token);
    const res = await refreshRequest(app, fresh.access_token);
    assertProblem(res, 401, 'TOKEN_INVALID');
    assert.equal(json(res).error, 'invalid_grant');
    assert.equal(json(res).detail, 'Token is not a refresh token');
    assert.deepEqual(await sessionRow(app, fresh.access_token), before);
    // Forged refresh tokens (none, a changed payload) are refused the same way and spend nothing.
    const [header, payload, signature] = parts(fresh.refresh_token);
    const refreshClaims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as JWTPayload;
    for (const forged of [
      unsigned('none', refreshClaims, { kid }),
      `${header}.${b64({ ...refreshClaims, sub: other.uuid })}.${signature}`,
    ]) {
      assertProblem(await refreshRequest(app, forged), 401, 'TOKEN_INVALID');
    }
    assert.deepEqual(await sessionRow(app, fresh.access_token), before);
    assert.equal(
      (await refreshRequest(app, fresh.refresh_token)).statusCode,
      200,
      'the real refresh token still works',
    );
  });

  test('a refresh token without `gen` (issued before refresh tokens carried it) rotates under the row lock; the successor carries it', async () => {
    const fresh = await login(app, victim);
    const [, payload] = parts(fresh.refresh_token);
    const { gen, ...legacy } = JSON.parse(Buffer.from(payload, 'base64url').toString()) as JWTPayload;
    assert.equal(gen, 0, 'a new session starts at generation 0');
    const res = await refreshRequest(app, sign(legacy));
    assert.equal(res.statusCode, 200, res.body);
    const successor = json<Tokens>(res).refresh_token;
    assert.equal(decodeJwt(successor).gen, 1);
    assert.equal((await sessionRow(app, fresh.access_token)).generation, 1);
    // The successor takes the one-statement path: generation 2, one audit row per rotation.
    const next = json<Tokens>(await refreshRequest(app, successor));
    assert.equal(decodeJwt(next.refresh_token).gen, 2);
    assert.equal((await sessionRow(app, fresh.access_token)).generation, 2);
    const sessionUuid = String(decodeJwt(fresh.access_token).sid);
    const audits = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'token_refresh')
      .where('user_id', '=', victim.id)
      .execute();
    assert.deepEqual(
      audits
        .map((a) => a.details as Record<string, unknown>)
        .filter((d) => d.session_uuid === sessionUuid)
        .map((d) => d.generation),
      [1, 2],
    );
    // The token spent without `gen` is, like any spent token, a reuse after the interval.
    clock.advance(11_000);
    assertProblem(await refreshRequest(app, sign(legacy)), 401, 'REFRESH_TOKEN_REUSED');
  });

  test('a forged session cookie on the pages is no session: /account sends the browser to log in', async () => {
    const browser = new Browser(app);
    const refreshClaims = decodeJwt(tokens.refresh_token);
    for (const forged of [
      unsigned('none', refreshClaims, { kid }),
      tokens.access_token,
      hs256({ kid }, refreshClaims, 'secret'),
    ]) {
      browser.cookies.set('gatehouse-session', forged);
      const res = await browser.get('/account');
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.headers.location, '/login?redirect_to=%2Faccount');
    }
  });
});

describe('forged tokens against an RS256 deployment (the attacker holds only the published JWKS)', () => {
  let app: FastifyInstance;
  let victim: TestAccount;
  let claims: JWTPayload;
  let published: JWK;
  let kid: string;

  before(async () => {
    // The key ring is generated on start, in a directory of its own; the test never reads it.
    const keysDir = mkdtempSync(join(tmpdir(), 'gatehouse-forgery-'));
    app = await startAuthApp({ ALGORITHM: 'RS256', JWT_KEYS_DIR: keysDir }, { database });
    victim = await createAccount(app);
    const tokens = await login(app, victim);
    claims = decodeJwt(tokens.access_token);
    const jwks = json<{ keys: JWK[] }>(await app.inject({ url: '/.well-known/jwks.json' }));
    assert.equal(jwks.keys.length, 1);
    published = jwks.keys[0] as JWK;
    kid = String(published.kid);
    assert.equal(decodeProtectedHeader(tokens.access_token).kid, kid);
    assert.equal((await me(app, tokens.access_token)).statusCode, 200, 'baseline: the real token is accepted');
  });
  after(() => app.close());

  test('HS256 signed with the published public key (PEM, JWK, JWKS, modulus) is refused 401 TOKEN_INVALID', async () => {
    const pem = await exportSPKI((await importJWK(published, 'RS256')) as CryptoKey);
    const jwks = JSON.stringify({ keys: [published] });
    for (const secret of [pem, pem.trim(), JSON.stringify(published), jwks, String(published.n)]) {
      assertRefused(await me(app, hs256({ kid }, claims, secret)), 'TOKEN_INVALID', victim);
      assertRefused(await me(app, hs256({}, claims, secret)), 'TOKEN_INVALID', victim);
    }
  });

  test('alg "none" with the real kid is refused 401 TOKEN_INVALID', async () => {
    assertRefused(await me(app, unsigned('none', claims, { kid })), 'TOKEN_INVALID', victim);
  });

  test('a foreign RSA key naming the real kid is refused 401 TOKEN_INVALID', async () => {
    const foreign = await generateKeyPair('RS256', { modulusLength: 2048 });
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
      .sign(foreign.privateKey);
    assertRefused(await me(app, token), 'TOKEN_INVALID', victim);
  });

  test('a foreign EC key naming the real kid is refused 401 TOKEN_INVALID', async () => {
    const foreign = await generateKeyPair('ES256');
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
      .sign(foreign.privateKey);
    assertRefused(await me(app, token), 'TOKEN_INVALID', victim);
  });

  test('a token bringing its own key (jwk, jku, x5u headers) or an odd kid is refused 401 TOKEN_INVALID', async () => {
    const foreign = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
    const foreignJwk = await exportJWK(foreign.publicKey);
    const headers = [
      { jwk: foreignJwk },
      { kid, jwk: foreignJwk },
      { kid, jku: 'https://evil.test/jwks.json' },
      { kid, x5u: 'https://evil.test/cert.pem' },
      { kid: '../../../../etc/passwd' },
      { kid: `${kid}' OR '1'='1` },
    ];
    for (const header of headers) {
      const token = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...header })
        .sign(foreign.privateKey);
      assertRefused(await me(app, token), 'TOKEN_INVALID', victim);
    }
  });
});

async function sessionRow(app: FastifyInstance, accessToken: string) {
  return app.gatehouse.db
    .selectFrom('sessions')
    .select(['refresh_token_hash', 'previous_token_hash', 'generation', 'revoked_at'])
    .where('uuid', '=', String(decodeJwt(accessToken).sid))
    .executeTakeFirstOrThrow();
}
