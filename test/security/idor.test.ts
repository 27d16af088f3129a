/**
 * The attack: insecure direct object references. A signed-in user puts
 * someone else's identifier in a request: another user's session id to read
 * or revoke it, an organization they are not a member of, a member or an
 * invitation of that organization; a viewer or plain user of an
 * organization tries what only its admins may do; a caller counts through
 * integer ids. Gatehouse scopes every look-up to the caller: sessions by
 * their owner (src/flows/sessions.ts), organizations by the caller's
 * membership first (`authorizeMember`, src/flows/org-access.ts), so a
 * non-member gets 404 NOT_FOUND whether or not the organization exists; a
 * member whose role lacks the permission gets 403 FORBIDDEN; path
 * identifiers are random UUIDs, and integer ids open nothing. Every refusal
 * leaves the rows as they were.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import { addMember, call, createOrganization, logIn, type SignedUp, signUp } from '../api/org-helpers.ts';
import { json, uniqueName } from '../helpers.ts';
import { startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';
import { Browser, pageLogIn } from '../support/browser.ts';
import { assertProblem } from '../support/problem.ts';

const sid = (token: string) => String(decodeJwt(token).sid);
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('insecure direct object references', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;
  /** Admin of Acme. */
  let alice: SignedUp;
  /** Signed in, member of nothing of Alice's. */
  let bob: SignedUp;
  /** Viewer of Acme. */
  let carol: SignedUp;
  /** User (the middle role) of Acme. */
  let dave: SignedUp;
  let acme: Record<string, unknown>;
  let acmeUrl: string;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({ RATE_LIMIT_INVITATIONS: '100000/1h' }));
    [alice, bob, carol, dave] = [await signUp(app), await signUp(app), await signUp(app), await signUp(app)];
    acme = await createOrganization(app, alice.token, `Acme ${uniqueName()}`);
    acmeUrl = `/api/v1/organizations/${String(acme.uuid)}`;
    await addMember(app, String(acme.uuid), carol.id, 'viewer');
    await addMember(app, String(acme.uuid), dave.id, 'user');
  });
  after(() => close());

  /** What an attack could change about Acme: its row, its members and roles, its pending invitations. */
  async function acmeState() {
    const db = app.gatehouse.db;
    const org = await db
      .selectFrom('organizations')
      .select(['id', 'name', 'slug'])
      .where('uuid', '=', String(acme.uuid))
      .executeTakeFirst();
    const members = org
      ? await db
          .selectFrom('memberships')
          .innerJoin('roles', 'roles.id', 'memberships.role_id')
          .select(['memberships.user_id', 'roles.name'])
          .where('memberships.organization_id', '=', org.id)
          .orderBy('memberships.user_id')
          .execute()
      : [];
    const invitations = org
      ? await db
          .selectFrom('invitations')
          .select(['email', 'revoked_at'])
          .where('organization_id', '=', org.id)
          .execute()
      : [];
    return { org, members, invitations };
  }

  describe('sessions', () => {
    test("user B cannot see user A's sessions: GET /sessions lists only B's own", async () => {
      const res = await call(app, 'GET', '/api/v1/sessions', bob.token);
      assert.equal(res.statusCode, 200, res.body);
      const ids = json<{ id: string }[]>(res).map((s) => s.id);
      assert.ok(ids.includes(sid(bob.token)));
      assert.ok(!ids.includes(sid(alice.token)), "Alice's session is not listed");
    });

    test("user B cannot revoke user A's session: DELETE /sessions/{A's id} is 404 NOT_FOUND and A stays signed in", async () => {
      const victim = await logIn(app, alice.email, alice.password);
      for (const id of [sid(victim.token), sid(victim.token).toUpperCase()]) {
        const res = await call(app, 'DELETE', `/api/v1/sessions/${id}`, bob.token);
        assertProblem(res, 404, 'NOT_FOUND');
      }
      const row = await app.gatehouse.db
        .selectFrom('sessions')
        .select('revoked_at')
        .where('uuid', '=', sid(victim.token))
        .executeTakeFirstOrThrow();
      assert.equal(row.revoked_at, null);
      assert.equal((await call(app, 'GET', '/api/v1/me', victim.token)).statusCode, 200);
    });

    test("user B cannot sign out user A's session from the account page: 404, A stays signed in", async () => {
      const victim = await logIn(app, alice.email, alice.password);
      const browser = new Browser(app);
      await pageLogIn(browser, bob.username, bob.password);
      const res = await browser.post('/account', {
        csrf_token: await browser.csrfToken('/account'),
        action: 'sign_out_session',
        session_id: sid(victim.token),
      });
      assert.equal(res.statusCode, 404, res.body.slice(0, 500));
      assert.equal((await call(app, 'GET', '/api/v1/me', victim.token)).statusCode, 200);
    });
  });

  describe('an organization the caller is not a member of', () => {
    test('every route answers 404 NOT_FOUND, exactly as for an organization that does not exist; nothing changes', async () => {
      const before = await acmeState();
      const missing = '/api/v1/organizations/00000000-0000-4000-8000-000000000000';
      const attempts: ['GET' | 'PATCH' | 'DELETE' | 'POST', string, unknown?][] = [
        ['GET', ''],
        ['PATCH', '', { name: 'Owned by Bob' }],
        ['DELETE', ''],
        ['GET', '/members'],
        ['PATCH', `/members/${alice.uuid}`, { role: 'viewer' }],
        ['DELETE', `/members/${alice.uuid}`],
        ['DELETE', `/members/${carol.uuid}`],
        ['GET', '/invitations'],
        ['POST', '/invitations', { email: bob.email, role: 'admin' }],
        ['GET', '/audit-logs'],
      ];
      for (const [method, path, payload] of attempts) {
        const res = await call(app, method, `${acmeUrl}${path}`, bob.token, payload);
        const body = assertProblem(res, 404, 'NOT_FOUND');
        const unknown = await call(app, method, `${missing}${path}`, bob.token, payload);
        assert.deepEqual(json(unknown), body, `${method} ${path}: the same answer as for no organization`);
      }
      assert.deepEqual(await acmeState(), before);
    });

    test("an admin of another organization cannot reach Acme's members through their own organization's path", async () => {
      const before = await acmeState();
      const bobs = await createOrganization(app, bob.token, `Bob's ${uniqueName()}`);
      for (const [method, payload] of [
        ['PATCH', { role: 'viewer' }],
        ['DELETE', undefined],
      ] as const) {
        const res = await call(
          app,
          method,
          `/api/v1/organizations/${String(bobs.uuid)}/members/${alice.uuid}`,
          bob.token,
          payload,
        );
        assertProblem(res, 404, 'NOT_FOUND');
      }
      assert.deepEqual(await acmeState(), before);
    });

    test("an invitation sent to someone else's address cannot be accepted: 403 FORBIDDEN, no membership", async () => {
      const target = `${uniqueName('invitee')}@example.com`;
      const invited = await call(app, 'POST', `${acmeUrl}/invitations`, alice.token, { email: target, role: 'admin' });
      assert.equal(invited.statusCode, 201, invited.body);
      const [mail] = await smtp.waitFor(target);
      const link = mail?.links.find((l) => l.includes('/accept-invitation?token='));
      assert.ok(link);
      const before = await acmeState();
      const res = await call(app, 'POST', '/api/v1/invitations/accept', bob.token, { token: tokenFrom(link) });
      assertProblem(res, 403, 'FORBIDDEN');
      assert.deepEqual(await acmeState(), before);
    });
  });

  describe('a member whose role does not allow the action', () => {
    for (const who of ['viewer', 'user'] as const) {
      test(`a ${who} cannot rename or delete the organization, change roles, remove members, invite, or read the audit log: 403 FORBIDDEN`, async () => {
        const actor = who === 'viewer' ? carol : dave;
        const before = await acmeState();
        const attempts: ['GET' | 'PATCH' | 'DELETE' | 'POST', string, unknown?][] = [
          ['PATCH', '', { name: `Owned by the ${who}` }],
          ['DELETE', ''],
          ['PATCH', `/members/${actor.uuid}`, { role: 'admin' }],
          ['PATCH', `/members/${alice.uuid}`, { role: 'viewer' }],
          ['DELETE', `/members/${alice.uuid}`],
          ['GET', '/invitations'],
          ['POST', '/invitations', { email: `${uniqueName()}@example.com`, role: 'admin' }],
          ['GET', '/audit-logs'],
        ];
        for (const [method, path, payload] of attempts) {
          assertProblem(await call(app, method, `${acmeUrl}${path}`, actor.token, payload), 403, 'FORBIDDEN');
        }
        assert.deepEqual(await acmeState(), before);
        // What the role does allow still works: the refusals were the role's doing.
        assert.equal((await call(app, 'GET', acmeUrl, actor.token)).statusCode, 200);
        assert.equal((await call(app, 'GET', `${acmeUrl}/members`, actor.token)).statusCode, 200);
      });
    }

    test('a signed-in user who is not a superuser cannot use the administration API: 403 FORBIDDEN', async () => {
      const before = await app.gatehouse.db
        .selectFrom('users')
        .select('is_active')
        .where('id', '=', alice.id)
        .executeTakeFirstOrThrow();
      for (const [method, url, payload] of [
        ['GET', '/api/v1/admin/users'],
        ['GET', '/api/v1/admin/audit-logs'],
        ['GET', '/api/v1/admin/login-attempts'],
        ['PATCH', `/api/v1/admin/users/${alice.uuid}`, { is_active: false }],
      ] as const) {
        assertProblem(await call(app, method, url, alice.token, payload), 403, 'FORBIDDEN');
      }
      const after = await app.gatehouse.db
        .selectFrom('users')
        .select('is_active')
        .where('id', '=', alice.id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(after, before);
    });
  });

  describe('guessing identifiers', () => {
    test('path identifiers are random (version 4) UUIDs: users, organizations, sessions, invitations', async () => {
      const invited = await call(app, 'POST', `${acmeUrl}/invitations`, alice.token, {
        email: `${uniqueName()}@example.com`,
        role: 'user',
      });
      assert.equal(invited.statusCode, 201, invited.body);
      for (const id of [alice.uuid, bob.uuid, String(acme.uuid), sid(alice.token), String(json(invited).uuid)]) {
        assert.match(id, UUID_V4);
      }
    });

    test('the integer ids visible in registration answers open nothing: each route answers 404', async () => {
      const res = await call(app, 'GET', '/api/v1/me', bob.token);
      assert.equal(typeof json(res).id, 'number', 'the seed contract shows the integer id');
      const row = await app.gatehouse.db
        .selectFrom('organizations')
        .select('id')
        .where('uuid', '=', String(acme.uuid))
        .executeTakeFirstOrThrow();
      const sessionRow = await app.gatehouse.db
        .selectFrom('sessions')
        .select('id')
        .where('uuid', '=', sid(alice.token))
        .executeTakeFirstOrThrow();
      const before = await acmeState();
      for (const n of [row.id, row.id - 1, row.id + 1, 0, 1]) {
        assertProblem(await call(app, 'GET', `/api/v1/organizations/${n}`, alice.token), 404, 'NOT_FOUND');
        assertProblem(await call(app, 'DELETE', `/api/v1/organizations/${n}`, alice.token), 404, 'NOT_FOUND');
        assertProblem(
          await call(app, 'PATCH', `${acmeUrl}/members/${alice.id}`, alice.token, { role: 'viewer' }),
          404,
          'NOT_FOUND',
        );
        assertProblem(await call(app, 'DELETE', `${acmeUrl}/members/${carol.id}`, alice.token), 404, 'NOT_FOUND');
      }
      for (const n of [sessionRow.id, sessionRow.id + 1, sessionRow.id - 1]) {
        assertProblem(await call(app, 'DELETE', `/api/v1/sessions/${n}`, bob.token), 404, 'NOT_FOUND');
      }
      assert.deepEqual(await acmeState(), before);
      assert.equal((await call(app, 'GET', '/api/v1/me', alice.token)).statusCode, 200, "Alice's session still live");
    });
  });
});
