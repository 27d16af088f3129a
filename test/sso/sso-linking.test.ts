import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { bearer, createAccount, login, type TestAccount } from '../api/auth-helpers.ts';
import { json, startApp, strongPassword, uniqueName } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { formIn, HttpBrowser } from '../support/http-browser.ts';
import { enrol } from '../support/mfa.ts';
import { freePort } from '../support/ports.ts';
import { UpstreamIdp } from '../support/upstream-idp.ts';

interface Identity {
  id: string;
  provider: string;
  email: string | null;
  email_verified: boolean;
}

describe('linking identities and signing in with them (a real oidc-provider as the issuer)', () => {
  let app: FastifyInstance;
  let base: string;
  let idp: UpstreamIdp;
  const clock = testClock();
  const secret = randomBytes(24).toString('base64url');

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    idp = await UpstreamIdp.start({
      clients: [{ client_id: 'gatehouse', client_secret: secret, redirect_uris: [`${base}/api/v1/sso/acme/callback`] }],
    });
    app = await startApp(
      {
        PUBLIC_URL: base,
        REDIS_KEY_PREFIX: `t:${uniqueName('ssolink')}:`,
        SSO_PROVIDERS: 'acme',
        SSO_ACME_CLIENT_ID: 'gatehouse',
        SSO_ACME_CLIENT_SECRET: secret,
        SSO_ACME_ISSUER: idp.issuer,
        SSO_ACME_LABEL: 'Continue with Acme',
        EMAIL_SIGN_IN: 'off',
        RATE_LIMIT_FORGOT_PASSWORD: '100000/1h',
      },
      { clock },
    );
    await app.listen({ host: '127.0.0.1', port });
  });
  after(async () => {
    await app?.close();
    await idp?.close();
  });

  const db = () => app.gatehouse.db;

  async function audits(action: string, userId: number): Promise<number> {
    const rows = await db()
      .selectFrom('audit_logs')
      .select('id')
      .where('action', '=', action)
      .where('user_id', '=', userId)
      .execute();
    return rows.length;
  }

  /** A person at the provider: its login (the `sub`) and what it asserts. */
  function upstreamPerson(email = `${uniqueName('up')}@example.com`, verified = true): string {
    const sub = uniqueName('sub');
    idp.accounts[sub] = { email, email_verified: verified, name: 'Upstream Person' };
    return sub;
  }

  /** Signs `account` in on Gatehouse's login page with its password, in `browser`. */
  async function signInWithPassword(browser: HttpBrowser, account: TestAccount): Promise<void> {
    const page = await browser.open(`${base}/login`);
    const form = formIn(page.body, 'name="username"');
    const posted = await browser.post(new URL(form.action, base).href, {
      ...form.fields,
      username: account.username,
      password: account.password,
    });
    assert.equal(posted.status, 303, await posted.clone().text());
  }

  /** On the account page: posts the "Link Acme" form, signs in at the provider as `sub`, follows on to `stopAt`. */
  async function linkFromAccountPage(browser: HttpBrowser, sub: string, stopAt: string) {
    const page = await browser.open(`${base}/account`);
    assert.match(page.body, /Link Acme/);
    // The form's answer redirects to the provider: the page's form-action allows its origin.
    const formAction = /form-action ([^;]*)/.exec(String(page.response.headers.get('content-security-policy')))?.[1];
    assert.ok(formAction?.split(' ').includes(new URL(idp.issuer).origin), formAction);
    const form = formIn(page.body, 'value="link_identity"');
    assert.equal(form.fields.provider, 'acme');
    const posted = await browser.post(new URL(form.action, base).href, form.fields);
    assert.equal(posted.status, 302, await posted.clone().text());
    const location = String(posted.headers.get('location'));
    assert.ok(location.startsWith(idp.issuer), location);
    return idp.signIn(browser, await browser.open(location), sub, stopAt);
  }

  /** A provider sign-in in `browser` as `sub`, from `/sso/acme/start` (with `query`), followed on to `stopAt`. */
  async function providerSignIn(browser: HttpBrowser, sub: string, stopAt: string, query = '') {
    const start = await browser.get(`${base}/api/v1/sso/acme/start${query}`);
    assert.equal(start.status, 302, await start.clone().text());
    return idp.signIn(browser, await browser.open(String(start.headers.get('location'))), sub, stopAt);
  }

  async function identities(accessToken: string): Promise<Identity[]> {
    const res = await app.inject({ method: 'GET', url: '/api/v1/me/identities', headers: bearer(accessToken) });
    assert.equal(res.statusCode, 200, res.body);
    return json<Identity[]>(res);
  }

  function unlink(accessToken: string, id: string) {
    return app.inject({ method: 'DELETE', url: `/api/v1/me/identities/${id}`, headers: bearer(accessToken) });
  }

  /** The access token of the browser's session (its cookie holds the refresh token). */
  async function tokenOfBrowser(browser: HttpBrowser): Promise<string> {
    const cookie = browser.cookie(base, 'gatehouse-session');
    assert.ok(cookie, 'a session cookie');
    const res = await app.inject({ method: 'POST', url: '/api/v1/refresh', payload: { refresh_token: cookie } });
    assert.equal(res.statusCode, 200, res.body);
    return json<{ access_token: string }>(res).access_token;
  }

  test('linking from the account page: back at /account with the identity listed, audited, mailed; listed by the API; unlinked', async () => {
    const account = await createAccount(app);
    const sub = upstreamPerson();
    const browser = new HttpBrowser();
    await signInWithPassword(browser, account);
    const back = await linkFromAccountPage(browser, sub, `${base}/account`);
    assert.equal(back.url, `${base}/account`);
    const page = await browser.open(`${base}/account`);
    assert.equal(page.response.status, 200);
    assert.match(page.body, /Sign-in providers[\s\S]*Acme[\s\S]*Unlink/);
    assert.doesNotMatch(page.body, /Link Acme/, 'a linked provider is not offered again');
    assert.equal(await audits('identity_linked', account.id), 1);
    const mails = await db()
      .selectFrom('email_outbox')
      .select(['template', 'text_body'])
      .where('to_address', '=', account.email)
      .where('template', '=', 'identity_linked')
      .execute();
    assert.equal(mails.length, 1);
    assert.match(mails[0]?.text_body ?? '', /Acme/);

    const tokens = await login(app, account);
    const listed = await identities(tokens.access_token);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]?.provider, 'acme');
    assert.equal(listed[0]?.email, idp.accounts[sub]?.email);
    assert.equal(listed[0]?.email_verified, true);

    // The identity now signs this account in.
    const other = new HttpBrowser();
    const signedIn = await providerSignIn(other, sub, `${base}/account`);
    assert.equal(signedIn.url, `${base}/account`);
    assert.match((await other.open(`${base}/account`)).body, new RegExp(account.email));

    // It has a password: the identity may go.
    const removed = await unlink(tokens.access_token, String(listed[0]?.id));
    assert.equal(removed.statusCode, 204, removed.body);
    assert.deepEqual(await identities(tokens.access_token), []);
    assert.equal(await audits('identity_unlinked', account.id), 1);
    const again = await unlink(tokens.access_token, String(listed[0]?.id));
    assert.equal(again.statusCode, 404);
  });

  test('an identity linked to one account cannot be linked to another: 409, nothing moves', async () => {
    const first = await createAccount(app);
    const second = await createAccount(app);
    const sub = upstreamPerson();
    const firstBrowser = new HttpBrowser();
    await signInWithPassword(firstBrowser, first);
    assert.equal((await linkFromAccountPage(firstBrowser, sub, `${base}/account`)).url, `${base}/account`);

    const secondBrowser = new HttpBrowser();
    await signInWithPassword(secondBrowser, second);
    const callback = `${base}/api/v1/sso/acme/callback`;
    const at = await linkFromAccountPage(secondBrowser, sub, callback);
    assert.ok(at.url.startsWith(callback), at.url);
    const refused = await secondBrowser.get(at.url);
    assert.equal(refused.status, 409);
    assert.equal(((await refused.json()) as { code: string }).code, 'CONFLICT');
    const rows = await db()
      .selectFrom('user_identities')
      .select('user_id')
      .where('provider', '=', 'acme')
      .where('subject', '=', sub)
      .execute();
    assert.deepEqual(
      rows.map((r) => r.user_id),
      [first.id],
    );
    assert.equal(await audits('identity_linked', second.id), 0);
  });

  test("another user's identity: 404, not removed", async () => {
    const owner = await createAccount(app);
    const stranger = await createAccount(app);
    const sub = upstreamPerson();
    const browser = new HttpBrowser();
    await signInWithPassword(browser, owner);
    await linkFromAccountPage(browser, sub, `${base}/account`);
    const ownerTokens = await login(app, owner);
    const [identity] = await identities(ownerTokens.access_token);
    assert.ok(identity);
    const strangerTokens = await login(app, stranger);
    const res = await unlink(strangerTokens.access_token, identity.id);
    assert.equal(res.statusCode, 404, res.body);
    assert.equal((await identities(ownerTokens.access_token)).length, 1);
    assert.equal((await unlink(strangerTokens.access_token, 'not-a-uuid')).statusCode, 404);
  });

  test('an account made by the provider cannot unlink its only way in (409) until it sets a password', async () => {
    const email = `${uniqueName('made')}@example.com`;
    const sub = upstreamPerson(email);
    const browser = new HttpBrowser();
    assert.equal((await providerSignIn(browser, sub, `${base}/account`)).url, `${base}/account`);
    const user = await db().selectFrom('users').selectAll().where('email', '=', email).executeTakeFirstOrThrow();
    assert.equal(user.has_password, false);
    const accessToken = await tokenOfBrowser(browser);
    const [identity] = await identities(accessToken);
    assert.ok(identity);
    const refused = await unlink(accessToken, identity.id);
    assert.equal(refused.statusCode, 409, refused.body);
    assert.equal(json<{ code: string }>(refused).code, 'CONFLICT');
    assert.equal((await identities(accessToken)).length, 1);

    // Forgot password → the mailed token → a password: now the identity may go.
    const forgot = await app.inject({ method: 'POST', url: '/api/v1/forgot-password', payload: { email } });
    assert.equal(forgot.statusCode, 202, forgot.body);
    const mail = await db()
      .selectFrom('email_outbox')
      .select('text_body')
      .where('to_address', '=', email)
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    const token = /reset-password\?token=([\w.~%-]+)/.exec(mail.text_body)?.[1];
    assert.ok(token, mail.text_body);
    const password = strongPassword();
    const reset = await app.inject({
      method: 'POST',
      url: '/api/v1/reset-password',
      payload: { token: decodeURIComponent(token), new_password: password, confirm_password: password },
    });
    assert.equal(reset.statusCode, 204, reset.body);
    const after = await db()
      .selectFrom('users')
      .select('has_password')
      .where('id', '=', user.id)
      .executeTakeFirstOrThrow();
    assert.equal(after.has_password, true);
    const tokens = await login(app, { id: user.id, uuid: user.uuid, email, username: user.username, password });
    const removed = await unlink(tokens.access_token, identity.id);
    assert.equal(removed.statusCode, 204, removed.body);
    assert.equal(await audits('identity_unlinked', user.id), 1);
  });

  test('an account with TOTP signing in through the provider: the code step at /login/mfa, a backup code, amr fed,backup_code', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const { backupCodes } = await enrol(app, tokens.access_token, clock);
    const sub = upstreamPerson();
    // Linked directly: the account page's password sign-in would ask for the second factor first.
    await db()
      .insertInto('user_identities')
      .values({
        user_id: account.id,
        provider: 'acme',
        subject: sub,
        email: idp.accounts[sub]?.email ?? null,
        email_verified: true,
      })
      .execute();

    const browser = new HttpBrowser();
    const back = await providerSignIn(browser, sub, `${base}/login/mfa`);
    assert.equal(back.url, `${base}/login/mfa`);
    assert.equal(browser.cookie(base, 'gatehouse-sso-mfa') !== undefined, true);
    const page = await browser.open(`${base}/login/mfa`);
    assert.equal(page.response.status, 200);
    assert.match(page.body, /Two-step verification/);
    const form = formIn(page.body, 'name="backup_code"');
    assert.ok(form.fields.mfa_token);
    const before = await db().selectFrom('sessions').select('id').where('user_id', '=', account.id).execute();
    const posted = await browser.post(new URL(form.action, base).href, {
      ...form.fields,
      backup_code: String(backupCodes[0]),
    });
    assert.equal(posted.status, 303, await posted.clone().text());
    assert.equal(posted.headers.get('location'), '/account');
    const account_page = await browser.open(`${base}/account`);
    assert.match(account_page.body, new RegExp(account.email));
    const sessions = await db()
      .selectFrom('sessions')
      .select(['id', 'amr', 'kind'])
      .where('user_id', '=', account.id)
      .orderBy('id', 'desc')
      .execute();
    assert.equal(sessions.length, before.length + 1);
    assert.deepEqual([sessions[0]?.kind, sessions[0]?.amr], ['browser', 'fed,backup_code']);
  });

  test('redirect_to survives the code step of an account with TOTP', async () => {
    const account = await createAccount(app);
    const { backupCodes } = await enrol(app, (await login(app, account)).access_token, clock);
    const sub = upstreamPerson();
    await db()
      .insertInto('user_identities')
      .values({ user_id: account.id, provider: 'acme', subject: sub, email: null, email_verified: false })
      .execute();
    const target = '/oauth/authorize?client_id=abc&response_type=code&scope=openid&state=s1';
    const browser = new HttpBrowser();
    const back = await providerSignIn(browser, sub, `${base}/login/mfa`, `?redirect_to=${encodeURIComponent(target)}`);
    assert.ok(back.url.startsWith(`${base}/login/mfa`), back.url);
    const page = await browser.open(back.url);
    const form = formIn(page.body, 'name="backup_code"');
    assert.equal(form.fields.redirect_to, target.replaceAll('&', '&amp;'));
    const posted = await browser.post(new URL(form.action, base).href, {
      ...form.fields,
      redirect_to: target,
      backup_code: String(backupCodes[1]),
    });
    assert.equal(posted.status, 303, await posted.clone().text());
    assert.equal(posted.headers.get('location'), target);
  });

  test('redirect_to with a local path (an authorization request) survives the round trip', async () => {
    const sub = upstreamPerson();
    const target = '/oauth/authorize?client_id=abc&response_type=code&scope=openid%20email&state=xyz';
    const browser = new HttpBrowser();
    const back = await providerSignIn(browser, sub, `${base}/oauth/`, `?redirect_to=${encodeURIComponent(target)}`);
    assert.equal(back.url, `${base}${target}`);
    const refused = await browser.get(
      `${base}/api/v1/sso/acme/start?redirect_to=${encodeURIComponent('//evil.example/x')}`,
    );
    assert.equal(refused.status, 400);
  });

  test('the login and register pages: one "Continue with …" link per provider, to its start', async () => {
    for (const path of ['/login', '/register']) {
      const page = await new HttpBrowser().open(`${base}${path}`);
      assert.equal(page.response.status, 200, path);
      const links = [...page.body.matchAll(/<a [^>]*data-sso="([^"]+)"[^>]*>([^<]*)<\/a>/g)];
      assert.equal(links.length, 1, path);
      assert.equal(links[0]?.[1], 'acme');
      assert.match(String(links[0]?.[0]), /href="\/api\/v1\/sso\/acme\/start"/);
      assert.equal(links[0]?.[2], 'Continue with Acme');
    }
    const withRedirect = await new HttpBrowser().open(
      `${base}/login?redirect_to=${encodeURIComponent('/oauth/authorize?a=1')}`,
    );
    assert.match(withRedirect.body, /href="\/api\/v1\/sso\/acme\/start\?redirect_to=%2Foauth%2Fauthorize%3Fa%3D1"/);
  });
});
