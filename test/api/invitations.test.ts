import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, logCapture, startApp, uniqueName } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { assertProblem } from '../support/problem.ts';
import {
  addMember,
  auditRows,
  type Body,
  call,
  createOrganization,
  logIn,
  type SignedIn,
  signUp,
} from './org-helpers.ts';

const DAY_MS = 24 * 3600 * 1000;

describe('invitations', () => {
  let app: FastifyInstance;
  let admin: SignedIn;
  const clock = testClock();
  const logs = logCapture();

  before(async () => {
    app = await startApp(
      { REDIS_KEY_PREFIX: `t:${uniqueName()}:` },
      { clock, logger: { level: 'debug', stream: logs.stream } },
    );
    admin = await signUp(app);
  });
  after(() => app.close());

  const invitationsUrl = (org: Body) => `/api/v1/organizations/${String(org.uuid)}/invitations`;
  const accept = (token: string | undefined, payload: unknown) =>
    call(app, 'POST', '/api/v1/invitations/accept', token, payload);

  /** The token of the newest invitation mail to `email`, read from the outbox as a mailbox would. */
  async function mailedToken(email: string): Promise<string> {
    const mail = await app.gatehouse.db
      .selectFrom('email_outbox')
      .selectAll()
      .where('to_address', '=', email)
      .where('template', '=', 'invitation')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    const token = /http:\/\/gatehouse\.test\/accept-invitation\?token=([A-Za-z0-9_-]{43})/.exec(mail.text_body)?.[1];
    assert.ok(token, mail.text_body);
    return token;
  }

  async function invite(org: Body, email: string, role = 'user'): Promise<Body> {
    const res = await call(app, 'POST', invitationsUrl(org), admin.token, { email, role });
    assert.equal(res.statusCode, 201, res.body);
    return json(res);
  }

  test('an admin invites by email: 201, a mail with a single link, a hashed 7-day token, an audit row', async () => {
    const org = await createOrganization(app, admin.token, `Invite ${uniqueName()}`);
    const email = `${uniqueName()}@Example.com`;
    const res = await call(app, 'POST', invitationsUrl(org), admin.token, { email: ` ${email} `, role: 'viewer' });
    assert.equal(res.statusCode, 201, res.body);
    const body = json(res);
    assert.deepEqual(Object.keys(body).sort(), [
      'created_at',
      'email',
      'expires_at',
      'invited_by',
      'organization_uuid',
      'role',
      'uuid',
    ]);
    assert.equal(body.email, email.toLowerCase());
    assert.equal(body.role, 'viewer');
    assert.equal(body.organization_uuid, org.uuid);
    assert.equal(body.invited_by, admin.uuid);
    assert.equal(Date.parse(String(body.expires_at)) - Date.parse(String(body.created_at)), 7 * DAY_MS);

    const mails = await app.gatehouse.db
      .selectFrom('email_outbox')
      .selectAll()
      .where('to_address', '=', email.toLowerCase())
      .execute();
    assert.equal(mails.length, 1);
    assert.equal(mails[0]?.template, 'invitation');
    assert.match(String(mails[0]?.subject), new RegExp(String(org.name)));
    const token = await mailedToken(email.toLowerCase());
    const stored = await app.gatehouse.db
      .selectFrom('one_time_tokens')
      .innerJoin('invitations', 'invitations.id', 'one_time_tokens.invitation_id')
      .select([
        'one_time_tokens.token_hash',
        'one_time_tokens.purpose',
        'one_time_tokens.expires_at',
        'invitations.uuid',
      ])
      .where('invitations.uuid', '=', String(body.uuid))
      .execute();
    assert.equal(stored.length, 1);
    assert.equal(stored[0]?.purpose, 'invitation');
    assert.match(String(stored[0]?.token_hash), /^[0-9a-f]{64}$/);
    assert.notEqual(stored[0]?.token_hash, token);
    assert.equal(stored[0]?.expires_at.toISOString(), body.expires_at);
    assert.ok(!logs.lines.some((line) => line.includes(token)), 'the invitation token reached a log line');

    const audit = await auditRows(app, String(org.uuid), 'member_invited');
    assert.equal(audit.length, 1);
    assert.deepEqual(audit[0]?.details, {
      invitation_uuid: body.uuid,
      email: email.toLowerCase(),
      role: 'viewer',
      replaced: [],
    });

    const pending = json<Body[]>(await call(app, 'GET', invitationsUrl(org), admin.token));
    assert.deepEqual(
      pending.map((i) => i.uuid),
      [body.uuid],
    );
  });

  test('the invitee accepts with a bearer whose verified email matches and joins with the invited role', async () => {
    const org = await createOrganization(app, admin.token, `Join ${uniqueName()}`);
    const invitee = await signUp(app);
    const invitation = await invite(org, invitee.email, 'user');
    const token = await mailedToken(invitee.email);

    const res = await accept(invitee.token, { token });
    assert.equal(res.statusCode, 200, res.body);
    const body = json(res);
    assert.equal(body.uuid, org.uuid);
    assert.equal(body.role, 'user');
    assert.equal(body.slug, org.slug);
    const mine = json<Body[]>(await call(app, 'GET', '/api/v1/organizations', invitee.token));
    assert.deepEqual(
      mine.map((o) => [o.uuid, o.role]),
      [[org.uuid, 'user']],
    );
    const row = await app.gatehouse.db
      .selectFrom('invitations')
      .selectAll()
      .where('uuid', '=', String(invitation.uuid))
      .executeTakeFirstOrThrow();
    assert.ok(row.accepted_at);
    assert.equal(row.accepted_by, invitee.id);
    const audit = await auditRows(app, String(org.uuid), 'invitation_accepted');
    assert.equal(audit.length, 1);
    assert.equal(audit[0]?.user_id, invitee.id);
    assert.deepEqual(audit[0]?.details, { invitation_uuid: invitation.uuid, role: 'user' });
    // Accepted invitations are no longer pending.
    assert.deepEqual(json(await call(app, 'GET', invitationsUrl(org), admin.token)), []);

    // Single use: the same token again, by anyone, is 422.
    assertProblem(await accept(invitee.token, { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assertProblem(await accept(admin.token, { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
  });

  test('someone else cannot accept (403) and does not spend the link; the invitee still can', async () => {
    const org = await createOrganization(app, admin.token, `Other ${uniqueName()}`);
    const invitee = await signUp(app);
    const stranger = await signUp(app);
    await invite(org, invitee.email);
    const token = await mailedToken(invitee.email);
    const refused = assertProblem(await accept(stranger.token, { token }), 403, 'FORBIDDEN');
    assert.match(String(refused.detail), /different email/);
    assertProblem(
      await call(app, 'GET', `/api/v1/organizations/${String(org.uuid)}`, stranger.token),
      404,
      'NOT_FOUND',
    );
    assert.equal((await accept(invitee.token, { token })).statusCode, 200);
  });

  test('an unverified invitee gets 403 EMAIL_NOT_VERIFIED, and can accept once verified', async () => {
    const org = await createOrganization(app, admin.token, `Verify ${uniqueName()}`);
    const invitee = await signUp(app);
    await invite(org, invitee.email, 'viewer');
    const token = await mailedToken(invitee.email);
    // Logged in while verified; the address is then changed back to unverified.
    await app.gatehouse.db.updateTable('users').set({ email_verified_at: null }).where('id', '=', invitee.id).execute();
    assertProblem(await accept(invitee.token, { token }), 403, 'EMAIL_NOT_VERIFIED');
    await app.gatehouse.db
      .updateTable('users')
      .set({ email_verified_at: new Date() })
      .where('id', '=', invitee.id)
      .execute();
    const res = await accept(invitee.token, { token });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(json(res).role, 'viewer');
  });

  test('accepting needs a bearer token: 401 without one', async () => {
    const res = await accept(undefined, { token: 'x'.repeat(43) });
    assertProblem(res, 401, 'UNAUTHORIZED');
    assert.equal(res.headers['www-authenticate'], 'Bearer');
  });

  test('bad tokens: unknown 422 TOKEN_INVALID_OR_EXPIRED, empty or missing 422 VALIDATION_ERROR, wrong type 400', async () => {
    const user = await signUp(app);
    for (const token of ['x'.repeat(43), 'nope', "' or 1=1 --"]) {
      assertProblem(await accept(user.token, { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    }
    assertProblem(await accept(user.token, { token: '' }), 422, 'VALIDATION_ERROR');
    assertProblem(await accept(user.token, {}), 422, 'VALIDATION_ERROR');
    assertProblem(await accept(user.token, { token: 12 }), 400, 'MALFORMED_REQUEST');
    assertProblem(await accept(user.token, { token: 'x'.repeat(513) }), 422, 'VALIDATION_ERROR');
    // A verification link's token is not an invitation token.
    const mail = await app.gatehouse.db
      .selectFrom('email_outbox')
      .select('text_body')
      .where('to_address', '=', user.email)
      .where('template', '=', 'verify_email')
      .executeTakeFirstOrThrow();
    const verifyToken = /verify-email\?token=([A-Za-z0-9_-]+)/.exec(mail.text_body)?.[1];
    assert.ok(verifyToken);
    assertProblem(await accept(user.token, { token: verifyToken }), 422, 'TOKEN_INVALID_OR_EXPIRED');
  });

  test('an invitation expires after 7 days: 422 then, accepted just before', async () => {
    const org = await createOrganization(app, admin.token, `Expiry ${uniqueName()}`);
    const late = await signUp(app);
    const early = await signUp(app);
    await invite(org, late.email);
    const lateToken = await mailedToken(late.email);
    await invite(org, early.email);
    const earlyToken = await mailedToken(early.email);

    clock.advance(7 * DAY_MS - 60_000);
    const earlyAgain = await logIn(app, early.email, early.password);
    assert.equal((await accept(earlyAgain.token, { token: earlyToken })).statusCode, 200);

    clock.advance(61_000);
    const lateAgain = await logIn(app, late.email, late.password);
    assertProblem(await accept(lateAgain.token, { token: lateToken }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    // Expired invitations are no longer pending.
    const adminAgain = await logIn(app, admin.email, admin.password);
    admin = adminAgain;
    assert.deepEqual(json(await call(app, 'GET', invitationsUrl(org), admin.token)), []);
  });

  test('an admin revokes a pending invitation: 204, audited, its link dead, a second revoke 404', async () => {
    const org = await createOrganization(app, admin.token, `Revoke ${uniqueName()}`);
    const invitee = await signUp(app);
    const invitation = await invite(org, invitee.email);
    const token = await mailedToken(invitee.email);
    const url = `${invitationsUrl(org)}/${String(invitation.uuid)}`;
    const res = await call(app, 'DELETE', url, admin.token);
    assert.equal(res.statusCode, 204, res.body);
    assert.deepEqual(json(await call(app, 'GET', invitationsUrl(org), admin.token)), []);
    assertProblem(await accept(invitee.token, { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assertProblem(await call(app, 'DELETE', url, admin.token), 404, 'NOT_FOUND');
    assertProblem(await call(app, 'DELETE', `${invitationsUrl(org)}/${randomUUID()}`, admin.token), 404, 'NOT_FOUND');
    assertProblem(await call(app, 'DELETE', `${invitationsUrl(org)}/not-a-uuid`, admin.token), 404, 'NOT_FOUND');
    const audit = await auditRows(app, String(org.uuid), 'invitation_revoked');
    assert.deepEqual(
      audit.map((a) => a.details),
      [{ invitation_uuid: invitation.uuid }],
    );
  });

  test('an invitation of another organization cannot be revoked through this one', async () => {
    const mine = await createOrganization(app, admin.token, `Mine ${uniqueName()}`);
    const theirs = await createOrganization(app, admin.token, `Theirs ${uniqueName()}`);
    const invitation = await invite(theirs, `${uniqueName()}@example.com`);
    assertProblem(
      await call(app, 'DELETE', `${invitationsUrl(mine)}/${String(invitation.uuid)}`, admin.token),
      404,
      'NOT_FOUND',
    );
    assert.equal(json<Body[]>(await call(app, 'GET', invitationsUrl(theirs), admin.token)).length, 1);
  });

  test('inviting the same address again replaces the pending invitation; the old link dies', async () => {
    const org = await createOrganization(app, admin.token, `Again ${uniqueName()}`);
    const invitee = await signUp(app);
    const first = await invite(org, invitee.email, 'viewer');
    const oldToken = await mailedToken(invitee.email);
    const second = await invite(org, invitee.email, 'user');
    const newToken = await mailedToken(invitee.email);
    assert.notEqual(oldToken, newToken);
    const pending = json<Body[]>(await call(app, 'GET', invitationsUrl(org), admin.token));
    assert.deepEqual(
      pending.map((i) => [i.uuid, i.role]),
      [[second.uuid, 'user']],
    );
    const audit = await auditRows(app, String(org.uuid), 'member_invited');
    assert.deepEqual((audit[1]!.details as Body).replaced, [first.uuid]);
    assertProblem(await accept(invitee.token, { token: oldToken }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assert.equal(json(await accept(invitee.token, { token: newToken })).role, 'user');
  });

  test('two invitations of one address at once leave exactly one pending, with one live link', async () => {
    const org = await createOrganization(app, admin.token, `Twice ${uniqueName()}`);
    const email = `${uniqueName()}@example.com`;
    const results = await Promise.all([
      call(app, 'POST', invitationsUrl(org), admin.token, { email, role: 'user' }),
      call(app, 'POST', invitationsUrl(org), admin.token, { email, role: 'viewer' }),
    ]);
    assert.deepEqual(
      results.map((r) => r.statusCode),
      [201, 201],
    );
    const pending = json<Body[]>(await call(app, 'GET', invitationsUrl(org), admin.token));
    assert.equal(pending.length, 1);
    const live = await app.gatehouse.db
      .selectFrom('one_time_tokens')
      .select('id')
      .where('email', '=', email)
      .where('purpose', '=', 'invitation')
      .where('used_at', 'is', null)
      .execute();
    assert.equal(live.length, 1);
  });

  test('inviting a member is 409 CONFLICT; accepting while already a member is 409 and keeps the link', async () => {
    const org = await createOrganization(app, admin.token, `Member ${uniqueName()}`);
    const member = await signUp(app);
    await addMember(app, String(org.uuid), member.id, 'viewer');
    assertProblem(
      await call(app, 'POST', invitationsUrl(org), admin.token, { email: member.email.toUpperCase(), role: 'user' }),
      409,
      'CONFLICT',
    );
    const later = await signUp(app);
    await invite(org, later.email);
    const token = await mailedToken(later.email);
    await addMember(app, String(org.uuid), later.id, 'viewer');
    assertProblem(await accept(later.token, { token }), 409, 'CONFLICT');
  });

  test('bad invitation input answers 422 VALIDATION_ERROR listing each field; wrong types 400', async () => {
    const org = await createOrganization(app, admin.token, `Input ${uniqueName()}`);
    const both = assertProblem(
      await call(app, 'POST', invitationsUrl(org), admin.token, { email: 'not an email', role: 'owner' }),
      422,
      'VALIDATION_ERROR',
    );
    assert.deepEqual(
      (both.errors as Body[]).map((e) => e.field),
      ['email', 'role'],
    );
    for (const payload of [
      { email: `${uniqueName()}@example.com`, role: 'superuser' },
      { email: `${uniqueName()}@example.com` },
      { email: 'Name <a@example.com>', role: 'user' },
      { email: `nul\u0000@example.com`, role: 'user' },
      { role: 'user' },
    ]) {
      assertProblem(await call(app, 'POST', invitationsUrl(org), admin.token, payload), 422, 'VALIDATION_ERROR');
    }
    assertProblem(
      await call(app, 'POST', invitationsUrl(org), admin.token, { email: ['a@example.com'], role: 'user' }),
      400,
      'MALFORMED_REQUEST',
    );
    assert.deepEqual(json(await call(app, 'GET', invitationsUrl(org), admin.token)), []);
  });

  test('two accepts of one link at once: exactly one joins, the other gets 422', async () => {
    const org = await createOrganization(app, admin.token, `Race ${uniqueName()}`);
    const invitee = await signUp(app);
    await invite(org, invitee.email);
    const token = await mailedToken(invitee.email);
    const results = await Promise.all([accept(invitee.token, { token }), accept(invitee.token, { token })]);
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 422]);
    const members = json<Body[]>(
      await call(app, 'GET', `/api/v1/organizations/${String(org.uuid)}/members`, admin.token),
    );
    assert.equal(members.filter((m) => m.user_uuid === invitee.uuid).length, 1);
  });

  test('POST invitations is rate limited per client: 429 RATE_LIMIT_EXCEEDED with Retry-After', async () => {
    const limited = await startApp({ REDIS_KEY_PREFIX: `t:${uniqueName()}:`, RATE_LIMIT_INVITATIONS: '2/1h' });
    try {
      const owner = await signUp(limited);
      const org = await createOrganization(limited, owner.token, `Limited ${uniqueName()}`);
      const send = () =>
        call(limited, 'POST', invitationsUrl(org), owner.token, { email: `${uniqueName()}@example.com`, role: 'user' });
      assert.equal((await send()).statusCode, 201);
      assert.equal((await send()).statusCode, 201);
      const res = await send();
      const body = assertProblem(res, 429, 'RATE_LIMIT_EXCEEDED');
      assert.ok(Number(res.headers['retry-after']) > 0);
      assert.equal(body.detail, 'Rate limit exceeded. Please try again later.');
    } finally {
      await limited.close();
    }
  });
});
