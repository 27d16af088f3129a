/**
 * The attack: invitations as a mail cannon. One user sent twelve invitations
 * to one address, with an organization name written as the subject of a
 * phishing mail ("URGENT: password expired - call …"); only the per-IP
 * limit applied. Now one address receives at most 3 invitations in 24 hours
 * from all organizations together, one organization sends at most
 * INVITATION_LIMIT_PER_ORGANIZATION, both counted in PostgreSQL; names reach
 * the subject on one line, cut to 60 characters; the body names the inviter
 * and where to report abuse. Mail is read from a real SMTP server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { SUBJECT_NAME_MAX } from '../../src/infra/mail-templates.ts';
import { call, createOrganization, logIn, type SignedUp, signUp } from '../api/org-helpers.ts';
import { json, uniqueName } from '../helpers.ts';
import { startAppWithMail, type TestMailServer } from '../mail-server.ts';
import { testClock } from '../support/clock.ts';
import { assertProblem } from '../support/problem.ts';

const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;
const PER_ORGANIZATION = 5;
const ABUSE_CONTACT = 'abuse@gatehouse.test';

/** Characters that must never reach a subject: controls, line breaks, bidirectional and invisible marks. */
const UNSAFE_IN_SUBJECT = /[\p{Cc}\u2028\u2029\u061C\u200B\u200E\u200F\u202A-\u202E\u2066-\u2069\uFEFF]/u;

describe('invitation flood', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;
  const clock = testClock();

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail(
      {
        RATE_LIMIT_INVITATIONS: '100000/1h',
        INVITATION_LIMIT_PER_ORGANIZATION: `${PER_ORGANIZATION}/24h`,
        ABUSE_CONTACT,
      },
      { clock },
    ));
  });
  after(() => close());

  const invite = (admin: { token: string }, org: Record<string, unknown>, email: string, role = 'user') =>
    call(app, 'POST', `/api/v1/organizations/${String(org.uuid)}/invitations`, admin.token, { email, role });

  /** Signs in again: moving the clock by hours expires the access tokens. */
  const again = async (user: SignedUp): Promise<SignedUp> => ({
    ...user,
    ...(await logIn(app, user.email, user.password)),
  });

  const address = () => `${uniqueName('target')}@example.com`;

  test('the 4th invitation to one address in 24 h, from any organizations, is 429 with Retry-After; a day later it goes', async () => {
    let alice = await signUp(app);
    let bob = await signUp(app);
    const target = address();
    const first = await createOrganization(app, alice.token, `First ${uniqueName()}`);
    const second = await createOrganization(app, alice.token, `Second ${uniqueName()}`);
    const third = await createOrganization(app, bob.token, `Third ${uniqueName()}`);
    const fourth = await createOrganization(app, bob.token, `Fourth ${uniqueName()}`);

    const start = clock.now().getTime();
    assert.equal((await invite(alice, first, target)).statusCode, 201);
    clock.advance(HOUR_MS);
    [alice, bob] = [await again(alice), await again(bob)];
    assert.equal((await invite(alice, second, target)).statusCode, 201);
    clock.advance(HOUR_MS);
    [alice, bob] = [await again(alice), await again(bob)];
    assert.equal((await invite(bob, third, target.toUpperCase())).statusCode, 201, 'counted case-insensitively');

    // Another organization, another inviter, or the same organization again: all refused.
    for (const [who, org] of [
      [bob, fourth],
      [alice, first],
    ] as const) {
      const refused = await invite(who, org, target);
      const body = assertProblem(refused, 429, 'RATE_LIMIT_EXCEEDED');
      assert.equal(body.detail, 'Rate limit exceeded. Please try again later.');
      // The first invitation leaves the window 24 h after it was sent, 22 h from now.
      assert.equal(refused.headers['retry-after'], String((DAY_MS - 2 * HOUR_MS) / 1000));
      assert.equal(body.retry_after, (DAY_MS - 2 * HOUR_MS) / 1000);
    }
    await app.gatehouse.outbox.drain();
    assert.equal(smtp.to(target).length, 3, 'three mails, no more');
    const pending = json<unknown[]>(
      await call(app, 'GET', `/api/v1/organizations/${String(fourth.uuid)}/invitations`, bob.token),
    );
    assert.deepEqual(pending, [], 'a refused invitation is not created');

    // One second before the first leaves the window: still refused; one second after: allowed.
    clock.set(new Date(start + DAY_MS - 1000));
    bob = await again(bob);
    assertProblem(await invite(bob, fourth, target), 429, 'RATE_LIMIT_EXCEEDED');
    clock.set(new Date(start + DAY_MS + 1000));
    bob = await again(bob);
    assert.equal((await invite(bob, fourth, target)).statusCode, 201);
    await smtp.waitFor(target, 4);
    // The window is full again: the 2nd, 3rd and this one.
    assertProblem(await invite(bob, third, target), 429, 'RATE_LIMIT_EXCEEDED');
  });

  test('deleting the organization and making a new one does not reset the count of an address', async () => {
    const mallory = await signUp(app);
    const target = address();
    const throwaway = await createOrganization(app, mallory.token, `Throwaway ${uniqueName()}`);
    for (const role of ['user', 'viewer', 'admin']) {
      // Each re-invitation replaces the pending one, and still mails the address.
      assert.equal((await invite(mallory, throwaway, target, role)).statusCode, 201);
    }
    const deleted = await call(app, 'DELETE', `/api/v1/organizations/${String(throwaway.uuid)}`, mallory.token);
    assert.equal(deleted.statusCode, 204, deleted.body);
    const fresh = await createOrganization(app, mallory.token, `Fresh ${uniqueName()}`);
    assertProblem(await invite(mallory, fresh, target), 429, 'RATE_LIMIT_EXCEEDED');
    await app.gatehouse.outbox.drain();
    assert.equal(smtp.to(target).length, 3);
  });

  test('invitations of one address at once from many organizations stop at the cap', async () => {
    const admins = await Promise.all([1, 2, 3, 4, 5].map(() => signUp(app)));
    const orgs = await Promise.all(
      admins.map((admin) => createOrganization(app, admin.token, `Parallel ${uniqueName()}`)),
    );
    const target = address();
    const results = await Promise.all(
      admins.map((admin, i) => invite(admin, orgs[i] as Record<string, unknown>, target)),
    );
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [201, 201, 201, 429, 429]);
    const rows = await app.gatehouse.db.selectFrom('invitations').select('id').where('email', '=', target).execute();
    assert.equal(rows.length, 3);
  });

  test(`one organization sends at most INVITATION_LIMIT_PER_ORGANIZATION (${PER_ORGANIZATION}) in 24 h`, async () => {
    const admin = await signUp(app);
    const busy = await createOrganization(app, admin.token, `Busy ${uniqueName()}`);
    for (let i = 0; i < PER_ORGANIZATION; i++) {
      assert.equal((await invite(admin, busy, address())).statusCode, 201);
    }
    const refused = await invite(admin, busy, address());
    assertProblem(refused, 429, 'RATE_LIMIT_EXCEEDED');
    assert.equal(refused.headers['retry-after'], String(DAY_MS / 1000));
    // Another organization of the same admin has its own count.
    const other = await createOrganization(app, admin.token, `Other ${uniqueName()}`);
    assert.equal((await invite(admin, other, address())).statusCode, 201);
  });

  test('a hostile organization and inviter name reach the subject clean and capped; the body names the inviter and the abuse contact', async () => {
    const inviter = await signUp(app);
    const org = await createOrganization(app, inviter.token, `Hostile ${uniqueName()}`);
    const hostileOrganization =
      '\u202EURGENT: password expired\r\nBcc: everyone@example.com\r\n\r\n\t\u0007call +1 555 0100 \u2066now\u2069 ' +
      'z'.repeat(200);
    assert.ok(hostileOrganization.length > 200);
    // The API refuses such a name (control characters, over 100 characters), but a row written
    // before that rule, by a host application or by hand still reaches the mail.
    await app.gatehouse.db
      .updateTable('organizations')
      .set({ name: hostileOrganization })
      .where('uuid', '=', String(org.uuid))
      .execute();
    await app.gatehouse.db
      .updateTable('users')
      .set({ first_name: 'Mallory\u202E\nX-Injected: yes', last_name: 'Admin' })
      .where('id', '=', inviter.id)
      .execute();
    const target = address();
    assert.equal((await invite(inviter, org, target)).statusCode, 201);

    const [mail] = await smtp.waitFor(target);
    assert.ok(mail);
    assert.deepEqual(mail.recipients, [target]);
    assert.equal(mail.headers.has('bcc'), false);
    assert.equal(mail.headers.has('x-injected'), false);
    assert.doesNotMatch(mail.subject, UNSAFE_IN_SUBJECT, JSON.stringify(mail.subject));
    const organizationShown =
      `URGENT: password expired Bcc: everyone@example.com call +1 555 0100 now ${'z'.repeat(200)}`
        .slice(0, SUBJECT_NAME_MAX - 1)
        .trimEnd()
        .concat('…');
    assert.equal(organizationShown, `URGENT: password expired Bcc: everyone@example.com call +1…`);
    assert.equal(mail.subject, `Mallory X-Injected: yes Admin invited you to join ${organizationShown}`);

    // The body: who sent it, from which address, and where to report it.
    assert.match(mail.text, /Mallory X-Injected: yes Admin \(([^)]+)\) invited you to join URGENT: password expired/);
    assert.ok(mail.text.includes(`(${inviter.email}) invited you`), mail.text);
    assert.ok(mail.text.includes(`To report abuse, forward this message to ${ABUSE_CONTACT}.`), mail.text);
    assert.ok(mail.html.includes(`forward this message to ${ABUSE_CONTACT}`));
    for (const line of mail.text.split('\n')) assert.doesNotMatch(line, UNSAFE_IN_SUBJECT, JSON.stringify(line));
  });

  test('a name the API accepts, with invisible marks and a line separator, is cleaned too', async () => {
    const inviter = await signUp(app);
    // 100 characters, no control characters: valid, yet \u2028 breaks a line and \u200F flips text.
    const name = `Pay\u200Fpal\u2028Security Team ${'y'.repeat(100)}`.slice(0, 100);
    const org = await createOrganization(app, inviter.token, name);
    const target = address();
    assert.equal((await invite(inviter, org, target)).statusCode, 201);
    const [mail] = await smtp.waitFor(target);
    assert.doesNotMatch(mail?.subject ?? '', UNSAFE_IN_SUBJECT);
    assert.ok(mail?.subject.endsWith(`join Paypal Security Team ${'y'.repeat(SUBJECT_NAME_MAX - 22)}…`), mail?.subject);
  });
});

describe('ABUSE_CONTACT', () => {
  test('defaults to the address of MAIL_FROM, and must be an e-mail address', () => {
    assert.equal(
      loadConfig({ ENVIRONMENT: 'test', SECRET_KEY: 'x'.repeat(32), MAIL_FROM: 'Example <No-Reply@example.com>' })
        .abuseContact,
      'No-Reply@example.com',
    );
    assert.equal(
      loadConfig({ ENVIRONMENT: 'test', SECRET_KEY: 'x'.repeat(32), ABUSE_CONTACT: ' Abuse@Example.com ' })
        .abuseContact,
      'abuse@example.com',
    );
    assert.throws(
      () => loadConfig({ ENVIRONMENT: 'test', SECRET_KEY: 'x'.repeat(32), ABUSE_CONTACT: 'Abuse <a@example.com>' }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'ABUSE_CONTACT',
    );
  });
});
