import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { buildOidcProduct } from '../../examples/oidc-product/app.ts';
import { uniqueName } from '../helpers.ts';
import { createAccount, registerClient, startProvider } from '../support/oidc.ts';
import { freePort } from '../support/ports.ts';
import {
  checkAndPhotograph,
  cspViolations,
  launchChromium,
  newContext,
  SCREENSHOTS,
  Started,
  skipWithoutChromium,
  submit,
} from './support.ts';

/**
 * Products signing people in with Gatehouse, in Chromium: the example product
 * registered twice, once as a third-party client (sign in, consent) and once
 * as a first-party client (single sign-on, no consent). The pages keep their
 * CSP, whose form-action must let each form's redirects end at the product.
 */
describe('signing in to products with Gatehouse in Chromium', { skip: skipWithoutChromium() }, () => {
  const started = new Started();
  let gatehouse: FastifyInstance;
  let issuer: string;
  let browser: Browser;
  /** A third-party product on 127.0.0.1. */
  let notes: string;
  /** A first-party product on `localhost`: a site of its own, so its cookies are not the other's. */
  let dashboard: string;

  /** The example product as a client of Gatehouse, listening on `host`; its URL. */
  async function startProduct(host: '127.0.0.1' | 'localhost', name: string, firstParty: boolean): Promise<string> {
    const port = await freePort();
    const url = `http://${host}:${port}`;
    const registered = await registerClient(gatehouse, {
      client_name: name,
      redirect_uris: [`${url}/callback`],
      post_logout_redirect_uris: [`${url}/`],
      first_party: firstParty,
    });
    await started.start(
      async () => {
        const product = await buildOidcProduct({
          issuer,
          clientId: registered.client_id,
          clientSecret: String(registered.client_secret),
          redirectUri: `${url}/callback`,
          postLogoutRedirectUri: `${url}/`,
          allowInsecureHttp: true,
        });
        await product.listen({ host: '127.0.0.1', port });
        return product;
      },
      (product) => product.close(),
    );
    return url;
  }

  // One after the other: whatever fails, what did start is closed by after().
  before(async () => {
    ({ app: gatehouse, issuer } = await started.start(
      () => startProvider(),
      ({ app }) => app.close(),
    ));
    notes = await startProduct('127.0.0.1', 'Field Notes', false);
    dashboard = await startProduct('localhost', 'Dashboard', true);
    browser = await started.start(launchChromium, (browser) => browser.close());
    mkdirSync(SCREENSHOTS, { recursive: true });
  });
  after(() => started.closeAll());

  /** Every URL the page's main frame loads, redirects included. */
  function visited(page: Page): string[] {
    const urls: string[] = [];
    page.on('request', (request) => {
      if (request.isNavigationRequest() && request.frame() === page.mainFrame()) urls.push(request.url());
    });
    return urls;
  }

  /**
   * The page as it stands, opened again in a context that allows axe-core's
   * script (with this one's cookies), checked and photographed there.
   */
  async function photograph(strict: BrowserContext, page: Page, name: string, demo: [RegExp, string][]) {
    const audited = await newContext(browser, { bypassCSP: true });
    try {
      await audited.addCookies(await strict.cookies());
      const copy = await audited.newPage();
      await copy.goto(page.url());
      await checkAndPhotograph(copy, name, demo);
    } finally {
      await audited.close();
    }
  }

  async function signInWithGatehouse(page: Page, product: string): Promise<void> {
    await page.goto(`${product}/`);
    await page.getByText('You are not signed in').waitFor();
    await page.getByRole('link', { name: 'Sign in with Gatehouse' }).click();
  }

  test('a third-party product: sign in, consent to its scopes, back signed in; a first-party one: single sign-on', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const violations = cspViolations(page);
    const navigations = visited(page);
    const organization = `Engines ${uniqueName()}`;
    const account = await createAccount(gatehouse, {
      first_name: 'Ada',
      last_name: 'Lovelace',
      organization_name: organization,
    });
    const demo: [RegExp, string][] = [
      [new RegExp(account.email.replaceAll('.', '\\.')), 'ada@example.com'],
      [new RegExp(account.username), 'ada'],
    ];

    // The product sends the browser to Gatehouse's hosted login page.
    await signInWithGatehouse(page, notes);
    await page.waitForURL(`${issuer}/login?redirect_to=*`);
    await page.getByLabel('Username or email').fill(account.username);
    await page.getByLabel('Password', { exact: true }).fill(account.password);
    assert.equal(await submit(page, 'Log in'), 303);

    // Signed in, Gatehouse asks whether Field Notes may have what it asked for.
    await page.getByRole('heading', { name: 'Allow Field Notes to use your account?' }).waitFor();
    assert.match(new URL(page.url()).pathname, /^\/oauth\/interaction\//);
    const scopes = page.getByRole('list', { name: 'What the application asks for' }).getByRole('listitem');
    assert.deepEqual(
      (await scopes.allInnerTexts()).map((text) => text.split('\n').pop()),
      ['openid', 'profile', 'email', 'organizations'],
    );
    assert.ok(await page.getByText('Your email address').isVisible());
    await photograph(context, page, 'oidc-consent', demo);

    // Allow: the form's redirects end at the product's callback, then its home page.
    await Promise.all([page.waitForURL(`${notes}/`), page.getByRole('button', { name: 'Allow', exact: true }).click()]);
    assert.equal(await page.locator('#email').innerText(), account.email);
    assert.match(await page.locator('#signed-in-as').innerText(), /Ada Lovelace/);
    assert.ok(await page.getByText(`${organization} (admin)`).isVisible(), 'the organization is listed');
    assert.ok(
      navigations.some((url) => url.startsWith(`${notes}/callback?code=`)),
      'back through the callback with a code',
    );
    const productCookies = (await context.cookies(notes)).filter((c) => c.name.startsWith('product-'));
    assert.deepEqual(
      productCookies.map((c) => [c.name, c.httpOnly]),
      [['product-session', true]],
      'only the session key, out of reach of scripts',
    );

    // The first-party Dashboard: signed in to Gatehouse already, no password form, no consent.
    navigations.length = 0;
    await signInWithGatehouse(page, dashboard);
    await page.waitForURL(`${dashboard}/`);
    await page.locator('#email').waitFor();
    assert.equal(await page.locator('#email').innerText(), account.email);
    assert.ok(
      !navigations.some((url) => url.startsWith(`${issuer}/login`)),
      `no login page on the way: ${navigations.join(' → ')}`,
    );
    assert.ok(
      navigations.some((url) => url.startsWith(`${issuer}/oauth/authorize?`)),
      'through Gatehouse',
    );
    assert.equal(await page.getByLabel('Password', { exact: true }).count(), 0);

    // Signing out of the Dashboard: Gatehouse asks, then sends the browser back signed out.
    await page.getByRole('link', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign out?' }).waitFor();
    assert.match(await page.locator('.subtitle').innerText(), /Dashboard asks to sign you out/);
    await photograph(context, page, 'oidc-logout', demo);
    // Opening the question again elsewhere renewed its form: ask again here.
    await page.reload();
    await Promise.all([
      page.waitForURL(`${dashboard}/`),
      page.getByRole('button', { name: 'Sign out', exact: true }).click(),
    ]);
    await page.getByText('You are not signed in').waitFor();

    // Signed out of Gatehouse as well: Field Notes keeps its own session, but a new sign-in asks for the password.
    await page.goto(`${notes}/login`);
    await page.waitForURL(`${issuer}/login?redirect_to=*`);
    await page.getByLabel('Password', { exact: true }).waitFor();

    assert.deepEqual(violations, [], 'no CSP violation on the way');
    await context.close();
  });

  test('a first-party product, signed out of Gatehouse: the login form ends at the product, no consent asked', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const violations = cspViolations(page);
    const pagesShown: string[] = [];
    page.on('response', (response) => {
      const request = response.request();
      if (request.isNavigationRequest() && response.url().startsWith(issuer) && response.status() === 200) {
        pagesShown.push(new URL(response.url()).pathname);
      }
    });
    const account = await createAccount(gatehouse);

    await signInWithGatehouse(page, dashboard);
    await page.waitForURL(`${issuer}/login?redirect_to=*`);
    await page.getByLabel('Username or email').fill(account.email);
    await page.getByLabel('Password', { exact: true }).fill(account.password);
    // The login form's redirects leave for another site: its form-action names the product.
    await Promise.all([
      page.waitForURL(`${dashboard}/`),
      page.getByRole('button', { name: 'Log in', exact: true }).click(),
    ]);
    assert.equal(await page.locator('#email').innerText(), account.email);
    assert.deepEqual(pagesShown, ['/login'], 'the login page, and no consent page');
    assert.deepEqual(violations, [], 'no CSP violation on the way');
    await context.close();
  });
});
