import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { newUser, strongPassword } from '../helpers.ts';
import {
  cspViolations,
  type LiveGatehouse,
  launchChromium,
  mailedLink,
  newContext,
  Started,
  skipWithoutChromium,
  startLiveGatehouse,
  submit,
} from './support.ts';

/**
 * A person with only a browser: real Chromium against Gatehouse listening on
 * a loopback port, mail received over SMTP, no JavaScript on the pages.
 */
describe('pages in Chromium', { skip: skipWithoutChromium() }, () => {
  const started = new Started();
  let gatehouse: LiveGatehouse;
  let browser: Browser;

  // One after the other: when the launch fails, the Gatehouse already listening is closed by after().
  before(async () => {
    gatehouse = await started.start(startLiveGatehouse, (gatehouse) => gatehouse.close());
    browser = await started.start(launchChromium, (browser) => browser.close());
  });
  after(() => started.closeAll());

  const url = (path: string) => `${gatehouse.origin}${path}`;

  /** Submits the page's form by its button and waits for the page that answers. */

  async function register(page: Page, user: { email: string; username: string; password: string }, firstName = 'Ada') {
    await page.goto(url('/register'));
    await page.getByLabel('First name').fill(firstName);
    await page.getByLabel('Last name').fill('Lovelace');
    await page.getByLabel('Email address').fill(user.email);
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill(user.password);
    await page.getByLabel('Confirm password').fill(user.password);
    await page.getByLabel('Organization').fill('Analytical Engines');
    assert.equal(await submit(page, 'Create account'), 303);
    assert.equal(new URL(page.url()).pathname, '/login');
    await page.getByText('Your account was created').waitFor();
  }

  async function verifyByMail(page: Page, email: string) {
    const link = await mailedLink(gatehouse.smtp, email, 'verify-email');
    assert.ok(link.startsWith(`${gatehouse.origin}/verify-email?token=`), link);
    await page.goto(link);
    await page.getByRole('heading', { name: 'Confirm your email address' }).waitFor();
    assert.equal(await submit(page, 'Confirm email address'), 303);
    await page.getByText('Your email address is verified').waitFor();
  }

  /** Registered through the page and verified through the mailed link: ready to log in. */
  async function registerVerified(
    page: Page,
    user: { email: string; username: string; password: string },
    firstName?: string,
  ) {
    await register(page, user, firstName);
    await verifyByMail(page, user.email);
  }

  async function logIn(page: Page, username: string, password: string) {
    await page.goto(url('/login'));
    await page.getByLabel('Username or email').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    assert.equal(await submit(page, 'Log in'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');
  }

  test('register, verify by mail, log in, change the password, sign out another session, log out', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const violations = cspViolations(page);
    const user = newUser();

    await registerVerified(page, user);
    await logIn(page, user.username, user.password);

    await page.getByRole('heading', { name: 'Your account' }).waitFor();
    assert.match(await page.locator('#signed-in-as').innerText(), /Ada Lovelace/);
    assert.ok(await page.getByText('Analytical Engines').isVisible(), 'the organization is listed');
    assert.equal(await page.getByLabel('First name').inputValue(), 'Ada');
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'gatehouse-session');
    assert.ok(session, 'the session cookie is set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Lax');
    assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie is readable by scripts');

    // A second device signs in.
    const phone = await newContext(browser, {
      userAgent:
        'Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Version/18.0 Mobile Safari/604.1',
      viewport: { width: 375, height: 812 },
    });
    const phonePage = await phone.newPage();
    await logIn(phonePage, user.email, user.password);

    // Change the password from the account page: a wrong current password first.
    const newPassword = strongPassword();
    await page.reload();
    await page.getByLabel('Current password').fill('Not-The-Passw0rd!');
    await page.getByLabel('New password', { exact: true }).fill(newPassword);
    await page.getByLabel('Confirm new password').fill(newPassword);
    assert.equal(await submit(page, 'Change password'), 401);
    assert.match(await page.locator('#current_password-error').innerText(), /current password is incorrect/);
    assert.equal(await page.getByLabel('Current password').getAttribute('aria-describedby'), 'current_password-error');
    assert.equal(
      await page.getByLabel('New password', { exact: true }).inputValue(),
      '',
      'passwords are never refilled',
    );

    // Then the right one: every other session (the phone's) is signed out.
    await page.getByLabel('Current password').fill(user.password);
    await page.getByLabel('New password', { exact: true }).fill(newPassword);
    await page.getByLabel('Confirm new password').fill(newPassword);
    assert.equal(await submit(page, 'Change password'), 303);
    await page.getByText('Your password was changed').waitFor();
    await phonePage.goto(url('/account'));
    assert.equal(new URL(phonePage.url()).pathname, '/login', 'changing the password signed the phone out');
    // The phone signs in again, and this time is signed out from the account page.
    await logIn(phonePage, user.username, newPassword);

    await page.reload();
    const phoneRow = page.locator('.list__item', { hasText: 'Safari on iOS' });
    await phoneRow.waitFor();
    assert.equal(await page.locator('.list__item', { hasText: 'This device' }).count(), 1);
    const [revoked] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST'),
      phoneRow.getByRole('button', { name: 'Sign out' }).click(),
    ]);
    assert.equal(revoked.status(), 303);
    await page.getByText('That session was signed out').waitFor();
    assert.equal(await page.locator('.list__item', { hasText: 'Safari on iOS' }).count(), 0);
    await phonePage.goto(url('/account'));
    assert.equal(new URL(phonePage.url()).pathname, '/login', 'the phone was signed out');

    // Log out: the session is revoked on the server, the copied cookie is dead.
    const copied = (await context.cookies()).find((c) => c.name === 'gatehouse-session');
    await page.getByRole('main').getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('You are signed out').waitFor();
    assert.equal(new URL(page.url()).pathname, '/login');
    const thief = await newContext(browser);
    await thief.addCookies([{ ...(copied as NonNullable<typeof copied>) }]);
    const thiefPage = await thief.newPage();
    await thiefPage.goto(url('/account'));
    assert.equal(new URL(thiefPage.url()).pathname, '/login');

    const live = await gatehouse.app.gatehouse.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select('sessions.id')
      .where('users.username', '=', user.username)
      .where('sessions.revoked_at', 'is', null)
      .execute();
    assert.equal(live.length, 0, 'every session of the journey is revoked');
    assert.deepEqual(violations, []);
    await Promise.all([context.close(), phone.close(), thief.close()]);
  });

  test('a registration form with several problems shows every one of them after one submission', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const violations = cspViolations(page);
    await page.goto(url('/register'));
    const hint = await page.locator('#password-hint').innerText();
    for (const rule of [
      'At least 12 characters',
      'uppercase',
      'lowercase',
      'digit',
      'special character',
      'No common patterns',
    ]) {
      assert.ok(hint.includes(rule), `the hint names "${rule}": ${hint}`);
    }

    await page.getByLabel('First name').fill('Ada');
    await page.getByLabel('Email address').fill('ada@');
    await page.getByLabel('Username').fill('ab');
    await page.getByLabel('Password', { exact: true }).fill('password');
    await page.getByLabel('Confirm password').fill('passw0rd');
    assert.equal(await submit(page, 'Create account'), 422);

    assert.match(await page.locator('#email-error').innerText(), /Email must be a valid email address/);
    assert.match(await page.locator('#username-error').innerText(), /Username must be between 3 and 50 characters/);
    assert.match(await page.locator('#confirm_password-error').innerText(), /Passwords do not match/);
    const rules = await page.locator('#password-error li').allInnerTexts();
    assert.deepEqual(
      rules.map((rule) => rule.replace(/^Error:\s*/, '')),
      [
        'Password must be at least 12 characters long',
        'Password must contain at least one uppercase letter',
        'Password must contain at least one digit',
        'Password must contain at least one special character',
        'Password must not contain common patterns',
      ],
    );
    for (const label of ['Email address', 'Username', 'Confirm password']) {
      assert.equal(await page.getByLabel(label).getAttribute('aria-invalid'), 'true', label);
    }
    assert.equal(await page.getByLabel('Password', { exact: true }).getAttribute('aria-invalid'), 'true');
    const summary = page.getByRole('alert').getByRole('link');
    assert.deepEqual(await summary.evaluateAll((links) => links.map((a) => a.getAttribute('href'))), [
      '#email',
      '#username',
      '#password',
      '#confirm_password',
    ]);
    assert.equal(await page.getByLabel('First name').inputValue(), 'Ada', 'what was right is kept');

    // Everything corrected, one more submission creates the account.
    const user = newUser();
    await page.getByLabel('Email address').fill(user.email);
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill(user.password);
    await page.getByLabel('Confirm password').fill(user.password);
    assert.equal(await submit(page, 'Create account'), 303);
    await page.getByText('Your account was created').waitFor();
    assert.deepEqual(violations, []);
    await context.close();
  });

  test('forgot password: the mailed link resets it and the new password works', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const user = newUser();
    await registerVerified(page, user);

    await page.getByRole('link', { name: 'Forgot your password?' }).click();
    await page.getByLabel('Email address').fill(user.email);
    assert.equal(await submit(page, 'Send reset link'), 303);
    await page.getByText('If an account exists for this email address').waitFor();

    const link = await mailedLink(gatehouse.smtp, user.email, 'reset-password');
    await page.goto(link);
    const password = strongPassword();
    await page.getByLabel('New password', { exact: true }).fill(password);
    await page.getByLabel('Confirm new password').fill(`${password}x`);
    assert.equal(await submit(page, 'Set new password'), 422);
    assert.match(await page.locator('#confirm_password-error').innerText(), /do not match/);
    await page.getByLabel('New password', { exact: true }).fill(password);
    await page.getByLabel('Confirm new password').fill(password);
    assert.equal(await submit(page, 'Set new password'), 303);
    await page.getByText('Log in with your new password').waitFor();

    await page.getByLabel('Username or email').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill(user.password);
    assert.equal(await submit(page, 'Log in'), 401, 'the old password no longer works');
    await page.getByLabel('Password', { exact: true }).fill(password);
    assert.equal(await submit(page, 'Log in'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');

    await page.goto(link);
    await page.getByRole('heading', { name: 'This link no longer works' }).waitFor();
    await context.close();
  });

  async function api<T>(path: string, init: { method?: string; token?: string; body?: unknown } = {}): Promise<T> {
    const res = await fetch(url(path), {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: {
        ...(init.body !== undefined && { 'content-type': 'application/json' }),
        ...(init.token && { authorization: `Bearer ${init.token}` }),
      },
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
    });
    assert.ok(res.ok, `${path} answered ${res.status}`);
    return (await res.json()) as T;
  }

  /** A verified admin of the organization they registered with, and an invitation from them to `email`. */
  async function invitationFromAdmin(page: Page, email: string, role: 'user' | 'viewer') {
    const admin = newUser();
    await registerVerified(page, admin);
    const { access_token } = await api<{ access_token: string }>('/api/v1/login/json', {
      body: { username: admin.username, password: admin.password },
    });
    const me = await api<{ organizations: { uuid: string; name: string }[] }>('/api/v1/me', { token: access_token });
    const organization = me.organizations[0];
    assert.ok(organization);
    await api(`/api/v1/organizations/${organization.uuid}/invitations`, { token: access_token, body: { email, role } });
    return { organization, link: await mailedLink(gatehouse.smtp, email, 'accept-invitation') };
  }

  test('an invitation link: log in from it, come back, accept, see the organization; the link then no longer works', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const violations = cspViolations(page);
    const invitee = newUser();
    await registerVerified(page, invitee);
    const { organization, link } = await invitationFromAdmin(page, invitee.email, 'user');
    assert.ok(link.startsWith(`${gatehouse.origin}/accept-invitation?token=`), link);

    await page.goto(link);
    await page.getByRole('heading', { name: `Join ${organization.name}` }).waitFor();
    assert.match(await page.locator('main').innerText(), new RegExp(`as a member.*${invitee.email}`, 's'));
    await page.getByRole('link', { name: 'Log in to accept' }).click();
    await page.getByLabel('Username or email').fill(invitee.username);
    await page.getByLabel('Password', { exact: true }).fill(invitee.password);
    assert.equal(await submit(page, 'Log in'), 303);
    assert.equal(page.url(), link, 'back on the invitation after logging in');

    assert.equal(await submit(page, 'Accept invitation'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');
    await page.getByText('You joined the organization').waitFor();
    // The invitee's own organization from registration (same name) and the one joined.
    const listed = page.locator('section[aria-labelledby="organizations-title"]').getByText(organization.name);
    assert.equal(await listed.count(), 2);

    await page.goto(link);
    await page.getByRole('heading', { name: 'This invitation no longer works' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Accept invitation' }).count(), 0);
    assert.deepEqual(violations, []);
    await context.close();
  });

  test('an invitation for another address is refused on its page and stays usable', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const invited = newUser();
    const { link } = await invitationFromAdmin(page, invited.email, 'viewer');

    const other = newUser();
    await registerVerified(page, other);
    await logIn(page, other.username, other.password);
    await page.goto(link);
    assert.equal(await submit(page, 'Accept invitation'), 403);
    await page.getByText('This invitation was sent to a different email address').waitFor();
    await page.goto(link);
    await page.getByRole('button', { name: 'Accept invitation' }).waitFor();
    await context.close();
  });

  test('a <script> in first_name renders as text and never runs', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const dialogs: string[] = [];
    page.on('dialog', async (dialog) => {
      dialogs.push(dialog.message());
      await dialog.dismiss();
    });
    const hostile = '<script>alert("first_name")</script><img src=x onerror="alert(1)">';
    const user = newUser();
    await registerVerified(page, user, hostile);
    await logIn(page, user.username, user.password);

    assert.equal(await page.getByLabel('First name').inputValue(), hostile);
    assert.match(await page.locator('#signed-in-as').innerText(), /<script>alert\("first_name"\)<\/script>/);
    assert.equal(
      await page.locator('main script:not([src$="/gatehouse-passkeys.js"]), main img').count(),
      0,
      'no element was created from the value (the page script is a file of this site)',
    );
    assert.deepEqual(dialogs, []);
    await context.close();
  });

  test('a form posted without its CSRF token is refused', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const user = newUser();
    await page.goto(url('/register'));
    await page.getByLabel('Email address').fill(user.email);
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill(user.password);
    await page.locator('input[name="csrf_token"]').evaluate((input) => input.remove());
    assert.equal(await submit(page, 'Create account'), 403);
    await page.getByRole('heading', { name: 'This form has expired' }).waitFor();
    const row = await gatehouse.app.gatehouse.db
      .selectFrom('users')
      .select('id')
      .where('username', '=', user.username)
      .executeTakeFirst();
    assert.equal(row, undefined);

    // Back to the form, with a fresh token, it goes through.
    await page.getByRole('link', { name: 'Back to the form' }).click();
    await page.getByLabel('Email address').fill(user.email);
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password', { exact: true }).fill(user.password);
    await page.getByLabel('Confirm password').fill(user.password);
    assert.equal(await submit(page, 'Create account'), 303);
    await context.close();
  });
});
