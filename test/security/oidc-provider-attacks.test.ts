/**
 * The attacks on an OAuth 2.1 / OpenID Connect provider (RFC 6749 §10, RFC
 * 7636, RFC 9700): a stolen or replayed authorization code, a code without its
 * PKCE verifier or with another client, a downgrade to `plain` PKCE or to the
 * implicit flow, a redirect URI that only looks registered, an open redirect
 * through end-session, a guessed or missing client secret, and tokens that
 * outlive their revocation or their account. Each is refused the way the RFCs
 * say (the OAuth error code, or an error page that sends the browser nowhere),
 * nothing is issued (no token in the answer, no new Gatehouse session for the
 * client), what was issued before is dead where the attack calls for it, and
 * the audit trail says what happened.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import * as client from 'openid-client';
import { revokeConnectedApp } from '../../src/flows/oidc.ts';
import { bearer, login } from '../api/auth-helpers.ts';
import {
  authorizationRequest,
  createAccount,
  HttpBrowser,
  type PendingAuthorization,
  type RegisteredClient,
  registerClient,
  relyingParty,
  signInOnPage,
  startProvider,
} from '../support/oidc.ts';

const CALLBACK = 'http://127.0.0.1:9/callback';
const SIGNED_OUT = 'http://127.0.0.1:9/signed-out';

type Account = Awaited<ReturnType<typeof createAccount>>;
type TokenAuth = 'basic' | 'post' | 'none' | { basic: string } | { post: string };

describe('attacks on the OpenID provider', () => {
  let app: FastifyInstance;
  let issuer: string;

  before(async () => {
    ({ app, issuer } = await startProvider());
  });
  after(async () => {
    await app?.close();
  });

  /** A person signed in on the pages of a browser of their own. */
  async function person(): Promise<{ account: Account; browser: HttpBrowser }> {
    return { account: await createAccount(app), browser: new HttpBrowser() };
  }

  /** A first-party client (no consent page) and its openid-client configuration. */
  async function firstParty(
    metadata: Parameters<typeof registerClient>[1] = {},
  ): Promise<{ registered: RegisteredClient; rp: client.Configuration }> {
    const registered = await registerClient(app, { first_party: true, ...metadata });
    return { registered, rp: await relyingParty(issuer, registered) };
  }

  /** Sends the browser through an authorization of `rp` and returns where it came back to the client. */
  async function authorize(
    who: { account: Account; browser: HttpBrowser },
    rp: client.Configuration,
    scope = 'openid offline_access',
  ): Promise<{ pending: PendingAuthorization; callback: URL; code: string }> {
    const pending = await authorizationRequest(rp, { redirect_uri: CALLBACK, scope, prompt: 'consent' });
    let arrived: { url: string } = await who.browser.open(pending.url.href, CALLBACK);
    if (arrived.url.includes('/login?')) {
      arrived = await signInOnPage(who.browser, arrived as { url: string; body: string }, who.account, CALLBACK);
    }
    assert.ok(arrived.url.startsWith(CALLBACK), `back at the client: ${arrived.url}`);
    const callback = new URL(arrived.url);
    const code = callback.searchParams.get('code');
    assert.ok(code, `a code: ${arrived.url}`);
    return { pending, callback, code };
  }

  /** A code exchanged the way a client is meant to, by openid-client. */
  async function exchange(
    rp: client.Configuration,
    flow: { pending: PendingAuthorization; callback: URL },
  ): Promise<client.TokenEndpointResponse & client.TokenEndpointResponseHelpers> {
    return client.authorizationCodeGrant(rp, flow.callback, {
      pkceCodeVerifier: flow.pending.verifier,
      expectedState: flow.pending.state,
      expectedNonce: flow.pending.nonce,
    });
  }

  /** A raw request to the token endpoint, for what openid-client will not send. */
  async function tokenRequest(
    registered: RegisteredClient,
    params: Record<string, string>,
    auth: TokenAuth = 'basic',
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    const form: Record<string, string> = { ...params };
    const basic =
      auth === 'basic' ? registered.client_secret : typeof auth === 'object' && 'basic' in auth && auth.basic;
    const post = auth === 'post' ? registered.client_secret : typeof auth === 'object' && 'post' in auth && auth.post;
    if (typeof basic === 'string') {
      const pair = `${encodeURIComponent(registered.client_id)}:${encodeURIComponent(basic)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
    } else {
      form.client_id = registered.client_id;
      if (typeof post === 'string') form.client_secret = post;
    }
    const res = await fetch(`${issuer}/oauth/token`, {
      method: 'POST',
      headers,
      body: new URLSearchParams(form).toString(),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  function codeGrant(flow: { code: string; pending: PendingAuthorization }, verifier?: string): Record<string, string> {
    return {
      grant_type: 'authorization_code',
      code: flow.code,
      redirect_uri: CALLBACK,
      ...(verifier === undefined ? {} : { code_verifier: verifier }),
    };
  }

  /** The refusal at the token endpoint: the OAuth error, and not a token in the answer. */
  function assertRefused(answer: { status: number; body: Record<string, unknown> }, error: string, status = 400): void {
    assert.equal(answer.status, status, JSON.stringify(answer.body));
    assert.equal(answer.body.error, error, JSON.stringify(answer.body));
    for (const token of ['access_token', 'refresh_token', 'id_token'])
      assert.equal(answer.body[token], undefined, token);
  }

  /** The Gatehouse sessions standing for this client's grants (kind 'oauth'). */
  async function oauthSessions(clientId: string): Promise<{ uuid: string; revoked_at: Date | null }[]> {
    return app.gatehouse.db
      .selectFrom('sessions')
      .select(['uuid', 'revoked_at'])
      .where('kind', '=', 'oauth')
      .where('oauth_client_id', '=', clientId)
      .execute();
  }

  async function auditRows(action: string, userId: number): Promise<Record<string, unknown>[]> {
    const rows = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', action)
      .where('user_id', '=', userId)
      .execute();
    return rows.map((r) => r.details as Record<string, unknown>);
  }

  /** userinfo with a bearer token, raw: the status and the error of its WWW-Authenticate. */
  async function userinfo(accessToken: string): Promise<{ status: number; error: string | undefined }> {
    const res = await fetch(`${issuer}/oauth/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } });
    const challenge = res.headers.get('www-authenticate') ?? '';
    await res.body?.cancel();
    return { status: res.status, error: /error="([^"]+)"/.exec(challenge)?.[1] };
  }

  async function assertDead(rp: client.Configuration, accessToken: string): Promise<void> {
    assert.deepEqual(await userinfo(accessToken), { status: 401, error: 'invalid_token' }, 'userinfo refuses it');
    assert.equal((await client.tokenIntrospection(rp, accessToken)).active, false, 'introspection: inactive');
  }

  /** The answer of the authorization endpoint to `url` (no redirect followed), read by the browser's rules. */
  async function authorizationAnswer(
    browser: HttpBrowser,
    url: URL | string,
  ): Promise<{ status: number; location: string | null; params: URLSearchParams; body: string; type: string }> {
    const res = await browser.get(String(url));
    const location = res.headers.get('location');
    const target = location ? new URL(location, issuer) : undefined;
    const params = new URLSearchParams(target?.search ?? '');
    for (const [key, value] of new URLSearchParams(target?.hash.slice(1) ?? '')) params.set(key, value);
    return {
      status: res.status,
      location,
      params,
      body: await res.text(),
      type: res.headers.get('content-type') ?? '',
    };
  }

  test('a code without its code_verifier, or with a wrong one, is refused: invalid_grant, nothing issued', async () => {
    const { registered, rp } = await firstParty();
    const who = await person();
    const flow = await authorize(who, rp);
    const before = (await oauthSessions(registered.client_id)).length;

    assertRefused(await tokenRequest(registered, codeGrant(flow)), 'invalid_grant');
    const wrong = client.randomPKCECodeVerifier();
    assertRefused(await tokenRequest(registered, codeGrant(flow, wrong)), 'invalid_grant');
    await assert.rejects(
      client.authorizationCodeGrant(rp, flow.callback, {
        pkceCodeVerifier: wrong,
        expectedState: flow.pending.state,
        expectedNonce: flow.pending.nonce,
      }),
      (error: client.ResponseBodyError) => error.error === 'invalid_grant',
    );
    assert.equal((await oauthSessions(registered.client_id)).length, before, 'no Gatehouse session for the client');
  });

  test('code_challenge_method=plain is refused with invalid_request at the registered redirect_uri, and no code', async () => {
    const { registered, rp } = await firstParty();
    const who = await person();
    // Signed in first, so that a wrongly accepted request would come back with a code.
    await authorize(who, rp);
    const verifier = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(rp, {
      redirect_uri: CALLBACK,
      scope: 'openid',
      state: 'plain-state',
      code_challenge: verifier,
      code_challenge_method: 'plain',
    });
    const answer = await authorizationAnswer(who.browser, url);
    assert.equal(answer.status, 303, answer.body);
    assert.ok(answer.location?.startsWith(`${CALLBACK}?`), `back to the registered redirect_uri: ${answer.location}`);
    assert.equal(answer.params.get('error'), 'invalid_request');
    assert.equal(answer.params.get('state'), 'plain-state');
    assert.equal(answer.params.get('code'), null, 'no code');
    assert.equal((await oauthSessions(registered.client_id)).length, 0, 'nothing issued to the client');
  });

  test('an authorization request without code_challenge is refused: invalid_request, no code', async () => {
    const { rp } = await firstParty();
    const who = await person();
    await authorize(who, rp);
    const url = client.buildAuthorizationUrl(rp, { redirect_uri: CALLBACK, scope: 'openid', state: 'no-pkce' });
    assert.equal(url.searchParams.get('code_challenge'), null);
    const answer = await authorizationAnswer(who.browser, url);
    assert.ok(answer.location?.startsWith(`${CALLBACK}?`), `back to the registered redirect_uri: ${answer.location}`);
    assert.equal(answer.params.get('error'), 'invalid_request');
    assert.match(String(answer.params.get('error_description')), /PKCE/);
    assert.equal(answer.params.get('code'), null, 'no code');
  });

  test('an unregistered or prefix-matched redirect_uri gets an error page of Gatehouse’s, never a redirect there', async () => {
    const { rp } = await firstParty();
    const who = await person();
    await authorize(who, rp);
    for (const attacker of [
      'https://attacker.example/callback',
      'http://127.0.0.1:9/callback/evil',
      'http://127.0.0.1:9/callbackx',
      'http://127.0.0.1:9/callback?next=https://attacker.example/',
      'http://127.0.0.1:9/callback#fragment',
      'http://127.0.0.1:99/callback',
      'HTTP://127.0.0.1:9/callback/../evil',
    ]) {
      const { url } = await authorizationRequest(rp, { redirect_uri: attacker, scope: 'openid' });
      const answer = await authorizationAnswer(who.browser, url);
      assert.equal(answer.status, 400, `${attacker}: ${answer.status}`);
      assert.equal(answer.location, null, `${attacker}: no Location header`);
      assert.match(answer.type, /^text\/html/, attacker);
      assert.match(answer.body, /This sign-in cannot continue/, attacker);
      assert.match(answer.body, /invalid_redirect_uri/, attacker);
      assert.doesNotMatch(answer.body, /http-equiv="refresh"/i, attacker);
    }
  });

  test('a reused code is refused and revokes what the first exchange issued, with an oauth_code_reused audit row', async () => {
    const { registered, rp } = await firstParty();
    const who = await person();
    const flow = await authorize(who, rp);
    const tokens = await exchange(rp, flow);
    assert.ok(tokens.refresh_token);
    assert.equal((await userinfo(tokens.access_token)).status, 200);
    const [session] = await oauthSessions(registered.client_id);
    assert.ok(session);
    assert.equal(session.revoked_at, null);

    assertRefused(await tokenRequest(registered, codeGrant(flow, flow.pending.verifier)), 'invalid_grant');

    await assertDead(rp, tokens.access_token);
    await assert.rejects(client.refreshTokenGrant(rp, tokens.refresh_token), { error: 'invalid_grant' });
    const after = await oauthSessions(registered.client_id);
    assert.equal(after.length, 1, 'no new session');
    assert.ok(after[0]?.revoked_at, 'the grant’s Gatehouse session is revoked');
    const audit = await auditRows('oauth_code_reused', who.account.id);
    assert.equal(audit.length, 1, JSON.stringify(audit));
    assert.equal(audit[0]?.client_id, registered.client_id);
  });

  test('two exchanges of one code at once: exactly one gets tokens', async () => {
    const { registered, rp } = await firstParty();
    const who = await person();
    const flow = await authorize(who, rp);
    const answers = await Promise.all(
      [1, 2, 3, 4, 5, 6].map(() => tokenRequest(registered, codeGrant(flow, flow.pending.verifier))),
    );
    const won = answers.filter((a) => a.status === 200);
    const lost = answers.filter((a) => a.status !== 200);
    assert.equal(won.length, 1, JSON.stringify(answers.map((a) => a.body)));
    for (const answer of lost) assertRefused(answer, 'invalid_grant');
    assert.ok((await auditRows('oauth_code_reused', who.account.id)).length >= 1, 'the reuse is audited');
    // The reuse revokes the grant, as a reuse after the exchange does: the winner's tokens die too.
    const winner = won[0]?.body as { access_token: string; refresh_token: string };
    assert.ok(winner.access_token && winner.refresh_token);
    await assertDead(rp, winner.access_token);
    await assert.rejects(client.refreshTokenGrant(rp, winner.refresh_token), { error: 'invalid_grant' });
    const sessions = await oauthSessions(registered.client_id);
    assert.ok(sessions.length <= 1, 'at most one session for the client');
    assert.ok(
      sessions.every((s) => s.revoked_at),
      'the session standing for the grant is revoked',
    );
  });

  test('the code of client A presented by client B (valid secret) is refused: invalid_grant', async () => {
    const a = await firstParty();
    const b = await firstParty();
    const who = await person();
    const flow = await authorize(who, a.rp);
    for (const auth of ['basic', 'post'] as const) {
      assertRefused(await tokenRequest(b.registered, codeGrant(flow, flow.pending.verifier), auth), 'invalid_grant');
    }
    assert.equal((await oauthSessions(b.registered.client_id)).length, 0, 'nothing for B');
    assert.equal((await oauthSessions(a.registered.client_id)).length, 0, 'nothing for A');
  });

  test('an expired code (older than 60 s) is refused: invalid_grant', async () => {
    const { registered, rp } = await firstParty();
    const who = await person();
    const flow = await authorize(who, rp);
    // The provider reads a code's expiry from `exp` in its stored payload (seconds since the epoch).
    const aged = await app.gatehouse.db
      .updateTable('oidc_payloads')
      .set({
        payload: sql`jsonb_set(payload, '{exp}', to_jsonb((payload->>'iat')::bigint - 1))`,
        expires_at: new Date(Date.now() - 61_000),
      })
      .where('model', '=', 'AuthorizationCode')
      .where('client_id', '=', registered.client_id)
      .where(sql<boolean>`payload ? 'exp'`)
      .executeTakeFirst();
    assert.equal(Number(aged.numUpdatedRows), 1, 'the code is stored with an exp');
    assertRefused(await tokenRequest(registered, codeGrant(flow, flow.pending.verifier)), 'invalid_grant');
    assert.equal((await oauthSessions(registered.client_id)).length, 0);
  });

  test('end-session with an unregistered post_logout_redirect_uri is refused and never redirects there', async () => {
    const { rp } = await firstParty();
    const who = await person();
    const tokens = await exchange(rp, await authorize(who, rp, 'openid'));
    for (const attacker of [
      'https://attacker.example/',
      `${SIGNED_OUT}/evil`,
      `${SIGNED_OUT}x`,
      `${SIGNED_OUT}?next=https://attacker.example/`,
    ]) {
      const url = client.buildEndSessionUrl(rp, {
        id_token_hint: String(tokens.id_token),
        post_logout_redirect_uri: attacker,
        state: 'bye',
      });
      // A client asking (any Accept) gets the OAuth error as JSON.
      const res = await who.browser.get(url.href);
      assert.equal(res.status, 400, attacker);
      assert.equal(res.headers.get('location'), null, attacker);
      assert.equal(((await res.json()) as { error?: string }).error, 'invalid_request', attacker);
      // A browser (Accept: text/html) gets Gatehouse's error page, which leads nowhere near the attacker.
      const page = await fetch(url, { redirect: 'manual', headers: { accept: 'text/html' } });
      const body = await page.text();
      assert.equal(page.status, 400, `${attacker}: ${body}`);
      assert.equal(page.headers.get('location'), null, attacker);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/, attacker);
      assert.match(body, /This sign-in cannot continue/, attacker);
      assert.match(body, /invalid_request/, attacker);
      assert.doesNotMatch(body, /attacker\.example|signed-outx|signed-out\/evil/, `${attacker} not in a form or link`);
      assert.doesNotMatch(body, /http-equiv="refresh"/i, attacker);
    }
    assert.equal((await userinfo(tokens.access_token)).status, 200, 'still signed in: nothing was done');
  });

  test('a confidential client with a wrong secret (basic, post) or none gets invalid_client, nothing issued', async () => {
    for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
      const { registered, rp } = await firstParty({ token_endpoint_auth_method: method });
      const who = await person();
      const flow = await authorize(who, rp);
      const grant = codeGrant(flow, flow.pending.verifier);
      const wrong = `${registered.client_secret}x`;
      assertRefused(await tokenRequest(registered, grant, { basic: wrong }), 'invalid_client', 401);
      assertRefused(await tokenRequest(registered, grant, { post: wrong }), 'invalid_client', 401);
      assertRefused(await tokenRequest(registered, grant, { post: '' }), 'invalid_client', 401);
      assertRefused(await tokenRequest(registered, grant, 'none'), 'invalid_client', 401);
      // Another client's valid secret does not open this one.
      const other = await registerClient(app, { token_endpoint_auth_method: method });
      assertRefused(
        await tokenRequest(registered, grant, { basic: String(other.client_secret) }),
        'invalid_client',
        401,
      );
      assert.equal((await oauthSessions(registered.client_id)).length, 0, method);
    }
  });

  test('a revoked grant’s tokens are refused: RFC 7009 revocation, and the person revoking the app', async () => {
    const { registered, rp } = await firstParty();
    const who = await person();
    const first = await exchange(rp, await authorize(who, rp));
    assert.ok(first.refresh_token);
    await client.tokenRevocation(rp, first.refresh_token);
    await assert.rejects(client.refreshTokenGrant(rp, first.refresh_token), { error: 'invalid_grant' });
    await assertDead(rp, first.access_token);

    const second = await exchange(rp, await authorize(who, rp));
    assert.ok(second.refresh_token);
    assert.equal((await userinfo(second.access_token)).status, 200);
    const revoked = await revokeConnectedApp(
      app.gatehouse,
      { userId: who.account.id, userUuid: who.account.uuid },
      registered.client_id,
      { ip: null, userAgent: null },
    );
    assert.equal(revoked, true);
    await assertDead(rp, second.access_token);
    await assert.rejects(client.refreshTokenGrant(rp, second.refresh_token), { error: 'invalid_grant' });
    const sessions = await oauthSessions(registered.client_id);
    assert.ok(
      sessions.every((s) => s.revoked_at),
      'every Gatehouse session of the client is revoked',
    );
    assert.equal((await auditRows('oauth_consent_revoked', who.account.id)).length, 1);
  });

  test('the implicit flow (response_type=token) and grant_type=password are refused', async () => {
    const { registered, rp } = await firstParty();
    const who = await person();
    await authorize(who, rp);
    const before = (await oauthSessions(registered.client_id)).length;
    for (const responseType of ['token', 'id_token token', 'code token']) {
      const { url } = await authorizationRequest(rp, {
        redirect_uri: CALLBACK,
        response_type: responseType,
        state: 'implicit',
      });
      const answer = await authorizationAnswer(who.browser, url);
      // The registered redirect_uri is known good: the error goes back there (RFC 6749 §4.2.2.1).
      assert.ok(answer.location?.startsWith(`${CALLBACK}#`), `${responseType}: ${answer.location}`);
      assert.equal(answer.params.get('error'), 'unsupported_response_type', `${responseType}: ${answer.location}`);
      assert.equal(answer.params.get('state'), 'implicit', responseType);
      assert.equal(answer.params.get('access_token'), null, responseType);
      assert.equal(answer.params.get('code'), null, responseType);
    }
    assertRefused(
      await tokenRequest(registered, {
        grant_type: 'password',
        username: who.account.username,
        password: who.account.password,
        scope: 'openid',
      }),
      'unsupported_grant_type',
    );
    assertRefused(await tokenRequest(registered, { grant_type: 'client_credentials' }), 'unsupported_grant_type');
    assert.equal((await oauthSessions(registered.client_id)).length, before);
  });

  test('a disabled account: tokens issued before stop working', async () => {
    const { rp } = await firstParty();
    const who = await person();
    const tokens = await exchange(rp, await authorize(who, rp));
    assert.ok(tokens.refresh_token);
    assert.equal((await userinfo(tokens.access_token)).status, 200);
    await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', who.account.id).execute();
    await assertDead(rp, tokens.access_token);
    await assert.rejects(client.refreshTokenGrant(rp, tokens.refresh_token), { error: 'invalid_grant' });
  });

  test('a disabled account (by an admin): tokens issued before stop working, its Gatehouse session revoked', async () => {
    const { registered, rp } = await firstParty();
    const who = await person();
    const tokens = await exchange(rp, await authorize(who, rp));
    assert.ok(tokens.refresh_token);
    const admin = await createAccount(app);
    await app.gatehouse.db.updateTable('users').set({ is_superuser: true }).where('id', '=', admin.id).execute();
    const { access_token } = await login(app, admin);
    const res = await app.inject({
      method: 'PATCH',
      url: `/api/v1/admin/users/${who.account.uuid}`,
      headers: bearer(access_token),
      payload: { is_active: false },
    });
    assert.equal(res.statusCode, 200, res.body);
    await assertDead(rp, tokens.access_token);
    await assert.rejects(client.refreshTokenGrant(rp, tokens.refresh_token), { error: 'invalid_grant' });
    const sessions = await oauthSessions(registered.client_id);
    assert.equal(sessions.length, 1);
    assert.ok(sessions[0]?.revoked_at, 'the grant’s Gatehouse session is revoked');
  });
});
