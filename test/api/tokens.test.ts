import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import {
  type CryptoKey,
  calculateJwkThumbprint,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  importJWK,
  type JWK,
  jwtVerify,
  SignJWT,
} from 'jose';
import { buildApp } from '../../src/app.ts';
import type { DatabaseHandle } from '../../src/db/index.ts';
import { rotateSigningKey } from '../../src/infra/tokens.ts';
import { json, testConfig, uniqueName } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { assertProblem } from '../support/problem.ts';
import {
  type Body,
  bearer,
  createAccount,
  login,
  refreshRequest,
  startAuthApp,
  type TestAccount,
  testDatabase,
} from './auth-helpers.ts';

const ISSUER = 'http://gatehouse.test';
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function me(app: FastifyInstance, token: string) {
  return app.inject({ url: '/api/v1/me', headers: bearer(token) });
}

/** 401 with the code, and the WWW-Authenticate challenge RFC 6750 asks for. */
function assertRefused(res: LightMyRequestResponse, code: 'UNAUTHORIZED' | 'TOKEN_EXPIRED' | 'TOKEN_INVALID'): Body {
  const body = assertProblem(res, 401, code);
  const challenge = String(res.headers['www-authenticate']);
  assert.match(challenge, /^Bearer\b/);
  if (code !== 'UNAUTHORIZED') assert.match(challenge, /error="invalid_token"/);
  return body;
}

let database: DatabaseHandle;
before(async () => {
  database = await testDatabase();
});
after(() => database.close());

function keysDir(): string {
  return mkdtempSync(join(tmpdir(), 'gatehouse-keys-'));
}

describe('access and refresh tokens (HS256 default)', () => {
  let app: FastifyInstance;
  let account: TestAccount;
  const clock = testClock();

  before(async () => {
    app = await startAuthApp({}, { clock, database });
    account = await createAccount(app);
  });
  after(() => app.close());

  test('claims and lifetimes are as API.md says, with a kid', async () => {
    const tokens = await login(app, account);
    const header = decodeProtectedHeader(tokens.access_token);
    assert.equal(header.alg, 'HS256');
    assert.equal(typeof header.kid, 'string');
    const access = decodeJwt(tokens.access_token);
    assert.equal(access.sub, account.uuid);
    assert.equal(access.email, account.email);
    assert.equal(access.type, 'access');
    assert.equal(access.iss, ISSUER);
    assert.equal(access.aud, 'gatehouse');
    assert.equal(typeof access.jti, 'string');
    assert.equal(access.iat, Math.floor(clock.now().getTime() / 1000));
    assert.equal(access.exp, (access.iat as number) + 30 * 60);
    const session = await app.gatehouse.db
      .selectFrom('sessions')
      .select('uuid')
      .where('user_id', '=', account.id)
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    assert.equal(access.sid, session.uuid);

    const refresh = decodeJwt(tokens.refresh_token);
    assert.equal(decodeProtectedHeader(tokens.refresh_token).kid, header.kid);
    assert.equal(refresh.type, 'refresh');
    assert.equal(refresh.sid, session.uuid);
    assert.equal(refresh.sub, account.uuid);
    assert.equal(refresh.exp, (refresh.iat as number) + 7 * 86_400);
    assert.notEqual(refresh.jti, access.jti);
  });

  test('the HS256 key is derived from SECRET_KEY: another secret does not verify the token', async () => {
    const tokens = await login(app, account);
    const other = await startAuthApp({ SECRET_KEY: 'another-secret-that-is-at-least-32-bytes-long' }, { database });
    try {
      assertRefused(await me(other, tokens.access_token), 'TOKEN_INVALID');
    } finally {
      await other.close();
    }
  });

  test('the JWKS is empty with HS256: the shared key is never published', async () => {
    const res = await app.inject({ url: '/.well-known/jwks.json' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(json(res), { keys: [] });
  });

  test('no Authorization header, another scheme or an empty bearer answer 401 UNAUTHORIZED', async () => {
    assertRefused(await app.inject({ url: '/api/v1/me' }), 'UNAUTHORIZED');
    assertRefused(
      await app.inject({ url: '/api/v1/me', headers: { authorization: 'Basic dXNlcjpwYXNz' } }),
      'UNAUTHORIZED',
    );
    assertRefused(await app.inject({ url: '/api/v1/me', headers: { authorization: 'Bearer ' } }), 'UNAUTHORIZED');
    assertRefused(await app.inject({ url: '/api/v1/me', headers: { authorization: 'Bearer a b c' } }), 'UNAUTHORIZED');
  });

  test('garbage in the bearer answers 401 TOKEN_INVALID', async () => {
    assertRefused(await me(app, 'not-a-jwt'), 'TOKEN_INVALID');
    assertRefused(await me(app, 'eyJhbGciOiJIUzI1NiJ9.e30.'), 'TOKEN_INVALID');
  });

  test('alg: none is refused', async () => {
    const tokens = await login(app, account);
    const { kid } = decodeProtectedHeader(tokens.access_token);
    const payload = tokens.access_token.split('.')[1];
    assertRefused(await me(app, `${b64({ alg: 'none', typ: 'JWT', kid })}.${payload}.`), 'TOKEN_INVALID');
    assertRefused(await me(app, `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`), 'TOKEN_INVALID');
  });

  test('a tampered payload is refused', async () => {
    const tokens = await login(app, account);
    const [header, payload, signature] = tokens.access_token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Body;
    const forged = b64({ ...claims, email: 'admin@example.com' });
    assertRefused(await me(app, `${header}.${forged}.${signature}`), 'TOKEN_INVALID');
    const longer = b64({ ...claims, exp: (claims.exp as number) + 86_400 });
    assertRefused(await me(app, `${header}.${longer}.${signature}`), 'TOKEN_INVALID');
  });

  test('an expired access token answers 401 TOKEN_EXPIRED', async () => {
    const tokens = await login(app, account);
    assert.equal((await me(app, tokens.access_token)).statusCode, 200);
    clock.advance((30 * 60 + 10) * 1000);
    try {
      const body = assertRefused(await me(app, tokens.access_token), 'TOKEN_EXPIRED');
      assert.equal(body.detail, 'Token has expired');
    } finally {
      clock.advance(-(30 * 60 + 10) * 1000);
    }
  });

  test('a refresh token is never accepted as an access token, nor the reverse', async () => {
    const tokens = await login(app, account);
    assertRefused(await me(app, tokens.refresh_token), 'TOKEN_INVALID');
    const res = await refreshRequest(app, tokens.access_token);
    const body = assertRefused(res, 'TOKEN_INVALID');
    assert.equal(body.error, 'invalid_grant');
    // The refresh token still works: the failed attempt did not spend it.
    assert.equal((await refreshRequest(app, tokens.refresh_token)).statusCode, 200);
  });

  test('a revoked session: its access token is refused on the next request', async () => {
    const tokens = await login(app, account);
    assert.equal((await me(app, tokens.access_token)).statusCode, 200);
    const out = await app.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(tokens.access_token) });
    assert.equal(out.statusCode, 204);
    const body = assertRefused(await me(app, tokens.access_token), 'TOKEN_INVALID');
    assert.equal(body.detail, 'The session has been revoked');
  });
});

describe('hostile tokens against an EdDSA deployment whose key the test holds', () => {
  let app: FastifyInstance;
  let account: TestAccount;
  let privateKey: CryptoKey;
  let publicJwk: JWK;
  let kid: string;
  let sid: string;
  const clock = testClock();

  before(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    privateKey = pair.privateKey;
    publicJwk = await exportJWK(pair.publicKey);
    kid = await calculateJwkThumbprint(publicJwk);
    app = await startAuthApp(
      { ALGORITHM: 'EdDSA', JWT_PRIVATE_KEY: await exportPKCS8(pair.privateKey), JWT_KEYS_DIR: keysDir() },
      { clock, database },
    );
    account = await createAccount(app);
    sid = String(decodeJwt((await login(app, account)).access_token).sid);
  });
  after(() => app.close());

  /** Correctly signed by the real key, with the claims a test chooses. */
  function forge(overrides: Body = {}, header: Body = {}): Promise<string> {
    const now = Math.floor(clock.now().getTime() / 1000);
    const claims = {
      sub: account.uuid,
      email: account.email,
      type: 'access',
      sid,
      jti: uniqueName('jti'),
      iat: now,
      exp: now + 600,
      iss: ISSUER,
      aud: 'gatehouse',
      ...overrides,
    };
    for (const [k, v] of Object.entries(claims)) if (v === undefined) delete (claims as Body)[k];
    return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid, typ: 'JWT', ...header }).sign(privateKey);
  }

  test('the configured key signs, carries its thumbprint as kid and is published in the JWKS', async () => {
    const tokens = await login(app, account);
    assert.deepEqual(decodeProtectedHeader(tokens.access_token), { alg: 'EdDSA', kid, typ: 'JWT' });
    const jwks = json<{ keys: JWK[] }>(await app.inject({ url: '/.well-known/jwks.json' }));
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]?.kid, kid);
    assert.equal(jwks.keys[0]?.x, publicJwk.x);
    assert.equal(jwks.keys[0]?.d, undefined, 'private key material must never be published');
    const verified = await jwtVerify(tokens.access_token, createLocalJWKSet(jwks), { issuer: ISSUER });
    assert.equal(verified.payload.sub, account.uuid);
  });

  test('a correctly forged token is accepted (the baseline the refusals below differ from)', async () => {
    assert.equal((await me(app, await forge())).statusCode, 200);
  });

  test('HS256 signed with the public key (algorithm confusion) is refused', async () => {
    const publicPem = await exportSPKI((await importJWK(publicJwk, 'EdDSA')) as CryptoKey);
    const now = Math.floor(clock.now().getTime() / 1000);
    const claims = { sub: account.uuid, email: account.email, type: 'access', sid, jti: 'x', iat: now, exp: now + 600 };
    const signingInput = `${b64({ alg: 'HS256', kid, typ: 'JWT' })}.${b64({ ...claims, iss: ISSUER, aud: 'gatehouse' })}`;
    for (const secret of [publicPem, JSON.stringify(publicJwk), String(publicJwk.x)]) {
      const signature = createHmac('sha256', secret).update(signingInput).digest('base64url');
      assertRefused(await me(app, `${signingInput}.${signature}`), 'TOKEN_INVALID');
    }
  });

  test('alg: none is refused', async () => {
    const token = await forge();
    const [, payload] = token.split('.');
    assertRefused(await me(app, `${b64({ alg: 'none', kid })}.${payload}.`), 'TOKEN_INVALID');
  });

  test('a tampered payload is refused', async () => {
    const [header, , signature] = (await forge()).split('.');
    const other = (await forge({ email: 'someone@example.com' })).split('.')[1];
    assertRefused(await me(app, `${header}.${other}.${signature}`), 'TOKEN_INVALID');
  });

  test('expired answers TOKEN_EXPIRED; not yet valid answers TOKEN_INVALID', async () => {
    const now = Math.floor(clock.now().getTime() / 1000);
    assertRefused(await me(app, await forge({ iat: now - 4000, exp: now - 60 })), 'TOKEN_EXPIRED');
    assertRefused(await me(app, await forge({ nbf: now + 3600 })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ iat: now + 3600, exp: now + 4000 })), 'TOKEN_INVALID');
  });

  test('a lifetime longer than the access lifetime is refused', async () => {
    const now = Math.floor(clock.now().getTime() / 1000);
    assertRefused(await me(app, await forge({ iat: now - 3 * 3600, exp: now + 600 })), 'TOKEN_INVALID');
  });

  test('wrong or missing iss and aud are refused', async () => {
    assertRefused(await me(app, await forge({ iss: 'https://evil.example' })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ aud: 'another-service' })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ iss: undefined })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ aud: undefined })), 'TOKEN_INVALID');
  });

  test('an unknown kid, no kid, or another key claiming the real kid are refused', async () => {
    assertRefused(await me(app, await forge({}, { kid: 'no-such-key' })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({}, { kid: undefined })), 'TOKEN_INVALID');
    const stranger = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const now = Math.floor(clock.now().getTime() / 1000);
    const token = await new SignJWT({ email: account.email, type: 'access', sid })
      .setProtectedHeader({ alg: 'EdDSA', kid })
      .setSubject(account.uuid)
      .setJti('x')
      .setIssuer(ISSUER)
      .setAudience('gatehouse')
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(stranger.privateKey);
    assertRefused(await me(app, token), 'TOKEN_INVALID');
  });

  test('type refresh as access, a missing type, sid or email are refused', async () => {
    assertRefused(await me(app, await forge({ type: 'refresh' })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ type: undefined })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ sid: undefined })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ sid: 'not-a-uuid' })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ email: undefined })), 'TOKEN_INVALID');
    assertRefused(await me(app, await forge({ sid: '00000000-0000-4000-8000-000000000000' })), 'TOKEN_INVALID');
  });

  test('a startup with a JWT_PRIVATE_KEY that is not a key fails, naming the variable', async () => {
    await assert.rejects(
      buildApp(testConfig({ ALGORITHM: 'EdDSA', JWT_PRIVATE_KEY: 'not a pem', JWT_KEYS_DIR: keysDir() }), { database }),
      /JWT_PRIVATE_KEY/,
    );
  });
});

describe('generated key rings and rotation', () => {
  for (const algorithm of ['EdDSA', 'ES256', 'RS256'] as const) {
    test(`${algorithm}: a key is generated on first start, stored 0600, reused on restart, verifiable from the JWKS`, async () => {
      const dir = keysDir();
      try {
        const app = await startAuthApp({ ALGORITHM: algorithm, JWT_KEYS_DIR: dir }, { database });
        let token: string;
        let kid: string | undefined;
        try {
          const files = readdirSync(dir);
          assert.equal(files.length, 1);
          assert.equal(statSync(join(dir, files[0] as string)).mode & 0o777, 0o600);
          const account = await createAccount(app);
          token = (await login(app, account)).access_token;
          const header = decodeProtectedHeader(token);
          assert.equal(header.alg, algorithm);
          kid = header.kid;
          const jwks = json<{ keys: JWK[] }>(await app.inject({ url: '/.well-known/jwks.json' }));
          assert.deepEqual(
            jwks.keys.map((k) => [k.kid, k.alg, k.use]),
            [[kid, algorithm, 'sig']],
          );
          for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(member in (jwks.keys[0] as Body), false);
          await jwtVerify(token, createLocalJWKSet(jwks), { algorithms: [algorithm] });
        } finally {
          await app.close();
        }
        const again = await startAuthApp({ ALGORITHM: algorithm, JWT_KEYS_DIR: dir }, { database });
        try {
          assert.equal(readdirSync(dir).length, 1);
          const account = await createAccount(again);
          const next = (await login(again, account)).access_token;
          assert.equal(decodeProtectedHeader(next).kid, kid);
          // The restarted instance verifies what the first one signed.
          const res = await me(again, token);
          assert.equal(res.statusCode, 200, res.body);
        } finally {
          await again.close();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test('a rotated-out key keeps verifying until its tokens expire; other instances pick up the new key', async () => {
    const dir = keysDir();
    const clock = testClock();
    const env = { ALGORITHM: 'EdDSA', JWT_KEYS_DIR: dir };
    const app = await startAuthApp(env, { clock, database });
    try {
      const account = await createAccount(app);
      const old = await login(app, account);
      const oldKid = decodeProtectedHeader(old.access_token).kid;

      const rotation = await rotateSigningKey(testConfig(env), clock.now());
      assert.deepEqual(rotation.retired, [oldKid]);
      clock.advance(11_000); // past the reload throttle

      // A token signed with the new key (here: by a second instance that started after the rotation)…
      const shared = { ...env, REDIS_KEY_PREFIX: app.gatehouse.config.redisKeyPrefix };
      const second = await buildApp(testConfig(shared), { clock, database });
      await second.ready();
      let fresh: string;
      try {
        const res = await second.inject({
          method: 'POST',
          url: '/api/v1/login',
          payload: { username: account.username, password: account.password },
        });
        assert.equal(res.statusCode, 200, res.body);
        fresh = json<{ access_token: string }>(res).access_token;
        assert.equal(decodeProtectedHeader(fresh).kid, rotation.kid);
      } finally {
        await second.close();
      }
      // …is accepted by the instance that still signed with the old key: it reloads the ring on the unknown kid.
      assert.equal((await me(app, fresh)).statusCode, 200);
      // The old key's tokens still verify, and its refresh token still refreshes.
      assert.equal((await me(app, old.access_token)).statusCode, 200);
      const refreshed = await refreshRequest(app, old.refresh_token);
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      assert.equal(decodeProtectedHeader(json<{ access_token: string }>(refreshed).access_token).kid, rotation.kid);
      const jwks = json<{ keys: JWK[] }>(await app.inject({ url: '/.well-known/jwks.json' }));
      assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), [oldKid, rotation.kid].sort());

      // The old key's access tokens expire on their own schedule…
      clock.advance(30 * 60_000);
      assertRefused(await me(app, old.access_token), 'TOKEN_EXPIRED');
      // …and once every token it signed has expired, the key is gone.
      clock.advance(7 * 86_400_000);
      await app.gatehouse.tokens.reload();
      const later = json<{ keys: JWK[] }>(await app.inject({ url: '/.well-known/jwks.json' }));
      assert.deepEqual(
        later.keys.map((k) => k.kid),
        [rotation.kid],
      );
      assertRefused(await me(app, old.access_token), 'TOKEN_INVALID');
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
