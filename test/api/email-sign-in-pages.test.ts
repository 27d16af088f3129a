import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { startAppWithMail, type TestMailServer } from '../mail-server.ts';
import { Browser, csrfTokenOf } from '../support/browser.ts';
import { testClock } from '../support/clock.ts';
import { readSignInMail, requestSignIn } from '../support/email-sign-in.ts';
import { enrol } from '../support/mfa.ts';
import { createAccount, login } from './auth-helpers.ts';

/** The sign-in pages, form by form, as a browser without JavaScript posts them. */
describe('pages: /email-sign-in', () => {
  const clock = testClock();
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail(
      {
        EMAIL_SIGN_IN: 'both',
        RATE_LIMIT_EMAIL_SIGN_IN: '100000/1h',
        EMAIL_SIGN_IN_LIMIT_PER_ADDRESS: '100000/1h',
      },
      { clock },
    ));
  });
  after(() => close());

  const linkPath = (link: string | undefined) => {
    assert.ok(link);
    const url = new URL(link);
    return `${url.pathname}${url.search}`;
  };

  test('opening the link spends nothing; its button signs the browser in and lands on /account', async () => {
    const account = await createAccount(app);
    const { link, token } = await requestSignIn(app, smtp, account.email);
    // A mail scanner opens the link, twice.
    const scanned = await app.inject({ url: linkPath(link) });
    assert.equal(scanned.statusCode, 200);
    assert.equal((await app.inject({ url: linkPath(link) })).statusCode, 200);

    const browser = new Browser(app);
    const page = await browser.get(linkPath(link));
    assert.match(page.body, /<button[^>]*type="submit"[^>]*>Sign in<\/button>/);
    assert.doesNotMatch(page.body, /<script/);
    const res = await browser.post('/email-sign-in', { csrf_token: csrfTokenOf(page.body), token: String(token) });
    assert.equal(res.statusCode, 303, res.body.slice(0, 500));
    assert.equal(res.headers.location, '/account');
    const home = await browser.get('/account');
    assert.equal(home.statusCode, 200);
    assert.match(home.body, new RegExp(account.email));

    // Spent: the link now offers a new one.
    const again = await browser.get(linkPath(link));
    assert.match(again.body, /This link no longer works/);
    const replay = await new Browser(app).submit('/email-sign-in', { token: String(token) }, linkPath(link));
    assert.equal(replay.statusCode, 401);
    assert.match(replay.body, /This link no longer works/);
  });

  test('a post without the CSRF token is refused', async () => {
    const account = await createAccount(app);
    const { token } = await requestSignIn(app, smtp, account.email);
    const res = await new Browser(app).post('/email-sign-in', { token: String(token) });
    assert.equal(res.statusCode, 403);
  });

  test('the request form mails a code; typing it signs in, a wrong one is shown on the field', async () => {
    const account = await createAccount(app);
    const browser = new Browser(app);
    const login = await browser.get('/login');
    assert.match(login.body, /href="\/email-sign-in">Sign in by email instead/);
    const sent = await browser.submit('/email-sign-in/request', { email: account.email }, '/email-sign-in');
    assert.equal(sent.statusCode, 200);
    assert.match(sent.body, /Check your email/);
    const mails = await smtp.waitFor(account.email, 2);
    const { code } = readSignInMail(mails.find((m) => m.subject === 'Your sign-in code') ?? (mails[1] as never));
    assert.ok(code);

    const post = (value: string) =>
      browser.post('/email-sign-in', { csrf_token: csrfTokenOf(sent.body), email: account.email, code: value });
    const wrong = await post(code === '000000' ? '111111' : '000000');
    assert.equal(wrong.statusCode, 401);
    assert.match(wrong.body, /aria-invalid="true"/);
    const right = await post(code);
    assert.equal(right.statusCode, 303, right.body.slice(0, 500));
    assert.equal(right.headers.location, '/account');
  });

  test('with a second factor on, the link continues to the code step of the login page', async () => {
    const account = await createAccount(app);
    const { authenticator } = await enrol(app, (await login(app, account)).access_token, clock);
    const { link, token } = await requestSignIn(app, smtp, account.email);
    const browser = new Browser(app);
    const page = await browser.get(linkPath(link));
    const step = await browser.post('/email-sign-in', { csrf_token: csrfTokenOf(page.body), token: String(token) });
    assert.equal(step.statusCode, 200);
    assert.match(step.body, /Two-step verification/);
    const mfaToken = /name="mfa_token" value="([^"]+)"/.exec(step.body)?.[1];
    assert.ok(mfaToken);
    const done = await browser.post('/login/mfa', {
      csrf_token: csrfTokenOf(step.body),
      mfa_token: mfaToken,
      code: authenticator.code(),
    });
    assert.equal(done.statusCode, 303, done.body.slice(0, 500));
    const session = await app.gatehouse.db
      .selectFrom('sessions')
      .select('amr')
      .where('user_id', '=', account.id)
      .where('kind', '=', 'browser')
      .executeTakeFirstOrThrow();
    assert.equal(session.amr, 'email,otp');
  });
});
