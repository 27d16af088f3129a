import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Browser, pageLogIn } from '../support/browser.ts';
import { testClock } from '../support/clock.ts';
import { Authenticator } from '../support/mfa.ts';
import { createAccount, startAuthApp } from './auth-helpers.ts';

/** The second factor's pages, form by form, as a browser without JavaScript posts them. */
describe('pages: /account/mfa and the login code step', () => {
  const clock = testClock();
  let app: FastifyInstance;

  before(async () => {
    app = await startAuthApp({}, { clock });
  });
  after(() => app.close());

  const secretOf = (html: string) => {
    const match = /<code class="secret" id="totp-secret">([A-Z2-7 ]+)<\/code>/.exec(html);
    assert.ok(match, html.slice(0, 2000));
    return (match[1] as string).replaceAll(' ', '');
  };

  test('enrol, manage, step up after the window, and turn it off', async () => {
    const account = await createAccount(app);
    const browser = new Browser(app);
    await pageLogIn(browser, account.username, account.password);

    const account1 = await browser.get('/account');
    assert.match(account1.body, /Turn on two-step verification/);
    const setup = await browser.get('/account/mfa');
    assert.equal(setup.statusCode, 200);
    assert.match(setup.body, /<figure class="qr"[^>]*><svg/);
    const authenticator = new Authenticator(secretOf(setup.body), clock);
    // A reload shows the same secret: the QR code already scanned stays good.
    assert.equal(secretOf((await browser.get('/account/mfa')).body), authenticator.totp.secret.base32);

    const wrong = await browser.submit('/account/mfa', { action: 'confirm', code: '12345' });
    assert.equal(wrong.statusCode, 422);
    assert.match(wrong.body, /There is a problem/);
    const codes = await browser.submit('/account/mfa', { action: 'confirm', code: authenticator.code() });
    assert.equal(codes.statusCode, 200, codes.body.slice(0, 500));
    const shown = [...codes.body.matchAll(/<li><code>([0-9a-z]{4}-[0-9a-z]{4})<\/code><\/li>/g)].map((m) => m[1]);
    assert.equal(shown.length, 10);
    assert.match(codes.body, /href="data:text\/plain;charset=utf-8,[^"]+" download="backup-codes.txt"/);
    authenticator.nextStep();

    const on = await browser.get('/account');
    assert.match(on.body, /10 unused backup codes left/);
    const managed = await browser.get('/account/mfa');
    assert.match(managed.body, /Make new backup codes/);

    const badCode = await browser.submit('/account/mfa', { action: 'backup_codes', code: '000000' });
    assert.equal(badCode.statusCode, 401);
    assert.match(badCode.body, /id="new-codes-errors"/);
    assert.match(badCode.body, /<a href="#code">/);
    const fresh = await browser.submit('/account/mfa', { action: 'backup_codes', code: authenticator.code() });
    assert.equal(fresh.statusCode, 200);
    assert.match(fresh.body, /Your new backup codes/);
    authenticator.nextStep();

    // Outside the window the page asks for the password and a code first.
    clock.advance(301_000);
    const stepUp = await browser.get('/account/mfa');
    assert.match(stepUp.body, /Confirm it is you/);
    assert.match(stepUp.body, /name="code"/);
    const confirmed = await browser.submit('/account/mfa', {
      action: 'reauthenticate',
      password: account.password,
      code: authenticator.code(),
    });
    assert.equal(confirmed.statusCode, 303);
    authenticator.nextStep();

    const off = await browser.submit('/account/mfa', {
      action: 'disable',
      password: account.password,
      code: authenticator.code(),
    });
    assert.equal(off.statusCode, 303, off.body.slice(0, 500));
    assert.equal(off.headers.location, '/account');
    assert.match((await browser.get('/account')).body, /Two-step verification is off/);
  });

  test('the login page: the code step, a wrong code kept on the step, a backup code', async () => {
    const account = await createAccount(app);
    const browser = new Browser(app);
    await pageLogIn(browser, account.username, account.password);
    const setup = await browser.get('/account/mfa');
    const authenticator = new Authenticator(secretOf(setup.body), clock);
    const codes = await browser.submit('/account/mfa', { action: 'confirm', code: authenticator.code() });
    const backup = /<li><code>([0-9a-z]{4}-[0-9a-z]{4})<\/code><\/li>/.exec(codes.body)?.[1] as string;
    authenticator.nextStep();

    const visitor = new Browser(app);
    const step = await visitor.submit('/login', { username: account.username, password: account.password });
    assert.equal(step.statusCode, 200);
    assert.match(step.body, /autocomplete="one-time-code"/);
    assert.match(step.body, /inputmode="numeric"/);
    const token = /name="mfa_token" value="([^"]+)"/.exec(step.body)?.[1] as string;
    const wrong = await visitor.submit('/login/mfa', { mfa_token: token, code: '000000' }, '/login');
    assert.equal(wrong.statusCode, 401);
    assert.match(wrong.body, /name="mfa_token" value="/);
    const ok = await visitor.submit('/login/mfa', { mfa_token: token, backup_code: backup }, '/login');
    assert.equal(ok.statusCode, 303, ok.body.slice(0, 500));
    assert.equal(ok.headers.location, '/account');
    assert.match((await visitor.get('/account')).body, /9 unused backup codes left/);
    // The spent token sends the visitor back to the password.
    const spent = await visitor.submit('/login/mfa', { mfa_token: token, code: authenticator.code() }, '/login');
    assert.equal(spent.statusCode, 401);
    assert.match(spent.body, /Log in again/);
  });
});
