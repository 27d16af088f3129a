/**
 * The OpenID provider keeps every state it needs in the database: an
 * authorization survives a restart of Gatehouse in its middle, and instances
 * behind one database (and one PUBLIC_URL) answer for each other, every step
 * of a client's life on whichever instance it reaches, with one ID-token key.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import * as client from 'openid-client';
import type { DatabaseHandle } from '../../src/db/index.ts';
import { uniqueName } from '../helpers.ts';
import {
  authorizationRequest,
  createAccount,
  HttpBrowser,
  registerClient,
  relyingParty,
  signInOnPage,
  startProvider,
} from '../support/oidc.ts';
import { freePort } from '../support/ports.ts';
import { testDatabase } from './auth-helpers.ts';

const CALLBACK = 'http://127.0.0.1:9/callback';

let database: DatabaseHandle;
before(async () => {
  database = await testDatabase();
});
after(() => database.close());

/** The options of every instance of this file: the one database, one Redis key prefix, HS256 for Gatehouse's own tokens. */
function sharedEnv(): Record<string, string> {
  return { ALGORITHM: 'HS256', REDIS_KEY_PREFIX: `t:${uniqueName('oidc-state')}:` };
}

describe('the provider keeps its state in the database: a restart mid-flow', () => {
  const apps: FastifyInstance[] = [];
  after(async () => {
    for (const app of apps) await app.close().catch(() => {});
  });

  test('an authorization begun before a restart is finished after it; the code and refresh token work after another', async () => {
    const env = sharedEnv();
    const port = await freePort();
    const restart = async (): Promise<{ app: FastifyInstance; issuer: string }> => {
      await apps.at(-1)?.close();
      const started = await startProvider(env, { database }, port);
      apps.push(started.app);
      return started;
    };

    let { app, issuer } = await restart();
    const registered = await registerClient(app, { first_party: true });
    const rp = await relyingParty(issuer, registered);
    const account = await createAccount(app);
    const browser = new HttpBrowser();
    const pending = await authorizationRequest(rp, {
      redirect_uri: CALLBACK,
      scope: 'openid offline_access',
      prompt: 'consent',
    });
    const loginPage = await browser.open(pending.url.href, CALLBACK);
    assert.match(loginPage.url, /\/login\?redirect_to=/);
    const interactions = await app.gatehouse.db
      .selectFrom('oidc_payloads')
      .select('id')
      .where('model', '=', 'Interaction')
      .where(sql<string>`payload->'params'->>'client_id'`, '=', registered.client_id)
      .execute();
    assert.equal(interactions.length, 1, 'the interaction is a row of the database');

    // Restarted between the authorization request and the sign-in.
    ({ app, issuer } = await restart());
    const back = await signInOnPage(browser, loginPage, account, CALLBACK);
    const callback = new URL(back.url);
    assert.ok(callback.searchParams.get('code'), `a code after the restart: ${back.url}`);
    assert.equal(callback.searchParams.get('state'), pending.state);

    // Restarted again between the redirect back to the client and the code exchange.
    ({ app, issuer } = await restart());
    const tokens = await client.authorizationCodeGrant(rp, callback, {
      pkceCodeVerifier: pending.verifier,
      expectedState: pending.state,
      expectedNonce: pending.nonce,
    });
    assert.equal(tokens.claims()?.sub, account.uuid, 'the ID token verifies against the same key');
    assert.ok(tokens.refresh_token);
    assert.equal((await client.fetchUserInfo(rp, tokens.access_token, account.uuid)).sub, account.uuid);

    ({ app, issuer } = await restart());
    const refreshed = await client.refreshTokenGrant(rp, tokens.refresh_token);
    assert.ok(refreshed.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    assert.equal((await client.fetchUserInfo(rp, refreshed.access_token, account.uuid)).sub, account.uuid);

    // The browser's provider session (single sign-on) survived the restarts too: no password asked.
    const again = await authorizationRequest(rp, { redirect_uri: CALLBACK, scope: 'openid' });
    const sso = await browser.open(again.url.href, CALLBACK);
    assert.ok(sso.url.startsWith(CALLBACK), `signed in without the login page: ${sso.url}`);
  });
});

describe('the provider keeps its state in the database: two instances at once', () => {
  let a: FastifyInstance;
  let b: FastifyInstance;
  let issuer: string;
  let origin: string;

  before(async () => {
    const env = sharedEnv();
    ({ app: a, issuer } = await startProvider(env, { database }));
    // B answers as the same issuer (one PUBLIC_URL in front of both) but listens on a port of its own.
    ({ app: b, issuer: origin } = await startProvider({ ...env, PUBLIC_URL: issuer }, { database }));
    assert.notEqual(origin, issuer);
  });
  after(async () => {
    await b?.close();
    await a?.close();
  });

  /** openid-client's configuration of `rp` with every endpoint on instance B, and the URLs it fetched. */
  function throughB(rp: client.Configuration, registered: { client_id: string; client_secret?: string }) {
    const metadata = rp.serverMetadata();
    const moved: Record<string, unknown> = { ...metadata };
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value === 'string' && value.startsWith(`${issuer}/`))
        moved[key] = `${origin}${value.slice(issuer.length)}`;
    }
    const config = new client.Configuration(
      moved as client.ServerMetadata,
      registered.client_id,
      String(registered.client_secret),
      client.ClientSecretBasic(String(registered.client_secret)),
    );
    client.allowInsecureRequests(config);
    client.enableNonRepudiationChecks(config);
    const fetched: string[] = [];
    config[client.customFetch] = (url, options) => {
      fetched.push(url);
      return fetch(url, options as RequestInit);
    };
    return { config, fetched };
  }

  test('authorization on A, code exchange on B, refresh on A, userinfo on B, revocation on B: refused on A', async () => {
    const registered = await registerClient(a, { first_party: true });
    const rpA = await relyingParty(issuer, registered);
    const { config: rpB, fetched } = throughB(rpA, registered);
    const account = await createAccount(a);
    const browser = new HttpBrowser();

    const pending = await authorizationRequest(rpA, {
      redirect_uri: CALLBACK,
      scope: 'openid offline_access',
      prompt: 'consent',
    });
    assert.ok(pending.url.href.startsWith(`${issuer}/`));
    const loginPage = await browser.open(pending.url.href, CALLBACK);
    const back = await signInOnPage(browser, loginPage, account, CALLBACK);

    const tokens = await client.authorizationCodeGrant(rpB, new URL(back.url), {
      pkceCodeVerifier: pending.verifier,
      expectedState: pending.state,
      expectedNonce: pending.nonce,
    });
    assert.equal(tokens.claims()?.iss, issuer, 'B issues as the one issuer');
    assert.equal(tokens.claims()?.sub, account.uuid);
    assert.ok(tokens.refresh_token);

    const refreshed = await client.refreshTokenGrant(rpA, tokens.refresh_token);
    assert.ok(refreshed.refresh_token);
    // The token B rotated out on A is spent for B too.
    await assert.rejects(client.refreshTokenGrant(rpB, tokens.refresh_token), { error: 'invalid_grant' });

    const again = await authorizationRequest(rpA, {
      redirect_uri: CALLBACK,
      scope: 'openid offline_access',
      prompt: 'consent',
    });
    const sso = await browser.open(again.url.href, CALLBACK);
    assert.ok(sso.url.startsWith(CALLBACK), sso.url);
    const second = await client.authorizationCodeGrant(rpB, new URL(sso.url), {
      pkceCodeVerifier: again.verifier,
      expectedState: again.state,
      expectedNonce: again.nonce,
    });
    assert.ok(second.refresh_token);
    const refreshedOnA = await client.refreshTokenGrant(rpA, second.refresh_token);
    assert.ok(refreshedOnA.refresh_token);
    assert.equal((await client.fetchUserInfo(rpB, refreshedOnA.access_token, account.uuid)).sub, account.uuid);
    assert.equal((await client.tokenIntrospection(rpB, refreshedOnA.access_token)).active, true);

    await client.tokenRevocation(rpB, refreshedOnA.refresh_token);
    await assert.rejects(client.fetchUserInfo(rpA, refreshedOnA.access_token, account.uuid), 'refused on A');
    assert.equal((await client.tokenIntrospection(rpA, refreshedOnA.access_token)).active, false);
    await assert.rejects(client.refreshTokenGrant(rpA, refreshedOnA.refresh_token), { error: 'invalid_grant' });

    assert.ok(fetched.length >= 6, fetched.join(', '));
    for (const url of fetched) assert.ok(url.startsWith(`${origin}/`), `sent to B: ${url}`);
    for (const path of ['/oauth/token', '/oauth/userinfo', '/oauth/revoke', '/oauth/introspect', '/oauth/jwks']) {
      assert.ok(
        fetched.some((url) => new URL(url).pathname === path),
        `${path} on B: ${fetched.join(', ')}`,
      );
    }
  });

  test('with ALGORITHM=HS256 both instances sign ID tokens with the same RS256 key: JWKS of A equals JWKS of B', async () => {
    const jwks = async (base: string) => {
      const res = await fetch(`${base}/oauth/jwks`);
      assert.equal(res.status, 200);
      return (await res.json()) as { keys: { kid?: string; alg?: string; kty?: string }[] };
    };
    const [ofA, ofB] = await Promise.all([jwks(issuer), jwks(origin)]);
    assert.deepEqual(ofA, ofB);
    assert.ok(
      ofA.keys.some((key) => key.alg === 'RS256' && key.kty === 'RSA'),
      JSON.stringify(ofA),
    );
    const stored = await a.gatehouse.db.selectFrom('oidc_keys').select(['kid', 'alg']).execute();
    assert.equal(stored.length, 1, 'one key stored for both');
    assert.ok(ofA.keys.some((key) => key.kid === stored[0]?.kid));
  });
});
