/**
 * The attack: password-reset poisoning through the Host header. The
 * attacker asks for a reset of the victim's account with `Host: evil.test`
 * (or `X-Forwarded-Host`, `Forwarded: host=`); a service that builds links
 * from the request mails the victim a genuine token on the attacker's
 * domain, and one click hands the token over. Gatehouse builds every mailed
 * link from PUBLIC_URL alone (`publicLink`, src/infra/mail.ts, called by
 * src/infra/mailed-links.ts and the invitation flow); no request header
 * reaches a mail, also behind a trusted proxy. The mails are read from a
 * real SMTP server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createOrganization, signUp } from '../api/org-helpers.ts';
import { newUser, uniqueName } from '../helpers.ts';
import { type ReceivedMail, startAppWithMail, type TestMailServer } from '../mail-server.ts';
import { Browser } from '../support/browser.ts';

const PUBLIC_URL = 'http://gatehouse.test';

/** The headers a poisoning attempt sets, each alone and all together. */
const POISON: Record<string, Record<string, string>> = {
  Host: { host: 'evil.test' },
  'X-Forwarded-Host': { 'x-forwarded-host': 'evil.test' },
  'X-Forwarded-Host and X-Forwarded-Proto': { 'x-forwarded-host': 'evil.test', 'x-forwarded-proto': 'https' },
  'Forwarded: host=': { forwarded: 'for=203.0.113.9;host=evil.test;proto=https' },
  'X-Original-Host and X-Host': { 'x-original-host': 'evil.test', 'x-host': 'evil.test' },
  'all of them, with a port': {
    host: 'evil.test:8443',
    'x-forwarded-host': 'evil.test:8443',
    'x-forwarded-server': 'evil.test',
    forwarded: 'host="evil.test:8443"',
  },
};

/** Every link of the mail is under PUBLIC_URL; the attacker's host appears nowhere in it. */
function assertOnlyPublicLinks(mail: ReceivedMail | undefined, path: string): void {
  assert.ok(mail, 'a mail arrived');
  assert.ok(mail.links.length > 0, 'the mail has links');
  for (const link of mail.links) assert.equal(new URL(link).origin, PUBLIC_URL, link);
  assert.ok(
    mail.links.some((l) => new URL(l).pathname === path && new URL(l).searchParams.has('token')),
    `a ${path} link: ${mail.links.join(', ')}`,
  );
  for (const part of [mail.text, mail.html, mail.messageId ?? '', mail.from]) {
    assert.doesNotMatch(part, /evil\.test/);
  }
}

for (const trustProxy of ['false', 'true']) {
  describe(`reset-link host poisoning, TRUST_PROXY=${trustProxy}`, () => {
    let app: FastifyInstance;
    let smtp: TestMailServer;
    let close: () => Promise<void>;

    before(async () => {
      ({ app, smtp, close } = await startAppWithMail({ TRUST_PROXY: trustProxy, RATE_LIMIT_INVITATIONS: '100000/1h' }));
    });
    after(() => close());

    /** The mails to `email` once `count` have arrived, the newest last. */
    const mails = (email: string, count: number) => smtp.waitFor(email, count);

    for (const [name, headers] of Object.entries(POISON)) {
      test(`POST /api/v1/forgot-password with ${name}: evil.test → the mailed link uses PUBLIC_URL`, async () => {
        const victim = await signUp(app);
        const res = await app.inject({
          method: 'POST',
          url: '/api/v1/forgot-password',
          headers: { 'content-type': 'application/json', ...headers },
          payload: JSON.stringify({ email: victim.email }),
        });
        assert.equal(res.statusCode, 202, res.body);
        // The verification mail of the registration, then the reset mail.
        const reset = (await mails(victim.email, 2)).find((m) => m.links.some((l) => l.includes('/reset-password')));
        assertOnlyPublicLinks(reset, '/reset-password');
      });
    }

    test('the forgot-password page with Host and X-Forwarded-Host: evil.test → the mailed link uses PUBLIC_URL', async () => {
      const victim = await signUp(app);
      const headers = POISON['all of them, with a port'] as Record<string, string>;
      const browser = new Browser(app);
      const csrf = /name="csrf_token" value="([^"]+)"/.exec((await browser.get('/forgot-password', headers)).body)?.[1];
      const res = await browser.post('/forgot-password', { csrf_token: csrf as string, email: victim.email }, headers);
      assert.equal(res.statusCode, 303, res.body);
      assert.equal(res.headers.location, '/forgot-password', 'a relative redirect, not one to the Host');
      const reset = (await mails(victim.email, 2)).find((m) => m.links.some((l) => l.includes('/reset-password')));
      assertOnlyPublicLinks(reset, '/reset-password');
    });

    test('the verification mail of a registration, and a resent one, with Host: evil.test use PUBLIC_URL', async () => {
      const headers = POISON['all of them, with a port'] as Record<string, string>;
      const user = newUser();
      const registered = await app.inject({ method: 'POST', url: '/api/v1/register', headers, payload: user });
      assert.equal(registered.statusCode, 201, registered.body);
      const resent = await app.inject({
        method: 'POST',
        url: '/api/v1/resend-verification',
        headers,
        payload: { email: user.email },
      });
      assert.equal(resent.statusCode, 202, resent.body);
      for (const mail of await mails(user.email, 2)) assertOnlyPublicLinks(mail, '/verify-email');
    });

    test('an invitation sent with Host: evil.test links to PUBLIC_URL', async () => {
      const admin = await signUp(app);
      const org = await createOrganization(app, admin.token, `Org ${uniqueName()}`);
      const invitee = `${uniqueName('invitee')}@example.com`;
      const res = await app.inject({
        method: 'POST',
        url: `/api/v1/organizations/${String(org.uuid)}/invitations`,
        headers: { authorization: `Bearer ${admin.token}`, ...(POISON['all of them, with a port'] as object) },
        payload: { email: invitee, role: 'user' },
      });
      assert.equal(res.statusCode, 201, res.body);
      const [mail] = await mails(invitee, 1);
      assertOnlyPublicLinks(mail, '/accept-invitation');
    });
  });
}
