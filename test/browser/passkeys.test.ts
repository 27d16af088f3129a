import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import type { Browser, Page } from 'playwright-core';
import { json, newUser } from '../helpers.ts';
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
} from './support.ts';

/**
 * Passkeys with a real browser and Chromium's virtual authenticator (CTAP2,
 * resident keys, user verification): add one on the account page, sign in
 * with it from the login page without typing a name, use it as the second
 * step of a password login, remove it. The pages keep their CSP: the passkey
 * button is the one same-origin script.
 */
describe('passkeys in Chromium', { skip: skipWithoutChromium() }, () => {
  const started = new Started();
  let gatehouse: LiveGatehouse;
  let browser: Browser;

  before(async () => {
    gatehouse = await started.start(
      () => startLiveGatehouse({ REQUIRE_EMAIL_VERIFICATION: 'false' }, { host: 'localhost' }),
      (gatehouse) => gatehouse.close(),
    );
    browser = await started.start(launchChromium, (browser) => browser.close());
    mkdirSync(SCREENSHOTS, { recursive: true });
  });
  after(() => started.closeAll());

  const url = (path: string) => `${gatehouse.origin}${path}`;

  async function virtualAuthenticator(page: Page): Promise<void> {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
      },
    });
  }

  /** Clicks and waits for the page the click leads to (a form post, possibly from the passkey script). */
  async function clickAndLoad(page: Page, button: string): Promise<number> {
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.request().resourceType() === 'document'),
      page.getByRole('button', { name: button, exact: true }).first().click(),
    ]);
    await page.waitForLoadState();
    return response.status();
  }

  async function logInWithPassword(page: Page, username: string, password: string): Promise<number> {
    await page.goto(url('/login'));
    await page.getByLabel('Username or email').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    return clickAndLoad(page, 'Log in');
  }

  async function signOut(page: Page) {
    await page.goto(url('/account'));
    assert.equal(await clickAndLoad(page, 'Sign out'), 303);
  }

  /** Turns TOTP on through the API; the authenticator app is `otpauth`. */
  async function turnOnTotp(username: string, password: string): Promise<void> {
    const { app } = gatehouse;
    const login = await app.inject({ method: 'POST', url: '/api/v1/login', payload: { username, password } });
    assert.equal(login.statusCode, 200, login.body);
    const authorization = `Bearer ${json(login).access_token}`;
    const setup = await app.inject({ method: 'POST', url: '/api/v1/mfa/totp/setup', headers: { authorization } });
    assert.equal(setup.statusCode, 200, setup.body);
    const totp = new TOTP({ secret: Secret.fromBase32(String(json(setup).secret)), digits: 6, period: 30 });
    const confirm = await app.inject({
      method: 'POST',
      url: '/api/v1/mfa/totp/confirm',
      headers: { authorization },
      payload: { code: totp.generate() },
    });
    assert.equal(confirm.statusCode, 200, confirm.body);
  }

  test('add a passkey, sign in with it without a username, use it as a second step, remove it', async () => {
    const user = newUser();
    const created = await gatehouse.app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(created.statusCode, 201, created.body);
    const demo: [RegExp, string][] = [
      [new RegExp(user.email.replaceAll('.', '\\.')), 'ada@example.com'],
      [new RegExp(user.username), 'ada'],
      [/\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC/, '24 Nov 2025, 09:30 UTC'],
      [/127\.0\.0\.1|::1|::ffff:127\.0\.0\.1/, '203.0.113.7'],
    ];
    const strict = await (await newContext(browser)).newPage();
    const violations = cspViolations(strict);
    await virtualAuthenticator(strict);

    // Add a passkey on the account page.
    assert.equal(await logInWithPassword(strict, user.username, user.password), 303);
    assert.equal(new URL(strict.url()).pathname, '/account');
    await strict.getByText('No passkey yet.').waitFor();
    await strict.getByLabel('Name of the new passkey').fill('This laptop');
    assert.equal(await clickAndLoad(strict, 'Add a passkey'), 303);
    await strict.waitForURL(url('/account'));
    await strict.getByText('Your passkey was added.').waitFor();
    await strict.getByText('This laptop', { exact: true }).waitFor();
    const mailed = await gatehouse.app.gatehouse.db
      .selectFrom('email_outbox')
      .select('template')
      .where('to_address', '=', user.email.toLowerCase())
      .where('template', '=', 'passkey_added')
      .execute();
    assert.equal(mailed.length, 1);
    await signOut(strict);

    // Sign in with it from the login page, no username typed: the discoverable credential.
    await strict.goto(url('/login'));
    assert.equal(await clickAndLoad(strict, 'Sign in with a passkey'), 303);
    await strict.waitForURL(url('/account'));
    await strict.getByText('This laptop', { exact: true }).waitFor();
    const session = await gatehouse.app.gatehouse.db
      .selectFrom('sessions')
      .select(['kind', 'amr'])
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    assert.deepEqual(session, { kind: 'browser', amr: 'webauthn' });
    await signOut(strict);

    // The account page with a passkey, checked by axe (in a context that lets it in) and photographed.
    const audited = await (await newContext(browser, { bypassCSP: true })).newPage();
    assert.equal(await logInWithPassword(audited, user.username, user.password), 303);
    await audited.getByText('This laptop', { exact: true }).waitFor();
    await checkAndPhotograph(audited, 'account-passkeys', demo, { inputs: false });
    await audited.goto(url('/login'));
    await audited.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
    await checkAndPhotograph(audited, 'login-passkey', demo, { inputs: false });

    // With TOTP on, the passkey is also the second step of a password login.
    await turnOnTotp(user.username, user.password);
    assert.equal(await logInWithPassword(strict, user.username, user.password), 200);
    await strict.getByRole('heading', { name: 'Two-step verification' }).waitFor();
    assert.equal(await clickAndLoad(strict, 'Use a passkey'), 303);
    await strict.waitForURL(url('/account'));

    await signOut(audited);
    assert.equal(await logInWithPassword(audited, user.username, user.password), 200);
    await audited.getByRole('button', { name: 'Use a passkey' }).waitFor();
    await checkAndPhotograph(audited, 'login-mfa-passkey', demo, { inputs: false });

    // Remove it: a plain form, no script needed.
    await strict.goto(url('/account'));
    assert.equal(await clickAndLoad(strict, 'Remove'), 303);
    await strict.getByText('That passkey was removed.').waitFor();
    await strict.getByText('No passkey yet.').waitFor();

    assert.deepEqual(violations, []);
  });
});
