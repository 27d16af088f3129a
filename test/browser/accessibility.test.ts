import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { newUser } from '../helpers.ts';
import {
  checkAndPhotograph,
  cspViolations,
  type LiveGatehouse,
  launchChromium,
  mailedLink,
  newContext,
  SCREENSHOTS,
  Started,
  skipWithoutChromium,
  startLiveGatehouse,
  submit,
} from './support.ts';

/**
 * Every page, in every state worth seeing, is checked with axe-core (no
 * serious or critical violation) and photographed at 375 and 1280 px wide
 * into docs/screenshots/. Also: the whole way through with the keyboard only.
 */
describe('pages are accessible and responsive', { skip: skipWithoutChromium() }, () => {
  const started = new Started();
  let gatehouse: LiveGatehouse;
  let browser: Browser;

  // One after the other: when the launch fails, the Gatehouse already listening is closed by after().
  before(async () => {
    gatehouse = await started.start(startLiveGatehouse, (gatehouse) => gatehouse.close());
    browser = await started.start(launchChromium, (browser) => browser.close());
    mkdirSync(SCREENSHOTS, { recursive: true });
  });
  after(() => started.closeAll());

  const url = (path: string) => `${gatehouse.origin}${path}`;

  /** What differs between runs (unique names, times) as fixed demo text, so that screenshots change only with the pages. */
  let demo: [RegExp, string][] = [];

  test('every page passes axe-core and is photographed at 375 and 1280 px', async () => {
    // axe is a script injected into the page: only a context that bypasses the CSP can run it.
    const context = await newContext(browser, { bypassCSP: true });
    const page = await context.newPage();
    const user = newUser();
    user.email = `ada.${user.username}@example.com`;
    demo = [
      [new RegExp(user.email.replaceAll('.', '\\.')), 'ada@example.com'],
      [new RegExp(user.username), 'ada'],
      [/analytical-engines-\d+/, 'analytical-engines'],
      [/\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC/, '24 Nov 2025, 09:30 UTC'],
    ];

    await page.goto(url('/register'));
    await checkAndPhotograph(page, 'register', demo);

    await page.getByLabel('First name').fill('Ada');
    await page.getByLabel('Email address').fill('ada@');
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill('lovelace');
    await page.getByLabel('Confirm password').fill('lovelace');
    assert.equal(await submit(page, 'Create account'), 422);
    await checkAndPhotograph(page, 'register-errors', demo);

    await page.getByLabel('Last name').fill('Lovelace');
    await page.getByLabel('Email address').fill(user.email);
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill(user.password);
    await page.getByLabel('Confirm password').fill(user.password);
    await page.getByLabel('Organization').fill('Analytical Engines');
    assert.equal(await submit(page, 'Create account'), 303);
    await checkAndPhotograph(page, 'login-registered', demo);

    await page.goto(url('/login'));
    await checkAndPhotograph(page, 'login', demo);
    await page.getByLabel('Username or email').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill('wrong password');
    await submit(page, 'Log in');
    await checkAndPhotograph(page, 'login-error', demo);

    await page.goto(await mailedLink(gatehouse.smtp, user.email, 'verify-email'));
    await checkAndPhotograph(page, 'verify-email', demo);
    assert.equal(await submit(page, 'Confirm email address'), 303);

    await page.goto(url('/verify-email'));
    await checkAndPhotograph(page, 'verify-email-resend', demo);

    await page.goto(url('/forgot-password'));
    await checkAndPhotograph(page, 'forgot-password', demo);
    await page.getByLabel('Email address').fill(user.email);
    assert.equal(await submit(page, 'Send reset link'), 303);
    await checkAndPhotograph(page, 'forgot-password-sent', demo);
    await page.goto(await mailedLink(gatehouse.smtp, user.email, 'reset-password'));
    await checkAndPhotograph(page, 'reset-password', demo);
    await page.goto(url('/reset-password?token=expired'));
    await checkAndPhotograph(page, 'reset-password-expired', demo);
    await page.goto(url('/accept-invitation?token=expired'));
    await checkAndPhotograph(page, 'accept-invitation-expired', demo);

    // A second session, so that the account page lists one to sign out.
    const laptop = await newContext(browser, {
      userAgent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15',
    });
    await logIn(await laptop.newPage(), user.username, user.password);
    await logIn(page, user.username, user.password);
    await checkAndPhotograph(page, 'account', demo);
    await page.getByLabel('Current password').fill('not it');
    await page.getByLabel('New password', { exact: true }).fill('short');
    await page.getByLabel('Confirm new password').fill('short');
    await submit(page, 'Change password');
    await checkAndPhotograph(page, 'account-errors', demo);

    await page.goto(url('/logout'));
    await checkAndPhotograph(page, 'logout', demo);

    await page.goto(url('/register'));
    await page.locator('input[name="csrf_token"]').evaluate((input) => input.remove());
    assert.equal(await submit(page, 'Create account'), 403);
    await checkAndPhotograph(page, 'error', demo);
    await Promise.all([context.close(), laptop.close()]);
  });

  async function logIn(page: Page, username: string, password: string) {
    await page.goto(url('/login'));
    await page.getByLabel('Username or email').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    assert.equal(await submit(page, 'Log in'), 303);
  }

  /** What has the focus: its id, name or text (a button's in brackets). */
  async function focused(page: Page): Promise<string> {
    return page.evaluate(() => {
      const el = document.activeElement as HTMLElement | null;
      if (!el) return '';
      const text = (el.textContent ?? '').trim();
      return el.id || el.getAttribute('name') || (el.tagName === 'BUTTON' ? `[${text}]` : text);
    });
  }

  /** Tabs forward until `target` has the focus, returning what got it on the way. */
  async function tabTo(page: Page, target: string, max = 20): Promise<string[]> {
    const seen: string[] = [];
    for (let i = 0; i < max; i++) {
      await page.keyboard.press('Tab');
      const now = await focused(page);
      seen.push(now);
      if (now === target) return seen;
    }
    throw new Error(`Tab never reached ${target}; focus went ${seen.join(' → ')}`);
  }

  async function focusRing(page: Page): Promise<string> {
    return page.evaluate(() => {
      const style = getComputedStyle(document.activeElement as Element);
      return `${style.outlineStyle} ${style.outlineWidth} ${style.boxShadow}`;
    });
  }

  test('register, verify, log in and sign out with the keyboard only', async () => {
    // Without transitions, the focus ring is checked as drawn, not half-way through fading in.
    const context: BrowserContext = await newContext(browser, { reducedMotion: 'reduce' });
    const page = await context.newPage();
    const violations = cspViolations(page);
    const user = newUser();

    await page.goto(url('/register'));
    assert.equal(
      await page.evaluate(() => getComputedStyle(document.body).backgroundColor),
      'rgb(244, 245, 249)',
      'the stylesheet loads under the CSP',
    );
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), 'Skip to main content');
    assert.match(await focusRing(page), /^solid 3px/, 'the skip link shows where the focus is');
    await page.keyboard.press('Enter');
    const order = await tabTo(page, 'first_name');
    assert.deepEqual(
      order,
      ['Log in', 'first_name'],
      'from the main content, the first stop is the login link, then the form',
    );
    assert.match(await focusRing(page), /rgba?\(245, 158, 11/, 'a focused input shows a ring');
    await page.keyboard.type('Grace');
    for (const [name, text] of [
      ['last_name', 'Hopper'],
      ['name', 'Grace Brewster Hopper'],
      ['email', user.email],
      ['username', user.username],
      ['password', user.password],
      ['confirm_password', user.password],
    ] as const) {
      await page.keyboard.press('Tab');
      assert.equal(await focused(page), name);
      await page.keyboard.type(text);
    }
    await Promise.all([page.waitForURL('**/login'), page.keyboard.press('Enter')]);
    await page.getByText('Your account was created').waitFor();

    await page.goto(await mailedLink(gatehouse.smtp, user.email, 'verify-email'));
    await tabTo(page, '[Confirm email address]');
    await Promise.all([page.waitForURL('**/login'), page.keyboard.press('Enter')]);
    await page.getByText('Your email address is verified').waitFor();

    await tabTo(page, 'username');
    await page.keyboard.type(user.username);
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), 'password');
    await page.keyboard.type(user.password);
    await Promise.all([page.waitForURL('**/account'), page.keyboard.press('Enter')]);

    // The header's link leads to the sign-out page, whose button signs out.
    const sequence = await tabTo(page, 'Sign out');
    assert.equal(sequence[0], 'Skip to main content', 'the skip link comes first');
    await Promise.all([page.waitForURL('**/logout'), page.keyboard.press('Enter')]);
    await tabTo(page, '[Sign out]');
    await Promise.all([page.waitForURL('**/login'), page.keyboard.press('Enter')]);
    await page.getByText('You are signed out').waitFor();
    assert.deepEqual(violations, []);
    await context.close();
  });
});
