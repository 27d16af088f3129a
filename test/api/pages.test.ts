import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { ConfigError } from '../../src/config.ts';
import { SYSTEM_CONTEXT } from '../../src/domain/request-context.ts';
import { registerAccount } from '../../src/flows/register.ts';
import { gatehouse } from '../../src/plugin.ts';
import { startSiteverifyServer, TOKENS } from '../fixtures/siteverify-server.ts';
import { newUser, startApp, strongPassword, testConfig, uniqueName } from '../helpers.ts';
import { startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';
import { Browser, csrfTokenOf, setCookies } from '../support/browser.ts';

function assertHtml(res: LightMyRequestResponse, status: number): void {
  assert.equal(res.statusCode, status, res.body.slice(0, 3000));
  assert.match(String(res.headers['content-type']), /^text\/html; charset=utf-8/);
}

/** The element with this id, as text: enough to check what is beside a field. */
function element(html: string, id: string): string {
  const match = new RegExp(`<(\\w+)[^>]*\\bid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(html);
  assert.ok(match, `an element with id="${id}"`);
  return match[2] as string;
}

function input(html: string, name: string): string {
  const match = new RegExp(`<input[^>]*\\bname="${name}"[^>]*>`).exec(html);
  assert.ok(match, `an input named ${name}`);
  return match[0];
}

async function outboxLink(app: FastifyInstance, email: string, path: string): Promise<string> {
  const row = await app.gatehouse.db
    .selectFrom('email_outbox')
    .select('text_body')
    .where('to_address', '=', email)
    .orderBy('id', 'desc')
    .executeTakeFirstOrThrow();
  const link = new RegExp(`https?://\\S+/${path}\\?token=[\\w-]+`).exec(row.text_body)?.[0];
  assert.ok(link, `a ${path} link in the mail to ${email}`);
  return link;
}

const PAGES = [
  '/register',
  '/login',
  '/forgot-password',
  '/reset-password?token=x',
  '/verify-email?token=x',
  '/verify-email',
  '/accept-invitation?token=x',
];

describe('HTML pages', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail());
  });
  after(() => close());

  /** Registers through the page, verifies through the page, and logs in: a browser with a session. */
  async function signedIn(overrides: Record<string, string> = {}) {
    const user = { ...newUser(), ...overrides } as Record<string, string>;
    const browser = new Browser(app, { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Chrome/140.0 Safari/537.36' });
    const registered = await browser.submit('/register', {
      email: user.email as string,
      username: user.username as string,
      password: user.password as string,
      confirm_password: user.password as string,
      first_name: user.first_name ?? '',
    });
    assert.equal(registered.statusCode, 303, registered.body);
    const link = new URL(await outboxLink(app, user.email as string, 'verify-email'));
    const confirmed = await browser.submit(
      '/verify-email',
      { token: link.searchParams.get('token') as string },
      `${link.pathname}${link.search}`,
    );
    assert.equal(confirmed.statusCode, 303, confirmed.body);
    const loggedIn = await browser.submit('/login', {
      username: user.username as string,
      password: user.password as string,
    });
    assert.equal(loggedIn.statusCode, 303, loggedIn.body);
    assert.equal(loggedIn.headers.location, '/account');
    return { browser, user };
  }

  test('every page answers HTML with a strict CSP, frame denial, nosniff and no-store', async () => {
    for (const url of PAGES) {
      const res = await app.inject({ url });
      assertHtml(res, 200);
      const csp = String(res.headers['content-security-policy']);
      assert.match(csp, /default-src 'none'/, url);
      assert.match(csp, /frame-ancestors 'none'/, url);
      assert.match(csp, /form-action 'self'/, url);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, url);
      assert.match(csp, /script-src 'self'(;|$)/, `${url}: only this site's own script files without a CAPTCHA`);
      assert.equal(res.headers['x-frame-options'], 'DENY');
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
      assert.equal(res.headers['referrer-policy'], 'no-referrer');
      assert.equal(res.headers['cache-control'], 'no-store');
      // The one script is a file of this site: the passkey buttons.
      assert.doesNotMatch(
        res.body,
        /<script(?! src="\/gatehouse-passkeys\.js" defer><\/script>)|style="| on[a-z]+="/i,
        `${url} has no inline script or style`,
      );
    }
  });

  test('the stylesheet is served from this site with the theme variables', async () => {
    const page = await app.inject({ url: '/login' });
    const href = /<link rel="stylesheet" href="([^"]+)">/.exec(page.body)?.[1];
    assert.ok(href?.startsWith('/gatehouse.css?v='));
    const css = await app.inject({ url: href });
    assert.equal(css.statusCode, 200);
    assert.match(String(css.headers['content-type']), /^text\/css/);
    for (const name of ['color-primary', 'font-family', 'radius']) assert.match(css.body, new RegExp(`--gh-${name}:`));
  });

  test('every label is tied to its input and hints are linked with aria-describedby', async () => {
    const html = (await app.inject({ url: '/register' })).body;
    for (const name of [
      'first_name',
      'last_name',
      'name',
      'email',
      'username',
      'password',
      'confirm_password',
      'organization_name',
    ]) {
      assert.match(html, new RegExp(`<label class="label" for="${name}">`), name);
      assert.match(input(html, name), new RegExp(`id="${name}"`), name);
    }
    assert.match(input(html, 'password'), /aria-describedby="password-hint"/);
    assert.ok(element(html, 'password-hint').includes('12 characters'));
  });

  describe('CSRF', () => {
    test('a form post without a CSRF token is refused with 403 and an HTML page', async () => {
      const browser = new Browser(app);
      await browser.get('/register');
      const user = newUser();
      const res = await browser.post('/register', {
        email: user.email,
        username: user.username,
        password: user.password,
      });
      assertHtml(res, 403);
      assert.match(res.body, /<h1 class="title">This form has expired<\/h1>/);
      assert.match(res.body, /Error 403 · CSRF_INVALID/);
      assert.match(res.body, /<a class="button button--primary" href="\/register">Back to the form<\/a>/);
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select('id')
        .where('username', '=', user.username)
        .executeTakeFirst();
      assert.equal(row, undefined, 'nothing was registered');
    });

    test('a token without its cookie, a forged token, or a token of another browser is refused', async () => {
      const alice = new Browser(app);
      const mallory = new Browser(app);
      const aliceToken = csrfTokenOf((await alice.get('/login')).body);
      const malloryToken = csrfTokenOf((await mallory.get('/login')).body);
      const fields = { username: 'nobody', password: 'x' };

      const noCookie = await app.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ ...fields, csrf_token: aliceToken }).toString(),
      });
      assertHtml(noCookie, 403);
      assertHtml(await alice.post('/login', { ...fields, csrf_token: `${aliceToken.slice(0, -2)}xx` }), 403);
      assertHtml(await alice.post('/login', { ...fields, csrf_token: malloryToken }), 403);
      assertHtml(await alice.post('/login', { ...fields, csrf_token: '' }), 403);
      // With her own token the same post reaches the login flow (and fails there, as it should).
      assertHtml(await alice.post('/login', { ...fields, csrf_token: aliceToken }), 401);
    });

    test('a cross-site form post is refused even with a valid token', async () => {
      const browser = new Browser(app);
      const token = csrfTokenOf((await browser.get('/login')).body);
      const res = await browser.post(
        '/login',
        { username: 'x', password: 'y', csrf_token: token },
        { 'sec-fetch-site': 'cross-site' },
      );
      assertHtml(res, 403);
    });

    test('the token shown before login is void once signed in', async () => {
      const { browser } = await signedIn();
      const res = await browser.post('/logout', {
        csrf_token: csrfTokenOf((await new Browser(app).get('/login')).body),
      });
      assertHtml(res, 403);
      assertHtml(await browser.get('/account'), 200);
    });
  });

  describe('registration page', () => {
    test('a valid form creates the account and redirects (303) to /login, which says what to do next', async () => {
      const browser = new Browser(app);
      const user = newUser();
      const res = await browser.submit('/register', {
        email: user.email,
        username: user.username,
        password: user.password,
        confirm_password: user.password,
        first_name: 'Ada',
        last_name: 'Lovelace',
        organization_name: '',
      });
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.headers.location, '/login');
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select(['first_name', 'last_name', 'email_verified_at'])
        .where('username', '=', user.username)
        .executeTakeFirstOrThrow();
      assert.deepEqual({ ...row }, { first_name: 'Ada', last_name: 'Lovelace', email_verified_at: null });
      const login = await browser.get('/login');
      assert.match(login.body, /role="status"><p>Your account was created/);
      assert.doesNotMatch((await browser.get('/login')).body, /Your account was created/, 'the notice shows once');
      const mails = await smtp.waitFor(user.email);
      assert.match(mails[0]?.links[0] ?? '', /\/verify-email\?token=/);
    });

    test('errors re-render the form with each message beside its field; values kept, passwords never', async () => {
      const browser = new Browser(app);
      const user = newUser();
      const weak = 'weakpass';
      const res = await browser.submit('/register', {
        email: 'not-an-email',
        username: user.username,
        password: weak,
        confirm_password: weak,
        first_name: 'Grace',
      });
      assertHtml(res, 422);
      assert.match(input(res.body, 'email'), /aria-describedby="email-hint email-error"/);
      assert.match(input(res.body, 'email'), /aria-invalid="true"/);
      assert.match(element(res.body, 'email-error'), /valid email address/);
      assert.match(input(res.body, 'email'), /value="not-an-email"/);
      assert.match(input(res.body, 'username'), new RegExp(`value="${user.username}"`));
      assert.match(input(res.body, 'first_name'), /value="Grace"/);
      assert.doesNotMatch(input(res.body, 'password'), /value=/);
      assert.ok(!res.body.includes(weak), 'the password is not in the page');
      assert.match(res.body, /<div class="alert alert--error" id="error-summary" role="alert">/);
      assert.match(res.body, /<a href="#email">Email must be a valid email address<\/a>/);

      const policy = await browser.submit('/register', {
        email: user.email,
        username: user.username,
        password: weak,
        confirm_password: weak,
      });
      assertHtml(policy, 422);
      const beside = element(policy.body, 'password-error');
      assert.match(beside, /at least 12 characters/);
      assert.match(beside, /uppercase letter/);
      assert.match(beside, /digit/);
      assert.match(input(policy.body, 'password'), /aria-describedby="password-hint password-error"/);
    });

    test('one submission reports every problem at once: fields, the confirmation and each password rule', async () => {
      const res = await new Browser(app).submit('/register', {
        email: 'ada@',
        username: 'ab',
        password: 'password',
        confirm_password: 'passw0rd',
        first_name: 'Ada',
      });
      assertHtml(res, 422);
      assert.match(element(res.body, 'email-error'), /Email must be a valid email address/);
      assert.match(element(res.body, 'username-error'), /Username must be between 3 and 50 characters/);
      assert.match(element(res.body, 'confirm_password-error'), /Passwords do not match/);
      const rules = [...element(res.body, 'password-error').matchAll(/<li>.*?<\/span> (.+)<\/li>/g)].map((m) => m[1]);
      assert.deepEqual(rules, [
        'Password must be at least 12 characters long',
        'Password must contain at least one uppercase letter',
        'Password must contain at least one digit',
        'Password must contain at least one special character',
        'Password must not contain common patterns',
      ]);
      for (const name of ['email', 'username', 'password', 'confirm_password']) {
        assert.match(input(res.body, name), /aria-invalid="true"/, name);
      }
      const summary = [...element(res.body, 'error-summary').matchAll(/<a href="#(\w+)">/g)].map((m) => m[1]);
      assert.deepEqual(summary, ['email', 'username', 'password', 'confirm_password'], 'in the order of the form');
    });

    test('a breached password is reported together with the field errors', async () => {
      const res = await new Browser(app).submit('/register', {
        email: 'not-an-email',
        username: uniqueName(),
        // In the common-password corpus, and meets every rule of the strict policy.
        password: 'S0nyer1c$$0n',
        confirm_password: 'S0nyer1c$$0n',
      });
      assertHtml(res, 422);
      assert.match(element(res.body, 'email-error'), /valid email address/);
      assert.match(element(res.body, 'password-error'), /appeared in a data breach.*different password/);
    });

    test('with RATE_LIMIT_REGISTER=2/1h, one refused form and its corrected resubmission fit the budget', async () => {
      const limited = await startApp({ RATE_LIMIT_REGISTER: '2/1h', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
      try {
        const browser = new Browser(limited);
        const user = newUser();
        const refused = await browser.submit('/register', {
          email: 'ada@',
          username: 'ab',
          password: 'password',
          confirm_password: 'passw0rd',
        });
        assertHtml(refused, 422);
        for (const id of ['email-error', 'username-error', 'password-error', 'confirm_password-error']) {
          element(refused.body, id);
        }
        const created = await browser.submit('/register', { ...user, confirm_password: user.password });
        assert.equal(created.statusCode, 303, created.body);
        const third = await browser.submit('/register', { ...newUser() });
        assertHtml(third, 429);
      } finally {
        await limited.close();
      }
    });

    test('the password hint names every rule in force, common patterns included', async () => {
      const hint = element((await app.inject({ url: '/register' })).body, 'password-hint');
      for (const phrase of [
        'At least 12 characters (at most 128)',
        'an uppercase and a lowercase letter',
        'a digit',
        'a special character (one of !@#$%^&amp;*()_+-=[]{}|;:,.&lt;&gt;?)',
        'No common patterns (&quot;password&quot;, &quot;123456&quot;',
        'not your username or email address',
      ]) {
        assert.ok(hint.includes(phrase), `"${phrase}" in "${hint}"`);
      }
      const nist = await startApp({ PASSWORD_POLICY: 'nist', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
      try {
        const nistHint = element((await nist.inject({ url: '/register' })).body, 'password-hint');
        assert.match(nistHint, /^At least 15 characters \(at most 128\)\. No common patterns/);
        assert.doesNotMatch(nistHint, /uppercase|digit|special/);
      } finally {
        await nist.close();
      }
    });

    test('a mismatched confirmation is reported beside confirm_password', async () => {
      const user = newUser();
      const res = await new Browser(app).submit('/register', {
        email: user.email,
        username: user.username,
        password: user.password,
        confirm_password: strongPassword(),
      });
      assertHtml(res, 422);
      assert.match(element(res.body, 'confirm_password-error'), /Passwords do not match/);
    });

    test('a taken email or username answers 409 beside that field', async () => {
      const { user } = await signedIn();
      const res = await new Browser(app).submit('/register', {
        email: user.email as string,
        username: uniqueName(),
        password: strongPassword(),
      });
      assertHtml(res, 409);
      assert.match(element(res.body, 'email-error'), /Email address is already registered/);
      const taken = await new Browser(app).submit('/register', {
        email: `${uniqueName()}@example.com`,
        username: user.username as string,
        password: strongPassword(),
      });
      assertHtml(taken, 409);
      assert.match(element(taken.body, 'username-error'), /Username is already taken/);
    });

    test('markup in a value is escaped, never interpreted', async () => {
      const browser = new Browser(app);
      const user = newUser();
      const script = '<script>alert("x")</script>';
      const res = await browser.submit('/register', {
        email: user.email,
        username: `"><img src=x onerror=alert(1)>`,
        password: user.password,
        first_name: script,
      });
      assertHtml(res, 422);
      assert.ok(!res.body.includes(script));
      assert.ok(!res.body.includes('<img src=x'));
      assert.match(input(res.body, 'first_name'), /value="&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt;"/);
      assert.match(input(res.body, 'username'), /value="&quot;&gt;&lt;img src=x onerror=alert\(1\)&gt;"/);
    });
  });

  describe('login page and browser session', () => {
    test('logging in sets an httpOnly, SameSite=Lax session cookie (not Secure over http) and /account uses it', async () => {
      const { browser, user } = await signedIn({ first_name: '<script>alert(1)</script>' });
      const session = [...browser.cookies.keys()].find((k) => k === 'gatehouse-session');
      assert.ok(session, 'a session cookie is set');
      const account = await browser.get('/account');
      assertHtml(account, 200);
      assert.ok(account.body.includes(user.email as string));
      assert.ok(account.body.includes('value="&lt;script&gt;alert(1)&lt;/script&gt;"'));
      assert.ok(!account.body.includes('<script>alert(1)'));
      const row = await app.gatehouse.db
        .selectFrom('sessions')
        .innerJoin('users', 'users.id', 'sessions.user_id')
        .select(['sessions.kind', 'sessions.revoked_at'])
        .where('users.username', '=', user.username as string)
        .executeTakeFirstOrThrow();
      assert.deepEqual({ ...row }, { kind: 'browser', revoked_at: null });
    });

    test('the cookie attributes', async () => {
      const browser = new Browser(app);
      const user = newUser();
      await browser.submit('/register', { email: user.email, username: user.username, password: user.password });
      await app.gatehouse.db
        .updateTable('users')
        .set({ email_verified_at: new Date() })
        .where('username', '=', user.username)
        .execute();
      const res = await browser.submit('/login', { username: user.username, password: user.password });
      assert.equal(res.statusCode, 303);
      const cookie = setCookies(res).find((c) => c.startsWith('gatehouse-session='));
      assert.ok(cookie);
      assert.match(cookie, /; HttpOnly/);
      assert.match(cookie, /; SameSite=Lax/);
      assert.match(cookie, /; Path=\//);
      assert.match(cookie, /; Max-Age=\d+/);
      assert.doesNotMatch(cookie, /Secure/);
    });

    test('wrong credentials re-render the form with the same message for an unknown user, username kept', async () => {
      const { user } = await signedIn();
      const wrong = await new Browser(app).submit('/login', {
        username: user.username as string,
        password: strongPassword(),
      });
      const unknown = await new Browser(app).submit('/login', { username: uniqueName(), password: strongPassword() });
      assertHtml(wrong, 401);
      assertHtml(unknown, 401);
      for (const res of [wrong, unknown]) {
        assert.match(element(res.body, 'error-summary'), /Invalid username or password/);
        assert.match(res.body, /<form [^>]*aria-describedby="error-summary"/);
      }
      assert.match(input(wrong.body, 'username'), new RegExp(`value="${user.username}"`));
    });

    test('an empty form gets a message beside each field', async () => {
      const res = await new Browser(app).submit('/login', { username: '', password: '' });
      assertHtml(res, 422);
      assert.match(element(res.body, 'username-error'), /required/);
      assert.match(element(res.body, 'password-error'), /required/);
    });

    test('an unverified account is told so and offered a new link', async () => {
      const browser = new Browser(app);
      const user = newUser();
      await browser.submit('/register', { email: user.email, username: user.username, password: user.password });
      const res = await browser.submit('/login', { username: user.username, password: user.password });
      assertHtml(res, 403);
      assert.match(res.body, /Email address is not verified/);
      assert.match(res.body, /href="\/verify-email">Send a new verification link/);
    });

    test('redirect_to is followed when it is a path on this site, and ignored otherwise', async () => {
      const { user } = await signedIn();
      const credentials = { username: user.username as string, password: user.password as string };
      const local = new Browser(app);
      const page = await local.get('/login?redirect_to=/dashboard%3Ftab%3D1');
      assert.match(page.body, /name="redirect_to" value="\/dashboard\?tab=1"/);
      const res = await local.post('/login', {
        ...credentials,
        csrf_token: csrfTokenOf(page.body),
        redirect_to: '/dashboard?tab=1',
      });
      assert.equal(res.headers.location, '/dashboard?tab=1');
      for (const hostile of ['//evil.example/x', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)']) {
        const browser = new Browser(app);
        const token = csrfTokenOf((await browser.get('/login')).body);
        const answer = await browser.post('/login', { ...credentials, csrf_token: token, redirect_to: hostile });
        assert.equal(answer.headers.location, '/account', hostile);
      }
    });

    test('/account without a session redirects to the login page, and back after it', async () => {
      const res = await app.inject({ url: '/account' });
      assert.equal(res.statusCode, 303);
      assert.equal(res.headers.location, '/login?redirect_to=%2Faccount');
      const forged = await app.inject({
        url: '/account',
        headers: { cookie: 'gatehouse-session=eyJhbGciOiJub25lIn0.e30.' },
      });
      assert.equal(forged.statusCode, 303);
    });

    test('logging out revokes the session on the server: the old cookie no longer works', async () => {
      const { browser, user } = await signedIn();
      const stolen = browser.cookies.get('gatehouse-session') as string;
      const confirm = await browser.get('/logout');
      assertHtml(confirm, 200);
      const res = await browser.post('/logout', { csrf_token: csrfTokenOf(confirm.body) });
      assert.equal(res.statusCode, 303);
      assert.equal(res.headers.location, '/login');
      assert.ok(
        setCookies(res).some((c) => /^gatehouse-session=;.*Max-Age=0/.test(c)),
        'the cookie is cleared',
      );
      const row = await app.gatehouse.db
        .selectFrom('sessions')
        .innerJoin('users', 'users.id', 'sessions.user_id')
        .select(['sessions.revoked_at', 'sessions.revoked_reason'])
        .where('users.username', '=', user.username as string)
        .executeTakeFirstOrThrow();
      assert.ok(row.revoked_at);
      assert.equal(row.revoked_reason, 'logout');
      const replay = await app.inject({ url: '/account', headers: { cookie: `gatehouse-session=${stolen}` } });
      assert.equal(replay.statusCode, 303, 'a copy of the cookie is dead too');
    });

    test('a session cookie spent at the refresh endpoint stops working in the browser', async () => {
      const { browser } = await signedIn();
      const token = browser.cookies.get('gatehouse-session') as string;
      const refreshed = await app.inject({ method: 'POST', url: '/api/v1/refresh', payload: { refresh_token: token } });
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      assert.equal((await browser.get('/account')).statusCode, 303);
    });
  });

  describe('verification, reset and account pages', () => {
    test('/accept-invitation with no, unknown, over-long or odd tokens: "no longer works", never a 5xx', async () => {
      const bad = [
        '',
        '?token=',
        '?token=x',
        `?token=${'a'.repeat(5000)}`,
        '?token=%00%3Cscript%3E',
        '?token=a&token=b',
      ];
      for (const query of bad) {
        const page = await app.inject({ url: `/accept-invitation${query}` });
        assertHtml(page, 200);
        assert.match(page.body, /This invitation no longer works/, query);
        assert.doesNotMatch(page.body, /Accept invitation<\/button>/, query);
        assert.doesNotMatch(page.body, /<script>/, query);
      }
    });

    test('POST /accept-invitation without a session goes to log in and back; with a dead token it says so', async () => {
      const anonymous = new Browser(app);
      const out = await anonymous.submit('/accept-invitation', { token: 'abc' }, '/login');
      assert.equal(out.statusCode, 303);
      assert.equal(out.headers.location, `/login?redirect_to=${encodeURIComponent('/accept-invitation?token=abc')}`);
      const { browser } = await signedIn();
      const dead = await browser.submit('/accept-invitation', { token: 'abc' }, '/account');
      assertHtml(dead, 422);
      assert.match(dead.body, /This invitation no longer works/);
      assert.match(dead.body, /invalid, has already been used, was revoked or has expired/);
    });

    test('GET /verify-email never spends the token; the button does', async () => {
      const browser = new Browser(app);
      const user = newUser();
      await browser.submit('/register', { email: user.email, username: user.username, password: user.password });
      const link = new URL(await outboxLink(app, user.email, 'verify-email'));
      const url = `${link.pathname}${link.search}`;
      for (let i = 0; i < 3; i++) {
        const page = await browser.get(url);
        assertHtml(page, 200);
        assert.match(page.body, /Confirm email address<\/button>/);
      }
      const unverified = await app.gatehouse.db
        .selectFrom('users')
        .select('email_verified_at')
        .where('username', '=', user.username)
        .executeTakeFirstOrThrow();
      assert.equal(unverified.email_verified_at, null);
      const res = await browser.submit('/verify-email', { token: tokenFrom(link.toString()) }, url);
      assert.equal(res.statusCode, 303);
      assert.equal(res.headers.location, '/login');
      const verified = await app.gatehouse.db
        .selectFrom('users')
        .select('email_verified_at')
        .where('username', '=', user.username)
        .executeTakeFirstOrThrow();
      assert.ok(verified.email_verified_at);
      assert.match((await browser.get(url)).body, /This link no longer works/);
    });

    test('forgot password answers alike for any address; the reset page sets a new password', async () => {
      const { user } = await signedIn();
      const browser = new Browser(app);
      for (const email of [user.email as string, `${uniqueName()}@example.com`]) {
        const res = await browser.submit('/forgot-password', { email });
        assert.equal(res.statusCode, 303);
        assert.equal(res.headers.location, '/forgot-password');
        assert.match((await browser.get('/forgot-password')).body, /If an account exists for this email address/);
      }
      const bad = await browser.submit('/forgot-password', { email: 'nope' });
      assertHtml(bad, 422);
      assert.match(element(bad.body, 'email-error'), /valid email/);

      const link = new URL(await outboxLink(app, user.email as string, 'reset-password'));
      const url = `${link.pathname}${link.search}`;
      // The same rules as on registration, so that the new password is right the first time.
      const registrationHint = element((await app.inject({ url: '/register' })).body, 'password-hint');
      assert.match(registrationHint, /No common patterns/);
      assert.equal(element((await browser.get(url)).body, 'new_password-hint'), registrationHint);
      const mismatch = await browser.submit(
        '/reset-password',
        { token: tokenFrom(link.toString()), new_password: strongPassword(), confirm_password: strongPassword() },
        url,
      );
      assertHtml(mismatch, 422);
      assert.match(element(mismatch.body, 'confirm_password-error'), /do not match/);
      const password = strongPassword();
      const res = await browser.submit(
        '/reset-password',
        { token: tokenFrom(link.toString()), new_password: password, confirm_password: password },
        url,
      );
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.headers.location, '/login');
      const login = await new Browser(app).submit('/login', { username: user.username as string, password });
      assert.equal(login.statusCode, 303);
      const spent = await browser.get(url);
      assert.match(spent.body, /This link no longer works/);
    });

    test('the account page edits the profile, lists organizations and sessions, and changes the password', async () => {
      const { browser, user } = await signedIn();
      const other = new Browser(app, { 'user-agent': 'curl/8.5.0' });
      assert.equal(
        (await other.submit('/login', { username: user.username as string, password: user.password as string }))
          .statusCode,
        303,
      );

      const saved = await browser.submit('/account', {
        action: 'profile',
        first_name: 'Katherine',
        last_name: 'Johnson',
        language_code: 'en-US',
      });
      assert.equal(saved.statusCode, 303);
      const page = await browser.get('/account');
      assert.match(input(page.body, 'first_name'), /value="Katherine"/);
      assert.equal(
        element(page.body, 'new_password-hint'),
        element((await app.inject({ url: '/register' })).body, 'password-hint'),
      );
      assert.match(page.body, /Your profile was saved/);
      assert.match(page.body, /Chrome on Linux <span class="badge badge--success">This device<\/span>/);
      assert.match(page.body, /curl/);

      const invalid = await browser.submit('/account', {
        action: 'profile',
        first_name: 'x'.repeat(101),
        last_name: '',
        language_code: 'not a tag!',
      });
      assertHtml(invalid, 422);
      assert.match(element(invalid.body, 'first_name-error'), /at most 100/);
      assert.match(invalid.body, /<a href="#first_name">First name: Must be at most 100 characters<\/a>/);
      assert.match(element(invalid.body, 'language_code-error'), /./);
      assert.match(input(invalid.body, 'language_code'), /value="not a tag!"/);

      const wrong = await browser.submit('/account', {
        action: 'password',
        current_password: strongPassword(),
        new_password: strongPassword(),
        confirm_password: 'x',
      });
      assertHtml(wrong, 422);
      const wrongCurrent = await browser.submit('/account', {
        action: 'password',
        current_password: 'Wrong-Password-1!',
        new_password: 'Another-Passw0rd!',
        confirm_password: 'Another-Passw0rd!',
      });
      assertHtml(wrongCurrent, 401);
      assert.match(element(wrongCurrent.body, 'current_password-error'), /current password is incorrect/);

      const password = strongPassword();
      const changed = await browser.submit('/account', {
        action: 'password',
        current_password: user.password as string,
        new_password: password,
        confirm_password: password,
      });
      assert.equal(changed.statusCode, 303, changed.body);
      assert.match((await browser.get('/account')).body, /Your password was changed/);
      assert.equal((await other.get('/account')).statusCode, 303, 'the other session was signed out');
    });

    test('"sign out" beside a session revokes that session only', async () => {
      const { browser, user } = await signedIn();
      const other = new Browser(app, {
        'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/604.1',
      });
      assert.equal(
        (await other.submit('/login', { username: user.username as string, password: user.password as string }))
          .statusCode,
        303,
      );
      const page = await browser.get('/account');
      const ids = [...page.body.matchAll(/name="session_id" value="([0-9a-f-]{36})"/g)].map((m) => m[1] as string);
      assert.equal(ids.length, 1, 'one other session has a sign-out button; this one has none');
      const res = await browser.post('/account', {
        csrf_token: csrfTokenOf(page.body),
        action: 'sign_out_session',
        session_id: ids[0] as string,
      });
      assert.equal(res.statusCode, 303);
      assert.equal((await other.get('/account')).statusCode, 303);
      assertHtml(await browser.get('/account'), 200);
      const again = await browser.submit('/account', { action: 'sign_out_session', session_id: ids[0] as string });
      assertHtml(again, 404);
    });
  });
});

describe('page options', () => {
  test('read_only: pages answer GET, and every form post is refused with 405', async () => {
    const app = await startApp({ PAGES_READ_ONLY: 'true', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    try {
      for (const url of PAGES) assertHtml(await app.inject({ url }), 200);
      const browser = new Browser(app);
      const page = await browser.get('/register');
      assert.match(page.body, /read-only/);
      assert.match(page.body, /<button [^>]*type="submit" disabled>/);
      const user = newUser();
      const res = await browser.post('/register', { csrf_token: csrfTokenOf(page.body), ...user });
      assertHtml(res, 405);
      assert.equal(res.headers.allow, 'GET, HEAD');
      const count = await app.gatehouse.db
        .selectFrom('users')
        .select('id')
        .where('username', '=', user.username)
        .execute();
      assert.equal(count.length, 0);
      assert.equal(
        (await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() })).statusCode,
        201,
        'the API is not affected',
      );
    } finally {
      await app.close();
    }
  });

  test('template directory, styles, CAPTCHA widget, user defaults, configured redirects and https cookies', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-templates-'));
    writeFileSync(
      join(dir, 'login.eta'),
      `<% layout('layout') %><h1 class="title">Welcome to Acme</h1><p id="escaped"><%= '<b>' %></p><form method="post" action="<%= it.paths.login %>"><input type="hidden" name="csrf_token" value="<%= it.csrfToken %>"></form>`,
    );
    writeFileSync(join(dir, 'styles.css'), 'body { color: rebeccapurple; }\n');
    const app = await startApp({
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      PUBLIC_URL: 'https://id.example.com',
      PAGES_TEMPLATE_DIR: dir,
      PAGES_STYLES: JSON.stringify({ 'color-primary': '#0f766e', radius: '4px', 'font-family': '"Inter", sans-serif' }),
      PAGES_USER_DEFAULTS: JSON.stringify({ language_code: 'de', organization_name: 'Prototype GmbH' }),
      PAGES_REDIRECT_AFTER_LOGIN: 'https://app.example.com/home',
      CAPTCHA_PROVIDER: 'turnstile',
      CAPTCHA_SITE_KEY: '1x00000000000000000000AA',
      CAPTCHA_SECRET_KEY: 'test-secret',
      CAPTCHA_VERIFY_URL: 'http://127.0.0.1:9/siteverify',
    });
    try {
      const login = await app.inject({ url: '/login' });
      assertHtml(login, 200);
      assert.match(login.body, /Welcome to Acme/, 'the override replaced login.eta');
      assert.match(element(login.body, 'escaped'), /^&lt;b&gt;$/, 'overrides are escaped too');
      assert.match(login.body, /<header class="site-header">/, 'the default layout still wraps it');
      assert.match(
        (await app.inject({ url: '/forgot-password' })).body,
        /Reset your password/,
        'other pages keep their default',
      );
      assert.match(String(login.headers['content-security-policy']), /form-action 'self' https:\/\/app\.example\.com/);

      const href = /<link rel="stylesheet" href="([^"]+)">/.exec(login.body)?.[1] as string;
      const css = (await app.inject({ url: href })).body;
      assert.match(css, /^body \{ color: rebeccapurple; \}/, 'styles.css was overridden');
      assert.match(css, /--gh-color-primary: #0f766e;/);
      assert.match(css, /--gh-radius: 4px;/);
      assert.match(css, /--gh-font-family: "Inter", sans-serif;/);

      const register = await app.inject({ url: '/register' });
      assert.match(register.body, /<div class="cf-turnstile" data-sitekey="1x00000000000000000000AA"><\/div>/);
      assert.match(
        register.body,
        /<script src="https:\/\/challenges\.cloudflare\.com\/turnstile\/v0\/api\.js" async defer><\/script>/,
      );
      const csp = String(register.headers['content-security-policy']);
      assert.match(csp, /script-src 'self' https:\/\/challenges\.cloudflare\.com/);
      assert.match(csp, /frame-src https:\/\/challenges\.cloudflare\.com/);
      assert.doesNotMatch(csp, /unsafe-inline/);
      assert.match(input(register.body, 'organization_name'), /value="Prototype GmbH"/);

      // https: the cookies are Secure and __Host- prefixed.
      const csrfCookie = setCookies(register).find((c) => c.startsWith('__Host-gatehouse-csrf='));
      assert.ok(csrfCookie);
      assert.match(csrfCookie, /; Secure/);
      const browser = new Browser(app);
      const user = newUser();
      const noCaptcha = await browser.submit('/register', {
        email: user.email,
        username: user.username,
        password: user.password,
      });
      assertHtml(noCaptcha, 422);
      assert.match(element(noCaptcha.body, 'captcha-error'), /CAPTCHA token is required/);
      assert.match(noCaptcha.body, /<a href="#captcha">A CAPTCHA token is required<\/a>/);

      // The service directly (the CAPTCHA is the route's), then a login through the page.
      const account = newUser();
      await registerAccount(app.gatehouse, account, SYSTEM_CONTEXT);
      await app.gatehouse.db
        .updateTable('users')
        .set({ email_verified_at: new Date() })
        .where('username', '=', account.username)
        .execute();
      const loggedIn = await browser.submit('/login', { username: account.username, password: account.password });
      assert.equal(loggedIn.statusCode, 303, loggedIn.body);
      assert.equal(loggedIn.headers.location, 'https://app.example.com/home');
      const session = setCookies(loggedIn).find((c) => c.startsWith('__Host-gatehouse-session='));
      assert.ok(session, 'over https the session cookie is __Host- prefixed');
      assert.match(session, /; Secure/);
      assert.match(session, /; HttpOnly/);
      assert.match(session, /; SameSite=Lax/);
      assert.match(session, /; Path=\//);
      assert.doesNotMatch(session, /Domain=/i);
    } finally {
      await app.close();
    }
  });

  test('login through the page: CAPTCHA after failures, lockout and rate limit, each as a page', async () => {
    const siteverify = await startSiteverifyServer('turnstile', 'turnstile-secret');
    const app = await startApp({
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      REQUIRE_EMAIL_VERIFICATION: 'false',
      CAPTCHA_PROVIDER: 'turnstile',
      CAPTCHA_SITE_KEY: 'site-key',
      CAPTCHA_SECRET_KEY: 'turnstile-secret',
      CAPTCHA_VERIFY_URL: siteverify.url,
      CAPTCHA_LOGIN_AFTER_FAILURES: '2',
      LOCKOUT_THRESHOLD: '3',
      RATE_LIMIT_LOGIN: '10/1h',
    });
    try {
      const browser = new Browser(app);
      const user = newUser();
      const captcha = { 'cf-turnstile-response': TOKENS.valid };
      const registered = await browser.submit('/register', { ...user, confirm_password: user.password, ...captcha });
      assert.equal(registered.statusCode, 303, registered.body);

      const wrong = { username: user.username, password: strongPassword() };
      assertHtml(await browser.submit('/login', wrong), 401);
      const second = await browser.submit('/login', wrong);
      assertHtml(second, 401);
      assert.match(
        second.body,
        /<div class="cf-turnstile" data-sitekey="site-key">/,
        'the widget is shown after a failure',
      );
      const right = { username: user.username, password: user.password };
      const noCaptcha = await browser.submit('/login', right);
      assertHtml(noCaptcha, 422);
      assert.match(element(noCaptcha.body, 'captcha-error'), /CAPTCHA/);
      const solved = await browser.submit('/login', { ...right, ...captcha });
      assert.equal(solved.statusCode, 303, solved.body);

      let locked: LightMyRequestResponse | undefined;
      for (let i = 0; i < 5 && !locked; i++) {
        const res = await new Browser(app).submit('/login', { ...wrong, ...captcha });
        if (res.statusCode === 423) locked = res;
      }
      assert.ok(locked, 'the lockout answers 423');
      assertHtml(locked, 423);
      assert.match(element(locked.body, 'error-summary'), /Try again in \d+ (minutes|seconds)/);
      assert.match(input(locked.body, 'username'), new RegExp(`value="${user.username}"`));

      let limited: LightMyRequestResponse | undefined;
      for (let i = 0; i < 10 && !limited; i++) {
        const res = await new Browser(app).submit('/login', { ...wrong, ...captcha });
        if (res.statusCode === 429) limited = res;
      }
      assert.ok(limited, 'the rate limit answers 429');
      assertHtml(limited, 429);
      assert.match(limited.body, /<h1 class="title">Too many attempts<\/h1>/);
      assert.ok(Number(limited.headers['retry-after']) > 0);
      assert.equal((await app.inject({ url: '/login' })).statusCode, 200, 'a GET is not limited');
    } finally {
      await app.close();
      await siteverify.close();
    }
  });

  test('user defaults fill in what the form leaves out', async () => {
    const app = await startApp({
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      REQUIRE_EMAIL_VERIFICATION: 'false',
      PAGES_USER_DEFAULTS: JSON.stringify({ language_code: 'pt-BR', organization_name: 'Sandbox' }),
    });
    try {
      const user = newUser();
      const res = await new Browser(app).submit('/register', {
        email: user.email,
        username: user.username,
        password: user.password,
      });
      assert.equal(res.statusCode, 303, res.body);
      const row = await app.gatehouse.db
        .selectFrom('users')
        .leftJoin('memberships', 'memberships.user_id', 'users.id')
        .leftJoin('organizations', 'organizations.id', 'memberships.organization_id')
        .select(['users.language_code', 'organizations.name'])
        .where('users.username', '=', user.username)
        .executeTakeFirstOrThrow();
      assert.deepEqual({ ...row }, { language_code: 'pt-BR', name: 'Sandbox' });
    } finally {
      await app.close();
    }
  });

  test('bad page settings stop start-up with a message naming the variable', () => {
    const cases: [string, string][] = [
      ['PAGES_STYLES', '{"color-primary":"red; } body { display:none"}'],
      ['PAGES_STYLES', '{"colour":"red"}'],
      ['PAGES_STYLES', '{"color-primary":"url(https://evil.example/x)"}'],
      ['PAGES_STYLES', 'not json'],
      ['PAGES_USER_DEFAULTS', '{"is_superuser":"true"}'],
      ['PAGES_REDIRECT_AFTER_LOGIN', '//evil.example'],
      ['PAGES_REDIRECT_AFTER_LOGIN', 'javascript:alert(1)'],
      ['PAGES_READ_ONLY', 'maybe'],
    ];
    for (const [name, value] of cases) {
      assert.throws(
        () => testConfig({ [name]: value }),
        (error: unknown) => error instanceof ConfigError && error.variable === name,
        `${name}=${value}`,
      );
    }
  });

  test('mounted in a host application under a prefix, links and redirects follow the mount', async () => {
    const host = Fastify({ pluginTimeout: 60_000 });
    host.get('/', async () => 'host home');
    await host.register(
      async (scope) => {
        await scope.register(gatehouse, {
          config: testConfig({ REDIS_KEY_PREFIX: `t:${uniqueName()}:`, REQUIRE_EMAIL_VERIFICATION: 'false' }),
          docs: false,
          metrics: false,
          pages: { redirectTo: { register: '/welcome' } },
        });
      },
      { prefix: '/auth' },
    );
    await host.ready();
    try {
      const login = await host.inject({ url: '/auth/login' });
      assertHtml(login, 200);
      assert.match(login.body, /action="\/auth\/login"/);
      assert.match(login.body, /href="\/auth\/gatehouse\.css\?v=/);
      assert.match(login.body, /href="\/auth\/forgot-password"/);
      assert.equal((await host.inject({ url: '/' })).body, 'host home');
      const browser = new Browser(host);
      const user = newUser();
      const registered = await browser.submit('/auth/register', {
        email: user.email,
        username: user.username,
        password: user.password,
      });
      assert.equal(registered.headers.location, '/welcome', 'the plugin option wins');
      const res = await browser.submit('/auth/login', { username: user.username, password: user.password });
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.headers.location, '/auth/account');
      assertHtml(await browser.get('/auth/account'), 200);
      assert.equal(
        (await host.inject({ url: '/auth/account' })).headers.location,
        '/auth/login?redirect_to=%2Fauth%2Faccount',
      );
    } finally {
      await host.close();
    }
  });

  test('pages can be turned off', async () => {
    const app = await startApp({ PAGES: 'false', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    try {
      assert.equal((await app.inject({ url: '/login' })).statusCode, 404);
    } finally {
      await app.close();
    }
  });
});
