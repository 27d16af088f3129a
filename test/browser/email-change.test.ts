import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { newUser, uniqueName } from '../helpers.ts';
import {
  cspViolations,
  type LiveGatehouse,
  launchChromium,
  mailedLink,
  newContext,
  Started,
  seriousViolations,
  skipWithoutChromium,
  startLiveGatehouse,
  submit,
} from './support.ts';

/**
 * A change of e-mail address with only a browser and two mailboxes: ask for
 * it on the account page, follow the link mailed to the new address and
 * press its button; then follow the undo link mailed to the old address,
 * which gets it back and signs the browser out.
 */
describe('change of e-mail address in Chromium', { skip: skipWithoutChromium() }, () => {
  const started = new Started();
  let gatehouse: LiveGatehouse;
  let browser: Browser;

  before(async () => {
    gatehouse = await started.start(
      () => startLiveGatehouse({ REQUIRE_EMAIL_VERIFICATION: 'false' }),
      (gatehouse) => gatehouse.close(),
    );
    browser = await started.start(launchChromium, (browser) => browser.close());
  });
  after(() => started.closeAll());

  const url = (path: string) => `${gatehouse.origin}${path}`;

  async function logIn(page: Page, username: string, password: string) {
    await page.goto(url('/login'));
    await page.getByLabel('Username or email').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    assert.equal(await submit(page, 'Log in'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');
  }

  test('change on /account, confirm from the mailed link, undo from the old address; axe-clean, no CSP violation', async () => {
    const user = newUser();
    const created = await gatehouse.app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(created.statusCode, 201, created.body);
    const newEmail = `${uniqueName('moved')}@example.org`;
    const audited = await (await newContext(browser, { bypassCSP: true })).newPage();
    const page = await (await newContext(browser)).newPage();
    const violations = cspViolations(page);

    await logIn(page, user.username, user.password);
    const form = page.getByRole('region', { name: 'Change e-mail' });

    // A wrong password is shown beside its field, and nothing is mailed.
    await form.getByLabel('New e-mail address').fill(newEmail);
    await form.getByLabel('Your password').fill('Not-The-Passw0rd!');
    assert.equal(await submit(page, 'Change e-mail'), 401);
    assert.equal(await form.getByLabel('Your password').getAttribute('aria-describedby'), 'password-error');
    assert.equal(await form.getByLabel('New e-mail address').inputValue(), newEmail);

    await form.getByLabel('Your password').fill(user.password);
    assert.equal(await submit(page, 'Change e-mail'), 303);
    await page.getByText('A confirmation link was sent to the new address').waitFor();
    await page.getByText(user.email).first().waitFor();

    const confirmLink = await mailedLink(gatehouse.smtp, newEmail, 'account/email/confirm');
    // Opening the link spends nothing: the audited context checks its page first.
    await audited.goto(confirmLink);
    assert.deepEqual(await seriousViolations(audited), [], confirmLink);
    await page.goto(confirmLink);
    assert.equal(await submit(page, 'Confirm new address'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');
    await page.getByText('Your new email address is confirmed').waitFor();
    assert.match(await page.locator('#signed-in-as').innerText(), new RegExp(newEmail.replace(/\./g, '\\.')));

    // The link is spent.
    await page.goto(confirmLink);
    await page.getByRole('heading', { name: 'This link no longer works' }).waitFor();

    // The old address was told, with a way back.
    const revertLink = await mailedLink(gatehouse.smtp, user.email, 'account/email/revert');
    await audited.goto(revertLink);
    assert.deepEqual(await seriousViolations(audited), [], revertLink);
    await page.goto(revertLink);
    assert.equal(await submit(page, 'Undo the change'), 303);
    assert.equal(new URL(page.url()).pathname, '/login');
    await page.getByText('Your previous email address is back and every session was signed out').waitFor();

    // Signed out everywhere: the account page asks for a login, and the old address is the account's again.
    await page.goto(url('/account'));
    assert.equal(new URL(page.url()).pathname, '/login');
    await logIn(page, user.email, user.password);
    assert.match(await page.locator('#signed-in-as').innerText(), new RegExp(user.email.replace(/\./g, '\\.')));
    assert.deepEqual(violations, []);
  });
});
