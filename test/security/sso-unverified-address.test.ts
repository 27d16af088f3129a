import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { strongPassword, uniqueName } from '../helpers.ts';
import { startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { freePort } from '../support/ports.ts';
import { UpstreamIdp } from '../support/upstream-idp.ts';

/**
 * Pre-account takeover through an unverified address: someone signs in at a
 * provider that asserts the victim's address without verifying it, and gets
 * a new Gatehouse account for that address. When the address's owner later
 * takes the account over with "forgot password", the identity that never
 * proved the address must not stay as a way in.
 */
describe('an account made from an unverified address, then reset by the address owner', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;
  let idp: UpstreamIdp;
  let base: string;

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const secret = randomBytes(24).toString('base64url');
    idp = await UpstreamIdp.start({
      clients: [{ client_id: 'gatehouse', client_secret: secret, redirect_uris: [`${base}/api/v1/sso/acme/callback`] }],
    });
    ({ app, smtp, close } = await startAppWithMail({
      PUBLIC_URL: base,
      REQUIRE_EMAIL_VERIFICATION: 'false',
      SSO_PROVIDERS: 'acme',
      SSO_ACME_CLIENT_ID: 'gatehouse',
      SSO_ACME_CLIENT_SECRET: secret,
      SSO_ACME_ISSUER: idp.issuer,
    }));
    await app.listen({ host: '127.0.0.1', port });
  });
  after(async () => {
    await close?.();
    await idp?.close();
  });

  async function signInAtProvider(login: string): Promise<{ status: number; location: string | null; body: string }> {
    const browser = new HttpBrowser();
    const start = await browser.get(`${base}/api/v1/sso/acme/start`);
    const page = await browser.open(String(start.headers.get('location')));
    const back = await idp.signIn(browser, page, login, `${base}/api/v1/sso/acme/callback`);
    const callback = await browser.get(back.url);
    return { status: callback.status, location: callback.headers.get('location'), body: await callback.text() };
  }

  test('the reset drops the identity that never proved the address; signing in with it again is refused', async () => {
    const attacker = uniqueName('mallory');
    const victim = `${uniqueName('victim')}@example.com`;
    idp.accounts[attacker] = { email: victim, email_verified: false };

    const first = await signInAtProvider(attacker);
    assert.equal(first.status, 303, first.body);
    const user = await app.gatehouse.db
      .selectFrom('users')
      .select(['id', 'email_verified_at'])
      .where('email', '=', victim)
      .executeTakeFirstOrThrow();
    assert.equal(user.email_verified_at, null, 'the provider did not verify it: neither does Gatehouse');

    // The address's owner takes the account over with "forgot password".
    const forgot = await app.inject({ method: 'POST', url: '/api/v1/forgot-password', payload: { email: victim } });
    assert.equal(forgot.statusCode, 202, forgot.body);
    const [mail] = await smtp.waitFor(victim, 1);
    const link = mail?.links.find((l) => l.includes('/reset-password?token='));
    assert.ok(link);
    const password = strongPassword();
    const reset = await app.inject({
      method: 'POST',
      url: '/api/v1/reset-password',
      payload: { token: tokenFrom(link), new_password: password, confirm_password: password },
    });
    assert.equal(reset.statusCode, 204, reset.body);

    const identities = await app.gatehouse.db
      .selectFrom('user_identities')
      .select('id')
      .where('user_id', '=', user.id)
      .execute();
    assert.deepEqual(identities, [], 'the unproven identity is gone');
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('user_id', '=', user.id)
      .where('action', '=', 'identity_unlinked')
      .executeTakeFirstOrThrow();
    assert.equal((audit.details as { reason?: string }).reason, 'unverified_at_password_reset');

    // The attacker comes back through the provider: the address is now a verified account's, not theirs.
    const again = await signInAtProvider(attacker);
    assert.equal(again.status, 409, again.body);
    assert.equal(JSON.parse(again.body).code, 'SSO_ACCOUNT_EXISTS');
  });
});
