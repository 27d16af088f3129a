/**
 * The attack: a `redirect_to` that cannot be written in a Location header.
 * `/login` posted with `redirect_to=/%C4%80` (`/Ā`) logged the user in,
 * created the session row, then answered 500 (ERR_INVALID_CHAR) instead of
 * the redirect. Now `redirect_to` is followed only when it is a path on this
 * site of printable ASCII (what a browser sends, percent-encoded); anything
 * else falls back to the default target, as an off-site target always did.
 * Random Unicode goes through a real page login.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { createAccount, startAuthApp, type TestAccount } from '../api/auth-helpers.ts';
import { openForm } from '../support/page-form.ts';

/** What a Location header can carry (RFC 9110 field values: visible ASCII). */
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

describe('redirect_to encoding', () => {
  let app: FastifyInstance;
  let account: TestAccount;

  before(async () => {
    app = await startAuthApp({ HASH_CONCURRENCY: '2' });
    account = await createAccount(app);
  });
  after(() => app.close());

  const logInWith = async (redirectTo: string) => {
    const form = await openForm(app, '/login');
    return form.post({ username: account.username, password: account.password, redirect_to: redirectTo });
  };

  test('redirect_to=/%C4%80 after a successful page login redirects to the account page, not 500', async () => {
    const res = await logInWith(decodeURIComponent('/%C4%80'));
    assert.equal(res.statusCode, 303, res.body);
    assert.equal(res.headers.location, '/account');
  });

  test('a percent-encoded path is still followed as it was sent', async () => {
    const res = await logInWith('/%C4%80/welcome?next=%E2%9C%93');
    assert.equal(res.statusCode, 303, res.body);
    assert.equal(res.headers.location, '/%C4%80/welcome?next=%E2%9C%93');
  });

  test('off-site targets still fall back to the default', async () => {
    for (const target of [
      '//evil.example',
      '/\\evil.example',
      '/%2fevil.example',
      '/%5Cevil.example',
      'https://evil.example',
      '/\tfoo',
    ]) {
      const res = await logInWith(target);
      assert.equal(res.statusCode, 303, `${JSON.stringify(target)}: ${res.body}`);
      assert.equal(res.headers.location, '/account', JSON.stringify(target));
    }
  });

  test('random Unicode in redirect_to never breaks a login: 303 to a printable ASCII path on this site', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 40 }), async (tail) => {
        const target = `/${tail}`;
        const res = await logInWith(target);
        assert.equal(res.statusCode, 303, `${JSON.stringify(target)}: ${res.body.slice(0, 300)}`);
        const location = String(res.headers.location);
        assert.match(location, PRINTABLE_ASCII);
        assert.ok(location === target || location === '/account', `${JSON.stringify(target)} → ${location}`);
        assert.ok(location.startsWith('/') && !location.startsWith('//'));
      }),
      { numRuns: 60 },
    );
  });

  test('the login page shows a non-ASCII redirect_to nowhere (the form carries no redirect it cannot follow)', async () => {
    const page = await app.inject({ url: `/login?redirect_to=${encodeURIComponent('/Ā')}` });
    assert.equal(page.statusCode, 200);
    assert.ok(!page.body.includes('Ā'));
  });
});
