import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import type { Browser, Page } from 'playwright-core';
import { newUser } from '../helpers.ts';
import {
  checkAndPhotograph,
  cspViolations,
  type LiveGatehouse,
  launchChromium,
  newContext,
  SCREENSHOTS,
  Started,
  skipWithoutChromium,
  startLiveGatehouse,
  submit,
} from './support.ts';

/**
 * Two-step verification with only a browser and an authenticator app
 * (`otpauth`, as a phone would run it): enrol, sign out, sign in with a
 * code, sign out, sign in with a backup code. No JavaScript on the pages.
 */
describe('two-step verification in Chromium', { skip: skipWithoutChromium() }, () => {
  const started = new Started();
  let gatehouse: LiveGatehouse;
  let browser: Browser;

  before(async () => {
    gatehouse = await started.start(
      () => startLiveGatehouse({ REQUIRE_EMAIL_VERIFICATION: 'false' }),
      (gatehouse) => gatehouse.close(),
    );
    browser = await started.start(launchChromium, (browser) => browser.close());
    mkdirSync(SCREENSHOTS, { recursive: true });
  });
  after(() => started.closeAll());

  const url = (path: string) => `${gatehouse.origin}${path}`;

  async function logInWithPassword(page: Page, username: string, password: string) {
    await page.goto(url('/login'));
    await page.getByLabel('Username or email').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    assert.equal(await submit(page, 'Log in'), 200);
    await page.getByRole('heading', { name: 'Two-step verification' }).waitFor();
  }

  async function signOut(page: Page) {
    await page.goto(url('/account'));
    assert.equal(await submit(page, 'Sign out'), 303);
  }

  test('enrol, sign out, sign in with a code, then with a backup code; axe-clean, no CSP violation', async () => {
    const user = newUser();
    const created = await gatehouse.app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(created.statusCode, 201, created.body);
    const demo: [RegExp, string][] = [
      [new RegExp(user.email.replaceAll('.', '\\.')), 'ada@example.com'],
      [new RegExp(user.username), 'ada'],
      [/\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC/, '24 Nov 2025, 09:30 UTC'],
    ];
    // axe is injected into the page, which needs a context that bypasses the CSP; a second one keeps it.
    const audited = await (await newContext(browser, { bypassCSP: true })).newPage();
    const strict = await (await newContext(browser)).newPage();
    const violations = cspViolations(strict);

    // Enrol, in the audited context.
    const page = audited;
    await page.goto(url('/login'));
    await page.getByLabel('Username or email').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill(user.password);
    assert.equal(await submit(page, 'Log in'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');
    await page.getByText('Add an authenticator app').waitFor();
    await page.getByRole('link', { name: 'Turn on two-step verification' }).click();
    await page.waitForLoadState();
    assert.equal(new URL(page.url()).pathname, '/account/mfa');
    assert.equal(await page.locator('figure.qr svg').count(), 1);
    const secret = (await page.locator('#totp-secret').innerText()).replaceAll(' ', '');
    assert.match(secret, /^[A-Z2-7]{32}$/);
    await checkAndPhotograph(page, 'mfa-setup', [
      ...demo,
      [/([A-Z2-7]{4} ){7}[A-Z2-7]{4}/, 'JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP'],
    ]);
    const app = new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 });
    const code = (steps: number) => app.generate({ timestamp: Date.now() + steps * 30_000 });

    await page.getByLabel('Authentication code').fill('000000');
    assert.equal(await submit(page, 'Turn on'), 401);
    await page.getByText('There is a problem').waitFor();
    await page.getByLabel('Authentication code').fill(code(0));
    assert.equal(await submit(page, 'Turn on'), 200);
    const backupCodes = await page.locator('ul.codes code').allInnerTexts();
    assert.equal(backupCodes.length, 10);
    const download = await page.getByRole('link', { name: 'Download as text' }).getAttribute('href');
    assert.ok(download?.startsWith('data:text/plain;charset=utf-8,'), download ?? '');
    assert.ok(decodeURIComponent(download?.split(',')[1] ?? '').includes(backupCodes[0] as string));
    await checkAndPhotograph(page, 'mfa-backup-codes', [...demo, [/^[0-9a-z]{4}-[0-9a-z]{4}$/, 'abcd-2345']]);
    await page.goto(url('/account'));
    await page.getByText('Sign-in asks for a code from your authenticator app').waitFor();
    await checkAndPhotograph(page, 'account-mfa', demo);
    await signOut(page);

    // Sign in with a code from the app, in a context that keeps the CSP (the next step's code, within the skew).
    await logInWithPassword(strict, user.username, user.password);
    const field = strict.getByLabel('Authentication code');
    assert.equal(await field.getAttribute('autocomplete'), 'one-time-code');
    assert.equal(await field.getAttribute('inputmode'), 'numeric');
    await field.fill(code(1));
    assert.equal(await submit(strict, 'Verify'), 303);
    assert.equal(new URL(strict.url()).pathname, '/account');
    await signOut(strict);

    // With a backup code, and axe on the second step.
    await logInWithPassword(page, user.username, user.password);
    await checkAndPhotograph(page, 'login-mfa', demo);
    await page.getByText('Use a backup code instead').click();
    await page.getByLabel('Backup code').fill(backupCodes[0] as string);
    assert.equal(await submit(page, 'Verify with a backup code'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');
    await page.getByText('9 unused backup codes left').waitFor();

    assert.deepEqual(violations, []);
  });
});
