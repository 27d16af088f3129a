/**
 * The attack: an open redirect through the login and registration pages. A
 * link such as `https://gatehouse.example/login?redirect_to=//evil.test`
 * shows the real login page, and after the visitor signs in sends them to a
 * look-alike site that asks for the password again. Gatehouse follows
 * `redirect_to` only when it is a path on this site (`safeRedirect`,
 * src/http/pages/forms.ts): it must start with one `/`, contain no
 * backslash, whitespace or control character, and not start with an encoded
 * slash; anything else is dropped and the configured default is used. The
 * page does not echo a refused value into its form either.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createAccount, startAuthApp, type TestAccount } from '../api/auth-helpers.ts';
import { newUser } from '../helpers.ts';
import { Browser } from '../support/browser.ts';

const SITE = 'http://gatehouse.test';

/**
 * Values that leave the site in some browser or URL parser. Latin-1 only: how
 * other Unicode in `redirect_to` is treated is decided elsewhere.
 */
const HOSTILE = [
  'https://evil.test',
  'http://evil.test/login',
  'HTTPS://EVIL.TEST',
  '//evil.test',
  '///evil.test',
  '////evil.test/path',
  '/\\evil.test',
  '\\\\evil.test',
  '\\/evil.test',
  '/\\/evil.test',
  '/%2F%2Fevil.test',
  '/%2f%2fevil.test',
  '/%2F/evil.test',
  'javascript:alert(document.cookie)',
  'JavaScript:alert(1)',
  ' javascript:alert(1)',
  'data:text/html,<script>alert(1)</script>',
  'https:evil.test',
  'https:/evil.test',
  'http:\\\\evil.test',
  '//evil.test@gatehouse.test',
  'https://gatehouse.test@evil.test',
  'evil.test',
  '.evil.test',
  '/\t/evil.test',
  '/\n/evil.test',
  '/\r\n/evil.test',
  '\t//evil.test',
  '\n//evil.test',
  ' //evil.test',
  '/ /evil.test',
  '/\x00/evil.test',
  '/\x0b/evil.test',
  '/\x7f/evil.test',
  `/${'a'.repeat(3000)}`,
];

/** Where a browser goes with this Location: tabs and newlines stripped, resolved against the page. */
function followed(location: string, from = `${SITE}/login`): URL {
  return new URL(location.replace(/[\t\n\r]/g, ''), from);
}

describe('open redirect through redirect_to', () => {
  let app: FastifyInstance;
  let account: TestAccount;

  before(async () => {
    app = await startAuthApp();
    account = await createAccount(app);
  });
  after(() => app.close());

  async function logInWith(redirectTo: string) {
    const browser = new Browser(app);
    const page = await browser.get(`/login?redirect_to=${encodeURIComponent(redirectTo)}`);
    assert.equal(page.statusCode, 200);
    const echoed = /name="redirect_to" value="([^"]*)"/.exec(page.body)?.[1];
    const csrf = /name="csrf_token" value="([^"]+)"/.exec(page.body)?.[1] as string;
    const res = await browser.post('/login', {
      csrf_token: csrf,
      username: account.username,
      password: account.password,
      redirect_to: redirectTo,
    });
    return { echoed, res };
  }

  test('baseline: a path on this site is followed after login, query string kept', async () => {
    const { echoed, res } = await logInWith('/dashboard?tab=1');
    assert.equal(echoed, '/dashboard?tab=1');
    assert.equal(res.statusCode, 303);
    assert.equal(res.headers.location, '/dashboard?tab=1');
  });

  for (const hostile of HOSTILE) {
    test(`login with redirect_to=${JSON.stringify(hostile.length > 60 ? `${hostile.slice(0, 20)}…` : hostile)}: Location stays on the site (/account)`, async () => {
      const { echoed, res } = await logInWith(hostile);
      assert.equal(res.statusCode, 303, res.body);
      const location = String(res.headers.location);
      assert.equal(location, '/account');
      assert.equal(followed(location).origin, SITE);
      assert.equal(echoed, undefined, 'a refused value is not put back into the form');
    });
  }

  test('an encoded slash or backslash right after the first slash falls back to /account: some browsers read it as a host', async () => {
    for (const encoded of ['/%5Cevil.test', '/%5cevil.test', '/%2Fevil.test', '/%2f%2fevil.test']) {
      const { res } = await logInWith(encoded);
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.headers.location, '/account', encoded);
    }
  });

  test('dots and encoded controls inside a path are kept: they resolve to a path on this site', async () => {
    for (const odd of ['/.//evil.test', '/%2e%2e//evil.test', '/%09/evil.test', '/%0a/evil.test', '/a/%5Cevil.test']) {
      const { res } = await logInWith(odd);
      const location = String(res.headers.location);
      assert.equal(location, odd);
      assert.equal(followed(location).origin, SITE, odd);
    }
  });

  test('registration with a hostile redirect_to goes to the login page', async () => {
    for (const hostile of ['//evil.test', 'https://evil.test', '/\\evil.test', '/%2F%2Fevil.test', '/\t/evil.test']) {
      const browser = new Browser(app);
      const page = await browser.get(`/register?redirect_to=${encodeURIComponent(hostile)}`);
      assert.doesNotMatch(page.body, /name="redirect_to"/);
      const user = newUser();
      const res = await browser.post('/register', {
        csrf_token: /name="csrf_token" value="([^"]+)"/.exec(page.body)?.[1] as string,
        ...user,
        confirm_password: user.password,
        redirect_to: hostile,
      });
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.headers.location, '/login', hostile);
    }
  });

  test('a failed login keeps only a safe redirect_to in the form it shows again', async () => {
    const browser = new Browser(app);
    const page = await browser.get('/login');
    const csrf = /name="csrf_token" value="([^"]+)"/.exec(page.body)?.[1] as string;
    const res = await browser.post('/login', {
      csrf_token: csrf,
      username: account.username,
      password: 'wrong-password',
      redirect_to: '//evil.test',
    });
    assert.equal(res.statusCode, 401);
    assert.doesNotMatch(res.body, /evil\.test/);
  });
});
