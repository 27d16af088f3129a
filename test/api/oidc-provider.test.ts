import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import * as client from 'openid-client';
import { startApp } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { enrol } from '../support/mfa.ts';
import {
  authorizationRequest,
  createAccount,
  formIn,
  HttpBrowser,
  type RegisteredClient,
  registerClient,
  relyingParty,
  signInOnPage,
  startProvider,
} from '../support/oidc.ts';
import { bearer, login } from './auth-helpers.ts';

const CALLBACK = 'http://127.0.0.1:9/callback';
const SIGNED_OUT = 'http://127.0.0.1:9/signed-out';
const ALL_SCOPES = 'openid profile email offline_access organizations';

describe('Gatehouse as an OpenID Connect provider, driven by openid-client', () => {
  let app: FastifyInstance;
  let issuer: string;

  before(async () => {
    ({ app, issuer } = await startProvider());
  });
  after(async () => {
    await app?.close();
  });

  async function auditActions(userId: number): Promise<string[]> {
    const rows = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('action')
      .where('user_id', '=', userId)
      .orderBy('id')
      .execute();
    return rows.map((r) => r.action);
  }

  /** The whole journey of one client: authorize, sign in (or not: single sign-on), consent, come back. */
  async function authorize(
    browser: HttpBrowser,
    rp: client.Configuration,
    account: Awaited<ReturnType<typeof createAccount>> | undefined,
    scope = ALL_SCOPES,
  ) {
    const pending = await authorizationRequest(rp, { redirect_uri: CALLBACK, scope, prompt: 'consent' });
    let arrived = await browser.open(pending.url.href, CALLBACK);
    if (arrived.url.includes('/login?')) {
      assert.ok(account, 'a person signs in');
      arrived = { ...(await signInOnPage(browser, arrived, account, CALLBACK)), body: '' };
    }
    if (arrived.url.includes('/oauth/interaction/')) {
      const page = await browser.open(arrived.url, CALLBACK);
      arrived = page;
    }
    if (arrived.body.includes('name="decision"')) {
      const consent = formIn(arrived.body);
      const posted = await browser.post(new URL(consent.action, issuer).href, { ...consent.fields, decision: 'allow' });
      arrived = { ...(await browser.follow(posted, CALLBACK)), body: '' };
    }
    assert.ok(arrived.url.startsWith(CALLBACK), `back at the client: ${arrived.url}`);
    return { pending, callback: new URL(arrived.url) };
  }

  test('the OpenAPI document names the provider as an openIdConnect security scheme', async () => {
    const res = await app.inject({ url: '/openapi.json' });
    const schemes = res.json().components.securitySchemes;
    assert.equal(schemes.openIdConnect.type, 'openIdConnect');
    assert.equal(schemes.openIdConnect.openIdConnectUrl, `${issuer}/.well-known/openid-configuration`);
  });

  test('discovery names every endpoint, the code flow only, PKCE S256 only, and public keys only', async () => {
    const res = await fetch(`${issuer}/.well-known/openid-configuration`);
    assert.equal(res.status, 200);
    const metadata = (await res.json()) as Record<string, unknown>;
    assert.equal(metadata.issuer, issuer);
    assert.deepEqual(metadata.response_types_supported, ['code']);
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(metadata.grant_types_supported, ['authorization_code', 'refresh_token']);
    for (const endpoint of [
      'authorization_endpoint',
      'token_endpoint',
      'userinfo_endpoint',
      'revocation_endpoint',
      'introspection_endpoint',
      'end_session_endpoint',
      'jwks_uri',
    ]) {
      assert.match(String(metadata[endpoint]), new RegExp(`^${issuer}/`), endpoint);
    }
    assert.deepEqual([...(metadata.scopes_supported as string[])].sort(), [
      'email',
      'offline_access',
      'openid',
      'organizations',
      'profile',
    ]);
    const jwks = (await (await fetch(String(metadata.jwks_uri))).json()) as { keys: Record<string, unknown>[] };
    assert.ok(jwks.keys.length >= 1);
    for (const key of jwks.keys) {
      assert.equal(key.kty === 'RSA' || key.kty === 'OKP' || key.kty === 'EC', true);
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) assert.equal(key[secret], undefined, secret);
    }
  });

  test('a confidential first-party client: sign in, tokens, ID token, userinfo, refresh, introspection, revocation', async () => {
    const registered = await registerClient(app, { first_party: true });
    const rp = await relyingParty(issuer, registered);
    const account = await createAccount(app, { first_name: 'Ada', last_name: 'Lovelace' });
    const org = await login(app, account).then((tokens) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/organizations',
        headers: bearer(tokens.access_token),
        payload: { name: 'Analytical Engines' },
      }),
    );
    assert.equal(org.statusCode, 201, org.body);

    const browser = new HttpBrowser();
    const { pending, callback } = await authorize(browser, rp, account);
    assert.equal(callback.searchParams.get('state'), pending.state, 'state echoed');
    const tokens = await client.authorizationCodeGrant(rp, callback, {
      pkceCodeVerifier: pending.verifier,
      expectedState: pending.state,
      expectedNonce: pending.nonce,
    });
    const claims = tokens.claims();
    assert.ok(claims);
    assert.equal(claims.sub, account.uuid);
    assert.equal(claims.iss, issuer);
    assert.equal(claims.aud, registered.client_id);
    assert.equal(claims.nonce, pending.nonce);
    assert.equal(claims.email, account.email);
    assert.equal(claims.email_verified, true);
    assert.equal(claims.given_name, 'Ada');
    assert.deepEqual(claims.organizations, [{ uuid: org.json().uuid, name: 'Analytical Engines', role: 'admin' }]);
    assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');

    const info = await client.fetchUserInfo(rp, tokens.access_token, account.uuid);
    assert.equal(info.sub, account.uuid);
    assert.equal(info.preferred_username, account.username);
    assert.deepEqual(info.organizations, claims.organizations);

    // The grant's tokens are a Gatehouse session: listed beside the others.
    const api = await login(app, account);
    const sessions = await app.inject({ url: '/api/v1/sessions', headers: bearer(api.access_token) });
    const oauth = (sessions.json() as { kind: string; client_id?: string }[]).filter((s) => s.kind === 'oauth');
    assert.equal(oauth.length, 1);
    assert.equal(oauth[0]?.client_id, registered.client_id);

    const refreshed = await client.refreshTokenGrant(rp, tokens.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'refresh tokens rotate');
    await assert.rejects(
      client.refreshTokenGrant(rp, tokens.refresh_token),
      (error: client.ResponseBodyError) => error.error === 'invalid_grant',
      'a rotated-out refresh token is refused',
    );
    // Reusing it revoked the grant: the new one is gone too (reuse detection).
    await assert.rejects(client.refreshTokenGrant(rp, String(refreshed.refresh_token)), { error: 'invalid_grant' });

    const second = await authorize(browser, rp, undefined);
    const fresh = await client.authorizationCodeGrant(rp, second.callback, {
      pkceCodeVerifier: second.pending.verifier,
      expectedState: second.pending.state,
      expectedNonce: second.pending.nonce,
    });
    const active = await client.tokenIntrospection(rp, fresh.access_token);
    assert.equal(active.active, true);
    assert.equal(active.sub, account.uuid);
    await client.tokenRevocation(rp, String(fresh.refresh_token));
    const revoked = await client.tokenIntrospection(rp, fresh.access_token);
    assert.equal(revoked.active, false, 'revoking the refresh token revokes the grant with its access token');
    await assert.rejects(client.fetchUserInfo(rp, fresh.access_token, account.uuid));

    const actions = await auditActions(account.id);
    for (const action of ['oauth_authorized', 'oauth_token_issued', 'refresh_token_reuse']) {
      assert.ok(actions.includes(action), `${action} audited: ${actions.join(', ')}`);
    }
  });

  test('a public third-party client: consent page lists the scopes; deny sends access_denied back; logout-all ends its tokens', async () => {
    const registered = await registerClient(app, {
      client_name: 'Third Party Notes',
      token_endpoint_auth_method: 'none',
    });
    const rp = await relyingParty(issuer, registered);
    const account = await createAccount(app);
    const browser = new HttpBrowser();

    const denied = await authorizationRequest(rp, { redirect_uri: CALLBACK, scope: 'openid email' });
    const loginPage = await browser.open(denied.url.href, CALLBACK);
    assert.match(
      loginPage.response.headers.get('content-security-policy') ?? '',
      /form-action 'self' http:\/\/127\.0\.0\.1:9/,
      'the login form of an authorization may end at the client',
    );
    const afterLogin = await signInOnPage(browser, loginPage, account, CALLBACK);
    const consentPage = await browser.open(afterLogin.url, CALLBACK);
    assert.match(consentPage.body, /Third Party Notes/);
    assert.match(consentPage.body, /Your email address/);
    assert.match(
      consentPage.response.headers.get('content-security-policy') ?? '',
      /form-action 'self' http:\/\/127\.0\.0\.1:9/,
      'the consent form may end at the client',
    );
    const form = formIn(consentPage.body);
    const no = await browser.follow(
      await browser.post(new URL(form.action, issuer).href, { ...form.fields, decision: 'deny' }),
      CALLBACK,
    );
    const refusal = new URL(no.url);
    assert.equal(refusal.searchParams.get('error'), 'access_denied');
    assert.equal(refusal.searchParams.get('code'), null);

    const { pending, callback } = await authorize(browser, rp, account, 'openid email');
    const tokens = await client.authorizationCodeGrant(rp, callback, {
      pkceCodeVerifier: pending.verifier,
      expectedState: pending.state,
      expectedNonce: pending.nonce,
    });
    assert.equal(tokens.refresh_token, undefined, 'no offline_access, no refresh token');
    assert.ok(await client.fetchUserInfo(rp, tokens.access_token, account.uuid));
    assert.ok((await auditActions(account.id)).includes('oauth_consent_granted'));

    // A public client may not introspect: it learns nothing, not even that its own token is live.
    assert.deepEqual(await client.tokenIntrospection(rp, tokens.access_token), { active: false });

    const api = await login(app, account);
    const all = await app.inject({ method: 'POST', url: '/api/v1/logout-all', headers: bearer(api.access_token) });
    assert.equal(all.statusCode, 204, all.body);
    await assert.rejects(
      client.fetchUserInfo(rp, tokens.access_token, account.uuid),
      'logout-all revokes the tokens the provider issued',
    );
  });

  test('single sign-on: a second client signs in without a password; end-session signs out of Gatehouse too', async () => {
    const first = await registerClient(app, { first_party: true });
    const second: RegisteredClient = await registerClient(app, { first_party: true, client_name: 'Second product' });
    const account = await createAccount(app);
    const browser = new HttpBrowser();
    const rpOne = await relyingParty(issuer, first);
    const rpTwo = await relyingParty(issuer, second);

    const one = await authorize(browser, rpOne, account, 'openid');
    const tokens = await client.authorizationCodeGrant(rpOne, one.callback, {
      pkceCodeVerifier: one.pending.verifier,
      expectedState: one.pending.state,
      expectedNonce: one.pending.nonce,
    });
    const pending = await authorizationRequest(rpTwo, { redirect_uri: CALLBACK, scope: 'openid' });
    const sso = await browser.open(pending.url.href, CALLBACK);
    assert.ok(sso.url.startsWith(CALLBACK), `no login page on the way: ${sso.url}`);
    const other = await client.authorizationCodeGrant(rpTwo, new URL(sso.url), {
      pkceCodeVerifier: pending.verifier,
      expectedState: pending.state,
      expectedNonce: pending.nonce,
    });
    assert.equal(other.claims()?.sub, account.uuid);

    const endSession = client.buildEndSessionUrl(rpOne, {
      id_token_hint: String(tokens.id_token),
      post_logout_redirect_uri: SIGNED_OUT,
      state: 'bye',
    });
    const question = await browser.open(endSession.href, SIGNED_OUT);
    assert.equal(question.response.status, 200);
    const logoutForm = formIn(question.body, 'xsrf');
    const done = await browser.follow(
      await browser.post(new URL(logoutForm.action, issuer).href, { ...logoutForm.fields, logout: 'yes' }),
      SIGNED_OUT,
    );
    const back = new URL(done.url);
    assert.equal(`${back.origin}${back.pathname}`, SIGNED_OUT);
    assert.equal(back.searchParams.get('state'), 'bye');

    const account_page = await browser.get(`${issuer}/account`);
    assert.equal(account_page.status, 303, 'the Gatehouse page session ended');
    await assert.rejects(client.fetchUserInfo(rpOne, tokens.access_token, account.uuid));
    const again = await authorizationRequest(rpTwo, { redirect_uri: CALLBACK, scope: 'openid' });
    const prompt = await browser.open(again.url.href, CALLBACK);
    assert.match(prompt.url, /\/login\?redirect_to=/, 'the next sign-in asks for the password again');
    assert.ok((await auditActions(account.id)).includes('oauth_logout'));
  });

  test('an account with a second factor signs in through the provider with it; the ID token says how (amr)', async () => {
    const registered = await registerClient(app, { first_party: true });
    const rp = await relyingParty(issuer, registered);
    const account = await createAccount(app);
    const { backupCodes } = await enrol(app, (await login(app, account)).access_token, testClock());
    const browser = new HttpBrowser();
    const pending = await authorizationRequest(rp, { redirect_uri: CALLBACK, scope: 'openid' });
    const page = await browser.open(pending.url.href, CALLBACK);
    const loginForm = formIn(page.body);
    const password = await browser.post(new URL(loginForm.action || '/login', page.url).href, {
      ...loginForm.fields,
      username: account.username,
      password: account.password,
    });
    const codePage = await password.text();
    assert.match(codePage, /name="mfa_token"/, 'the password alone is not enough: the code is asked for');
    assert.match(
      password.headers.get('content-security-policy') ?? '',
      /form-action 'self' http:\/\/127\.0\.0\.1:9/,
      "the second step's form may end at the client",
    );
    const second = formIn(codePage, 'name="backup_code"');
    assert.match(second.fields.redirect_to ?? '', /^\/oauth\/interaction\//);
    const done = await browser.follow(
      await browser.post(new URL(second.action, issuer).href, {
        ...second.fields,
        backup_code: String(backupCodes[0]),
      }),
      CALLBACK,
    );
    assert.ok(done.url.startsWith(CALLBACK), done.url);
    const tokens = await client.authorizationCodeGrant(rp, new URL(done.url), {
      pkceCodeVerifier: pending.verifier,
      expectedState: pending.state,
      expectedNonce: pending.nonce,
    });
    assert.deepEqual(tokens.claims()?.amr, ['pwd', 'backup_code']);
  });

  test('the account page lists connected apps; removing one ends its tokens and asks for consent again', async () => {
    const registered = await registerClient(app, { client_name: 'Calendar Sync' });
    const rp = await relyingParty(issuer, registered);
    const account = await createAccount(app);
    const browser = new HttpBrowser();
    const { pending, callback } = await authorize(browser, rp, account, 'openid email offline_access');
    const tokens = await client.authorizationCodeGrant(rp, callback, {
      pkceCodeVerifier: pending.verifier,
      expectedState: pending.state,
      expectedNonce: pending.nonce,
    });

    const page = await browser.open(`${issuer}/account`);
    assert.match(page.body, /Connected apps/);
    assert.match(page.body, /Calendar Sync/);
    const remove = formIn(page.body, 'value="revoke_app"');
    assert.equal(remove.fields.client_id, registered.client_id);
    const done = await browser.post(new URL(remove.action, issuer).href, remove.fields);
    assert.equal(done.status, 303);
    const after_ = await browser.open(`${issuer}/account`);
    assert.doesNotMatch(after_.body, /Calendar Sync/);
    assert.match(after_.body, /No application has access to your account/);

    await assert.rejects(client.fetchUserInfo(rp, tokens.access_token, account.uuid));
    await assert.rejects(client.refreshTokenGrant(rp, String(tokens.refresh_token)), { error: 'invalid_grant' });
    assert.ok((await auditActions(account.id)).includes('oauth_consent_revoked'));

    // Removing it again, or an app never granted: not found.
    const again = await browser.post(new URL(remove.action, issuer).href, remove.fields);
    assert.equal(again.status, 404);

    // The next authorization asks for consent again.
    const next = await authorizationRequest(rp, { redirect_uri: CALLBACK, scope: 'openid email' });
    const consent = await browser.open(next.url.href, CALLBACK);
    assert.match(consent.body, /name="decision"/);
  });
});

describe('OIDC_PROVIDER off (the default)', () => {
  test('no discovery and no provider endpoints', async () => {
    const app = await startApp();
    try {
      for (const [method, url] of [
        ['GET', '/.well-known/openid-configuration'],
        ['GET', '/oauth/authorize?client_id=x'],
        ['POST', '/oauth/token'],
        ['GET', '/oauth/jwks'],
      ] as const) {
        const res = await app.inject({ method, url });
        assert.equal(res.statusCode, 404, `${method} ${url}`);
      }
      assert.equal(
        (await app.inject({ url: '/openapi.json' })).json().components.securitySchemes.openIdConnect,
        undefined,
      );
    } finally {
      await app.close();
    }
  });

  test('mounted with `pages: false`, the provider refuses to start: it has nowhere to sign people in', async () => {
    await assert.rejects(startApp({ OIDC_PROVIDER: 'true' }, { pages: false }), /OIDC_PROVIDER=true needs the pages/);
  });
});
