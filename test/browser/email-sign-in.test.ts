import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { newUser } from '../helpers.ts';
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
 * E-mail sign-in with only a browser and a mailbox: from the login page ask
 * for a mail, follow its link, press the button, land signed in; then type
 * the code of a second mail. No JavaScript on the pages.
 */
describe('e-mail sign-in in Chromium', { skip: skipWithoutChromium() }, () => {
  const started = new Started();
  let gatehouse: LiveGatehouse;
  let browser: Browser;

  before(async () => {
    gatehouse = await started.start(
      () => startLiveGatehouse({ REQUIRE_EMAIL_VERIFICATION: 'false', EMAIL_SIGN_IN: 'both' }),
      (gatehouse) => gatehouse.close(),
    );
    browser = await started.start(launchChromium, (browser) => browser.close());
  });
  after(() => started.closeAll());

  const url = (path: string) => `${gatehouse.origin}${path}`;

  async function signOut(page: Page) {
    await page.goto(url('/account'));
    assert.equal(await submit(page, 'Sign out'), 303);
  }

  test('link, then code: each signs the browser in; axe-clean, no CSP violation', async () => {
    const user = newUser();
    const created = await gatehouse.app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(created.statusCode, 201, created.body);
    const audited = await (await newContext(browser, { bypassCSP: true })).newPage();
    const page = await (await newContext(browser)).newPage();
    const violations = cspViolations(page);

    await page.goto(url('/login'));
    await page.getByRole('link', { name: 'Sign in by email instead' }).click();
    await page.waitForLoadState();
    await page.getByLabel('Email address').fill(user.email);
    assert.equal(await submit(page, 'Email me a sign-in link'), 200);
    await page.getByRole('heading', { name: 'Check your email' }).waitFor();

    const link = await mailedLink(gatehouse.smtp, user.email, 'email-sign-in');
    // Opening pages spends nothing: the audited context checks the link's page and the request form.
    for (const target of [link, url('/email-sign-in')]) {
      await audited.goto(target);
      assert.deepEqual(await seriousViolations(audited), [], target);
    }
    await page.goto(link);
    assert.equal(await submit(page, 'Sign in'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');
    await page.getByText(user.email).first().waitFor();
    await signOut(page);

    // The link is spent: opening it again offers a new one.
    await page.goto(link);
    await page.getByRole('heading', { name: 'This link no longer works' }).waitFor();

    // Now the code of a new mail, typed on the page that asked for it.
    const before = gatehouse.smtp.to(user.email).length;
    await page.getByLabel('Email address').fill(user.email);
    assert.equal(await submit(page, 'Email me a sign-in link'), 200);
    const mails = await gatehouse.smtp.waitFor(user.email, before + 1);
    const code = /^(\d{6})$/m.exec(mails[mails.length - 1]?.text ?? '')?.[1];
    assert.ok(code);
    await page.getByLabel('Sign-in code').fill(code === '000000' ? '111111' : '000000');
    assert.equal(await submit(page, 'Sign in'), 401);
    await page.getByText('There is a problem').waitFor();
    await page.getByLabel('Sign-in code').fill(code);
    assert.equal(await submit(page, 'Sign in'), 303);
    assert.equal(new URL(page.url()).pathname, '/account');
    assert.deepEqual(violations, []);
  });
});
