/**
 * The attack: a token signed with the server's own key (a leaked key, a
 * confused signer) whose `sub` names no user, or another user, but whose
 * `sid` is someone's live session. `GET /api/v1/me` trusted `sid` alone and
 * answered 200 with the session owner's account. Now every read of a session
 * for an access token (the account read, the revocation check behind
 * `requireUser`, the organization guard, on PostgreSQL and on the Redis fast
 * path) checks in the same statement that `sub` owns `sid`: anything else is
 * 401 TOKEN_INVALID. The tests sign with the key ring's own private key.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { type CryptoKey, decodeJwt, importJWK, type JWK, SignJWT } from 'jose';
import { createAccount, login, startAuthApp, type TestAccount } from '../api/auth-helpers.ts';
import { call } from '../api/org-helpers.ts';
import { json } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';

interface Signed {
  account: TestAccount;
  token: string;
  sid: string;
}

describe('token sub/sid mismatch', () => {
  const keysDir = mkdtempSync(join(tmpdir(), 'gatehouse-sub-sid-keys-'));
  let app: FastifyInstance;
  let signingKey: CryptoKey;
  let kid: string;
  let victim: Signed;
  let attacker: Signed;
  let organizationUuid: string;

  const signIn = async (): Promise<Signed> => {
    const account = await createAccount(app);
    const token = (await login(app, account)).access_token;
    return { account, token, sid: String(decodeJwt(token).sid) };
  };

  before(async () => {
    app = await startAuthApp({ ALGORITHM: 'EdDSA', JWT_KEYS_DIR: keysDir });
    // The server's own key, as it stored it: `<JWT_KEYS_DIR>/<kid>.json`.
    const [file] = readdirSync(keysDir).filter((name) => name.endsWith('.json'));
    const stored = JSON.parse(readFileSync(join(keysDir, String(file)), 'utf8')) as { kid: string; private_jwk: JWK };
    kid = stored.kid;
    signingKey = (await importJWK(stored.private_jwk, 'EdDSA')) as CryptoKey;
    victim = await signIn();
    attacker = await signIn();
    const created = await call(app, 'POST', '/api/v1/organizations', victim.token, { name: 'Victim Corp' });
    assert.equal(created.statusCode, 201, created.body);
    organizationUuid = String(json(created).uuid);
  });
  after(() => app.close());

  /** An access token signed with the server's key, naming `sub` and `sid` as the caller chooses. */
  const forge = (sub: string, sid: string, email = victim.account.email) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ email, type: 'access', sid })
      .setProtectedHeader({ alg: 'EdDSA', kid, typ: 'JWT' })
      .setSubject(sub)
      .setJti(randomUUID())
      .setIssuer('http://gatehouse.test')
      .setAudience('gatehouse')
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(signingKey);
  };

  /** Every kind of route that reads the token's session: the account read, requireUser, the organization guard. */
  const routes = () =>
    [
      ['GET', '/api/v1/me'],
      ['PATCH', '/api/v1/me', { first_name: 'Mallory' }],
      ['GET', '/api/v1/sessions'],
      ['GET', `/api/v1/organizations/${organizationUuid}`],
      ['POST', '/api/v1/logout'],
    ] as const;

  const assertRefusedEverywhere = async (token: string) => {
    for (const [method, url, body] of routes()) {
      assertProblem(await call(app, method, url, token, body), 401, 'TOKEN_INVALID');
    }
    // The victim's session was neither read nor ended by the forged token.
    assert.equal((await call(app, 'GET', '/api/v1/me', victim.token)).statusCode, 200);
  };

  test('the baseline: a forged token whose sub owns its sid is accepted (the key really is the server’s)', async () => {
    const res = await call(app, 'GET', '/api/v1/me', await forge(victim.account.uuid, victim.sid));
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(json(res).uuid, victim.account.uuid);
  });

  test('sub naming no user with a live sid is 401 TOKEN_INVALID on every path', async () => {
    await assertRefusedEverywhere(await forge(randomUUID(), victim.sid));
  });

  test("sub naming the attacker with the victim's sid is 401 TOKEN_INVALID on every path", async () => {
    await assertRefusedEverywhere(await forge(attacker.account.uuid, victim.sid, attacker.account.email));
  });

  test("sub naming the victim with the attacker's own sid is 401 TOKEN_INVALID on every path", async () => {
    await assertRefusedEverywhere(await forge(victim.account.uuid, attacker.sid));
  });

  test('the account of the victim is left as it was', async () => {
    const res = await call(app, 'GET', '/api/v1/me', victim.token);
    assert.equal(json(res).first_name ?? null, null);
  });
});
