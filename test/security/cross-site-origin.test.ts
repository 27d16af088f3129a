/**
 * The attack: a page form posted from another site. A cross-site `Origin`
 * on a page POST was not refused when the CSRF token matched (a token leaked
 * through a shared cache, a log, a subdomain). Now every page POST whose
 * `Origin` is neither PUBLIC_URL's origin nor the host the request was sent
 * to is refused with 403 CSRF_INVALID, as an HTML error page, before the
 * CSRF token is looked at and before any flow runs. No `Origin` (older
 * browsers) or `Origin: null` are left to the CSRF token, as before.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createAccount, startAuthApp, type TestAccount } from '../api/auth-helpers.ts';
import { openForm } from '../support/page-form.ts';

/** testConfig's PUBLIC_URL. */
const PUBLIC_ORIGIN = 'http://gatehouse.test';

describe('cross-site Origin on a page POST', () => {
  let app: FastifyInstance;
  let account: TestAccount;

  before(async () => {
    app = await startAuthApp();
    account = await createAccount(app);
  });
  after(() => app.close());

  const sessions = async () =>
    (await app.gatehouse.db.selectFrom('sessions').select('id').where('user_id', '=', account.id).execute()).length;

  const logIn = async (headers: Record<string, string>): Promise<LightMyRequestResponse> => {
    const form = await openForm(app, '/login');
    return form.post({ username: account.username, password: account.password }, headers);
  };

  const assertRefusedPage = (res: LightMyRequestResponse) => {
    assert.equal(res.statusCode, 403, res.body.slice(0, 500));
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.match(res.body, /CSRF_INVALID/);
    assert.equal(res.headers['set-cookie']?.toString().includes('gatehouse-session=') ?? false, false);
  };

  test('a login posted from another site with a valid CSRF token is 403 CSRF_INVALID and starts no session', async () => {
    const before = await sessions();
    for (const origin of ['https://evil.example', 'http://gatehouse.test.evil.example', 'http://gatehouse.test:8443']) {
      assertRefusedPage(await logIn({ origin }));
    }
    assert.equal(await sessions(), before);
  });

  test('every page form is covered, not only the login', async () => {
    const form = await openForm(app, '/register');
    assertRefusedPage(await form.post({ email: 'x@example.com' }, { origin: 'https://evil.example' }));
    const forgot = await openForm(app, '/forgot-password');
    assertRefusedPage(await forgot.post({ email: account.email }, { origin: 'https://evil.example' }));
  });

  test("PUBLIC_URL's origin is this site", async () => {
    const res = await logIn({ origin: PUBLIC_ORIGIN });
    assert.equal(res.statusCode, 303, res.body.slice(0, 500));
  });

  test('the host the request was sent to is this site (a deployment reached by another name)', async () => {
    const res = await logIn({ origin: 'http://auth.internal:8000', host: 'auth.internal:8000' });
    assert.equal(res.statusCode, 303, res.body.slice(0, 500));
  });

  test('no Origin, or Origin: null, is left to the CSRF token as before', async () => {
    assert.equal((await logIn({})).statusCode, 303);
    assert.equal((await logIn({ origin: 'null' })).statusCode, 303);
    const form = await openForm(app, '/login');
    const forged = await app.inject({
      method: 'POST',
      url: '/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: form.cookie, origin: 'null' },
      payload: new URLSearchParams({ csrf_token: 'wrong', username: account.username, password: 'x' }).toString(),
    });
    assert.equal(forged.statusCode, 403);
    assert.match(forged.body, /CSRF_INVALID/);
  });
});
