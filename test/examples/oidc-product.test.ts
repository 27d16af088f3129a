import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildOidcProduct } from '../../examples/oidc-product/app.ts';
import { uniqueName } from '../helpers.ts';
import { createAccount, formIn, HttpBrowser, registerClient, signInOnPage, startProvider } from '../support/oidc.ts';
import { freePort } from '../support/ports.ts';

/** The example product signs people in through a live Gatehouse, driven by a browser without a screen. */
describe('example product: oidc-product', () => {
  let gatehouse: FastifyInstance;
  let issuer: string;
  let product: FastifyInstance;
  let productUrl: string;

  before(async () => {
    ({ app: gatehouse, issuer } = await startProvider());
    const port = await freePort();
    productUrl = `http://127.0.0.1:${port}`;
    const registered = await registerClient(gatehouse, {
      client_name: 'Example product',
      redirect_uris: [`${productUrl}/callback`],
      post_logout_redirect_uris: [`${productUrl}/`],
      first_party: true,
    });
    product = await buildOidcProduct({
      issuer,
      clientId: registered.client_id,
      clientSecret: String(registered.client_secret),
      redirectUri: `${productUrl}/callback`,
      postLogoutRedirectUri: `${productUrl}/`,
      allowInsecureHttp: true,
    });
    await product.listen({ host: '127.0.0.1', port });
  });
  after(async () => {
    await product?.close();
    await gatehouse?.close();
  });

  test('sign in through Gatehouse, see who is signed in, sign out of both', async () => {
    const organization = `Engines ${uniqueName()}`;
    const account = await createAccount(gatehouse, {
      first_name: 'Ada',
      last_name: 'Lovelace',
      organization_name: organization,
    });
    const browser = new HttpBrowser();

    const home = await browser.open(`${productUrl}/`);
    assert.equal(home.response.status, 200);
    assert.match(home.body, /<a href="\/login">Sign in with Gatehouse<\/a>/);

    const toGatehouse = await browser.get(`${productUrl}/login`);
    const sent = new URL(String(toGatehouse.headers.get('location')));
    assert.equal(sent.origin + sent.pathname, `${issuer}/oauth/authorize`);
    assert.equal(sent.searchParams.get('scope'), 'openid profile email organizations');
    assert.equal(sent.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(sent.searchParams.get('state') && sent.searchParams.get('nonce'), 'state and nonce');
    const signInCookie = browser.cookie(productUrl, 'product-sign-in');
    assert.ok(signInCookie, 'the pending sign-in is behind a cookie');
    assert.ok(!/[.]/.test(signInCookie), 'an opaque key, not the verifier');
    const followed = await browser.follow(toGatehouse, `${productUrl}/`);
    const loginPage = { url: followed.url, body: await followed.response.text() };
    assert.ok(loginPage.url.startsWith(`${issuer}/login?redirect_to=`), loginPage.url);

    const back = await signInOnPage(browser, loginPage, account, `${productUrl}/callback`);
    assert.ok(back.url.startsWith(`${productUrl}/callback?code=`), `back at the product: ${back.url}`);
    const signedIn = await browser.open(back.url);
    assert.equal(signedIn.url, `${productUrl}/`);
    assert.match(signedIn.body, new RegExp(`<span id="email">${account.email}</span>`));
    assert.match(signedIn.body, /Signed in as <strong>Ada Lovelace<\/strong>/);
    assert.match(signedIn.body, new RegExp(`<li>${organization} \\(admin\\)</li>`));
    assert.ok(browser.cookie(productUrl, 'product-session'), 'the session cookie');
    assert.equal(browser.cookie(productUrl, 'product-sign-in'), undefined, 'the pending sign-in is used up');

    // The code is used once: the same callback again is no sign-in.
    const replay = await browser.get(back.url);
    assert.equal(replay.status, 400);

    const question = await browser.open(`${productUrl}/logout`, `${productUrl}/`);
    assert.ok(question.url.startsWith(`${issuer}/oauth/logout`), question.url);
    assert.match(question.body, /Example product/);
    assert.equal(browser.cookie(productUrl, 'product-session'), undefined, 'the local session ended first');
    const form = formIn(question.body, 'xsrf');
    const done = await browser.follow(
      await browser.post(new URL(form.action, issuer).href, { ...form.fields, logout: 'yes' }),
      `${productUrl}/`,
    );
    assert.equal(new URL(done.url).origin + new URL(done.url).pathname, `${productUrl}/`);
    const signedOut = await browser.open(done.url);
    assert.match(signedOut.body, /You are not signed in/);
    assert.equal((await browser.get(`${issuer}/account`)).status, 303, 'signed out of Gatehouse too');

    // Signing in again asks for the password again.
    const again = await browser.open(`${productUrl}/login`, `${productUrl}/`);
    assert.ok(again.url.startsWith(`${issuer}/login?redirect_to=`), again.url);
  });

  test('a callback without a sign-in it started is refused; HTML in claims is escaped', async () => {
    const browser = new HttpBrowser();
    const stray = await browser.get(`${productUrl}/callback?code=made-up&state=whatever`);
    assert.equal(stray.status, 400);
    assert.match(await stray.text(), /This sign-in has expired/);

    const account = await createAccount(gatehouse, { first_name: '<b>Eve</b>', last_name: 'Lovelace' });
    const loginPage = await browser.open(`${productUrl}/login`, `${productUrl}/`);
    const back = await signInOnPage(browser, loginPage, account, `${productUrl}/callback`);
    const home = await browser.open(back.url);
    assert.match(home.body, /&lt;b&gt;Eve&lt;\/b&gt; Lovelace/);
    assert.doesNotMatch(home.body, /<b>Eve/);
  });

  test('Gatehouse out of reach: the product says so on a page', async () => {
    const port = await freePort();
    const stranded = await buildOidcProduct({
      issuer: `http://127.0.0.1:${port}`,
      clientId: 'nobody',
      clientSecret: 'nothing',
      redirectUri: 'http://127.0.0.1:9/callback',
      postLogoutRedirectUri: 'http://127.0.0.1:9/',
      allowInsecureHttp: true,
    });
    try {
      const res = await stranded.inject({ url: '/login' });
      assert.equal(res.statusCode, 502);
      assert.match(res.body, /Gatehouse could not be reached/);
    } finally {
      await stranded.close();
    }
  });
});
