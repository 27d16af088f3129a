import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Browser, Page } from 'playwright-core';
import { createAccount } from '../api/auth-helpers.ts';
import { startApp, uniqueName } from '../helpers.ts';
import { freePort } from '../support/ports.ts';
import { UpstreamIdp } from '../support/upstream-idp.ts';
import { launchChromium, newContext, Started, skipWithoutChromium, submit } from './support.ts';

/**
 * Signing in with another identity provider in Chromium: a real
 * oidc-provider as the issuer, its own development login and consent pages.
 * Gatehouse's pages keep their CSP all the way.
 */
describe('sign-in with another identity provider in Chromium', { skip: skipWithoutChromium() }, () => {
  const started = new Started();
  let gatehouse: FastifyInstance;
  let base: string;
  let idp: UpstreamIdp;
  let browser: Browser;

  // One after the other: whatever fails, what did start is closed by after().
  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const secret = randomBytes(24).toString('base64url');
    idp = await started.start(
      () =>
        UpstreamIdp.start({
          clients: [
            { client_id: 'gatehouse', client_secret: secret, redirect_uris: [`${base}/api/v1/sso/acme/callback`] },
          ],
        }),
      (idp) => idp.close(),
    );
    gatehouse = await started.start(
      async () => {
        const app = await startApp({
          PUBLIC_URL: base,
          REDIS_KEY_PREFIX: `t:${uniqueName('ssobrowser')}:`,
          SSO_PROVIDERS: 'acme',
          SSO_ACME_CLIENT_ID: 'gatehouse',
          SSO_ACME_CLIENT_SECRET: secret,
          SSO_ACME_ISSUER: idp.issuer,
          SSO_ACME_LABEL: 'Continue with Acme',
        });
        await app.listen({ host: '127.0.0.1', port });
        return app;
      },
      (app) => app.close(),
    );
    browser = await started.start(launchChromium, (browser) => browser.close());
  });
  after(() => started.closeAll());

  /** CSP messages of Gatehouse's own pages (the provider's pages are not ours to judge). */
  function gatehouseCspViolations(page: Page): string[] {
    const messages: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text()) && page.url().startsWith(base)) {
        messages.push(`${page.url()}: ${message.text()}`);
      }
    });
    return messages;
  }

  /** At the provider's own pages: signs in as `login` with any password, then agrees. */
  async function signInAtProvider(page: Page, login: string): Promise<void> {
    await page.waitForURL(`${idp.issuer}/**`);
    await page.locator('input[name="login"]').fill(login);
    await page.locator('input[name="password"]').fill('any password');
    await page.locator('button[type="submit"]').click();
    await page.getByRole('button', { name: 'Continue' }).click();
  }

  test('"Continue with Acme" on the login page: the provider\'s login and consent, then signed in on /account', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const violations = gatehouseCspViolations(page);
    const login = uniqueName('grace');
    idp.accounts[login] = { email: `${login}@example.com`, email_verified: true, name: 'Grace Hopper' };

    await page.goto(`${base}/login`);
    await page.getByRole('link', { name: 'Continue with Acme' }).click();
    await signInAtProvider(page, login);
    await page.waitForURL(`${base}/account`);
    await page.getByRole('heading', { name: 'Sign-in providers' }).waitFor();
    assert.ok(await page.getByText(`${login}@example.com`).first().isVisible());
    const session = (await context.cookies(base)).find((c) => c.name === 'gatehouse-session');
    assert.ok(session?.httpOnly, 'a session cookie, out of reach of scripts');

    assert.deepEqual(violations, [], 'no CSP violation on the way');
    await context.close();
  });

  test('"Link Acme" on the account page: the form\'s redirect leaves for the provider, back with the identity listed', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const violations = gatehouseCspViolations(page);
    const account = await createAccount(gatehouse);
    const login = uniqueName('linked');
    idp.accounts[login] = { email: `${login}@example.com`, email_verified: true };

    await page.goto(`${base}/login`);
    await page.getByLabel('Username or email').fill(account.username);
    await page.getByLabel('Password', { exact: true }).fill(account.password);
    assert.equal(await submit(page, 'Log in'), 303);
    await page.waitForURL(`${base}/account`);
    await page.getByRole('button', { name: 'Link Acme' }).click();
    await signInAtProvider(page, login);
    await page.waitForURL(`${base}/account`);
    const section = page.getByRole('region', { name: 'Sign-in providers' });
    await section.getByRole('button', { name: 'Unlink' }).waitFor();
    assert.ok(await section.getByText(`${login}@example.com`).isVisible());
    assert.equal(await page.getByRole('button', { name: 'Link Acme' }).count(), 0);

    assert.deepEqual(violations, [], 'no CSP violation on the way');
    await context.close();
  });
});
