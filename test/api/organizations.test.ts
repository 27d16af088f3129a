import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { DEFAULT_ROLE_PERMISSIONS } from '../../src/domain/roles.ts';
import { json, startApp, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import { addMember, auditRows, type Body, call, createOrganization, type SignedIn, signUp } from './org-helpers.ts';

describe('organizations', () => {
  let app: FastifyInstance;
  let alice: SignedIn;
  let bob: SignedIn;
  let carol: SignedIn;

  before(async () => {
    app = await startApp({ REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    [alice, bob, carol] = await Promise.all([signUp(app), signUp(app), signUp(app)]);
  });
  after(() => app.close());

  const orgUrl = (org: Body, rest = '') => `/api/v1/organizations/${String(org.uuid)}${rest}`;

  test('POST /organizations answers 201 with the organization and makes the caller its admin', async () => {
    const name = `Acme ${uniqueName()}`;
    const res = await call(app, 'POST', '/api/v1/organizations', alice.token, { name: `  ${name} ` });
    assert.equal(res.statusCode, 201, res.body);
    const body = json(res);
    assert.deepEqual(Object.keys(body).sort(), [
      'created_at',
      'name',
      'require_mfa',
      'role',
      'slug',
      'updated_at',
      'uuid',
    ]);
    assert.equal(body.require_mfa, false);
    assert.equal(body.name, name);
    assert.equal(body.slug, name.toLowerCase().replace(/[^a-z0-9]+/g, '-'));
    assert.equal(body.role, 'admin');
    assert.match(String(body.uuid), /^[0-9a-f-]{36}$/);
    assert.match(String(body.created_at), /Z$/);

    const db = app.gatehouse.db;
    const org = await db
      .selectFrom('organizations')
      .selectAll()
      .where('uuid', '=', String(body.uuid))
      .executeTakeFirstOrThrow();
    const roles = await db
      .selectFrom('roles')
      .select(['id', 'name', 'permissions'])
      .where('organization_id', '=', org.id)
      .orderBy('name')
      .execute();
    assert.deepEqual(
      roles.map((r) => [r.name, [...r.permissions].sort()]),
      (['admin', 'user', 'viewer'] as const).map((n) => [n, [...DEFAULT_ROLE_PERMISSIONS[n]].sort()]),
    );
    const membership = await db
      .selectFrom('memberships')
      .select('role_id')
      .where('organization_id', '=', org.id)
      .where('user_id', '=', alice.id)
      .executeTakeFirstOrThrow();
    assert.equal(membership.role_id, roles.find((r) => r.name === 'admin')?.id);
    const audit = await auditRows(app, String(body.uuid), 'organization_created');
    assert.equal(audit.length, 1);
    assert.equal(audit[0]?.user_id, alice.id);
    assert.equal((audit[0]!.details as Body).slug, body.slug);
  });

  test('slugs are unique: the same name again gets -2, then -3; accents and symbols are folded', async () => {
    const base = uniqueName('Same');
    const first = await createOrganization(app, alice.token, base);
    const second = await createOrganization(app, bob.token, base);
    const third = await createOrganization(app, carol.token, base.toUpperCase());
    const slug = base.toLowerCase().replaceAll('_', '-');
    assert.deepEqual([first.slug, second.slug, third.slug], [slug, `${slug}-2`, `${slug}-3`]);
    const accented = await createOrganization(app, alice.token, `Ünïcödé & Çö ${base}!`);
    assert.equal(accented.slug, `unicode-co-${slug}`);
  });

  test('concurrent creations with one name all succeed with distinct slugs', async () => {
    const name = uniqueName('Race');
    const results = await Promise.all(
      [alice, bob, carol, alice].map((u) => call(app, 'POST', '/api/v1/organizations', u.token, { name })),
    );
    assert.deepEqual(
      results.map((r) => r.statusCode),
      [201, 201, 201, 201],
    );
    const slugs = results.map((r) => String(json(r).slug));
    assert.equal(new Set(slugs).size, 4);
  });

  test('an invalid name answers 422 VALIDATION_ERROR naming the field; a wrong type 400', async () => {
    for (const name of ['', '   ', 'x'.repeat(101), 'bad\u0007name', 'nul\u0000byte']) {
      const body = assertProblem(
        await call(app, 'POST', '/api/v1/organizations', alice.token, { name }),
        422,
        'VALIDATION_ERROR',
      );
      assert.equal((body.errors as Body[])[0]?.field, 'name');
    }
    assertProblem(await call(app, 'POST', '/api/v1/organizations', alice.token, {}), 422, 'VALIDATION_ERROR');
    assertProblem(
      await call(app, 'POST', '/api/v1/organizations', alice.token, { name: 42 }),
      400,
      'MALFORMED_REQUEST',
    );
    assertProblem(await call(app, 'POST', '/api/v1/organizations', alice.token, '[1]'), 400, 'MALFORMED_REQUEST');
  });

  test("GET /organizations lists exactly the caller's organizations, each with the caller's role", async () => {
    const dave = await signUp(app);
    const own = await createOrganization(app, dave.token, `Own ${uniqueName()}`);
    const other = await createOrganization(app, alice.token, `Other ${uniqueName()}`);
    await addMember(app, String(other.uuid), dave.id, 'viewer');
    await createOrganization(app, alice.token, `Not Dave's ${uniqueName()}`);
    const res = await call(app, 'GET', '/api/v1/organizations', dave.token);
    assert.equal(res.statusCode, 200, res.body);
    const list = json<Body[]>(res);
    assert.deepEqual(
      list.map((o) => [o.uuid, o.role]).sort(),
      [
        [own.uuid, 'admin'],
        [other.uuid, 'viewer'],
      ].sort(),
    );
  });

  test('a member reads the organization; a non-member, an unknown and a malformed uuid all get 404', async () => {
    const org = await createOrganization(app, alice.token, `Read ${uniqueName()}`);
    await addMember(app, String(org.uuid), bob.id, 'viewer');
    const res = await call(app, 'GET', orgUrl(org), bob.token);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(json(res).role, 'viewer');
    assert.equal(json(res).slug, org.slug);
    assertProblem(await call(app, 'GET', orgUrl(org), carol.token), 404, 'NOT_FOUND');
    assertProblem(await call(app, 'GET', `/api/v1/organizations/${randomUUID()}`, alice.token), 404, 'NOT_FOUND');
    for (const bad of ['not-a-uuid', '1', `${org.uuid}x`, "'; drop table users; --"]) {
      assertProblem(
        await call(app, 'GET', `/api/v1/organizations/${encodeURIComponent(bad)}`, alice.token),
        404,
        'NOT_FOUND',
      );
      assertProblem(
        await call(app, 'GET', `/api/v1/organizations/${encodeURIComponent(bad)}/members`, alice.token),
        404,
        'NOT_FOUND',
      );
    }
    // Upper-case uuids name the same organization.
    assert.equal((await call(app, 'GET', orgUrl({ uuid: String(org.uuid).toUpperCase() }), bob.token)).statusCode, 200);
  });

  test('PATCH renames; the slug follows the name, audited as organization_updated', async () => {
    const name = `Before ${uniqueName()}`;
    const org = await createOrganization(app, alice.token, name);
    const newName = `After ${uniqueName()}`;
    const res = await call(app, 'PATCH', orgUrl(org), alice.token, { name: newName });
    assert.equal(res.statusCode, 200, res.body);
    const body = json(res);
    assert.equal(body.name, newName);
    assert.equal(body.slug, newName.toLowerCase().replace(/[^a-z0-9]+/g, '-'));
    assert.equal(body.uuid, org.uuid);
    const audit = await auditRows(app, String(org.uuid), 'organization_updated');
    assert.equal(audit.length, 1);
    assert.deepEqual((audit[0]!.details as Body).to, { name: newName, slug: body.slug });
    assert.deepEqual((audit[0]!.details as Body).from, { name, slug: org.slug });

    // Same stem: the slug stays, even a suffixed one.
    const base = uniqueName('Stem');
    await createOrganization(app, bob.token, base);
    const suffixed = await createOrganization(app, alice.token, base);
    const recased = json(await call(app, 'PATCH', orgUrl(suffixed), alice.token, { name: base.toUpperCase() }));
    assert.equal(recased.slug, suffixed.slug);
    assert.equal(recased.name, base.toUpperCase());

    // Renaming onto a taken stem takes the next free suffix.
    const taken = await createOrganization(app, bob.token, `Taken ${uniqueName()}`);
    const moved = json(await call(app, 'PATCH', orgUrl(org), alice.token, { name: String(taken.name) }));
    assert.equal(moved.slug, `${taken.slug}-2`);

    // Nothing to change: 200, no audit row.
    assert.equal((await call(app, 'PATCH', orgUrl(org), alice.token, {})).statusCode, 200);
    assert.equal((await auditRows(app, String(org.uuid), 'organization_updated')).length, 2);
  });

  test('PATCH refuses unknown fields and bad names with 422, wrong types with 400', async () => {
    const org = await createOrganization(app, alice.token, `Strict ${uniqueName()}`);
    const body = assertProblem(
      await call(app, 'PATCH', orgUrl(org), alice.token, { slug: 'mine', name: 'Fine' }),
      422,
      'VALIDATION_ERROR',
    );
    assert.deepEqual(
      (body.errors as Body[]).map((e) => e.field),
      ['slug'],
    );
    assertProblem(await call(app, 'PATCH', orgUrl(org), alice.token, { name: '' }), 422, 'VALIDATION_ERROR');
    assertProblem(await call(app, 'PATCH', orgUrl(org), alice.token, { name: null }), 400, 'MALFORMED_REQUEST');
    const unchanged = json(await call(app, 'GET', orgUrl(org), alice.token));
    assert.equal(unchanged.name, org.name);
  });

  test('DELETE removes the organization with its roles, memberships and invitations, audited', async () => {
    const org = await createOrganization(app, alice.token, `Doomed ${uniqueName()}`);
    await addMember(app, String(org.uuid), bob.id, 'user');
    const invite = await call(app, 'POST', orgUrl(org, '/invitations'), alice.token, {
      email: `${uniqueName()}@example.com`,
      role: 'viewer',
    });
    assert.equal(invite.statusCode, 201, invite.body);
    const db = app.gatehouse.db;
    const { id } = await db
      .selectFrom('organizations')
      .select('id')
      .where('uuid', '=', String(org.uuid))
      .executeTakeFirstOrThrow();

    const res = await call(app, 'DELETE', orgUrl(org), alice.token);
    assert.equal(res.statusCode, 204, res.body);
    assert.equal(res.body, '');
    for (const table of ['roles', 'memberships', 'invitations'] as const) {
      const rows = await db.selectFrom(table).select('id').where('organization_id', '=', id).execute();
      assert.equal(rows.length, 0, table);
    }
    assertProblem(await call(app, 'GET', orgUrl(org), alice.token), 404, 'NOT_FOUND');
    assertProblem(await call(app, 'GET', orgUrl(org), bob.token), 404, 'NOT_FOUND');
    const audit = await db
      .selectFrom('audit_logs')
      .selectAll()
      .where('action', '=', 'organization_deleted')
      .where('organization_id', '=', id)
      .execute();
    assert.equal(audit.length, 1);
    assert.equal((audit[0]!.details as Body).uuid, org.uuid);
    assert.equal(audit[0]?.user_id, alice.id);
  });

  describe('members', () => {
    test('GET members lists every member with role; PATCH changes a role, audited as member_role_changed', async () => {
      const org = await createOrganization(app, alice.token, `Team ${uniqueName()}`);
      await addMember(app, String(org.uuid), bob.id, 'viewer');
      const list = json<Body[]>(await call(app, 'GET', orgUrl(org, '/members'), bob.token));
      assert.deepEqual(
        list.map((m) => [m.user_uuid, m.username, m.email, m.role]),
        [
          [alice.uuid, alice.username, alice.email, 'admin'],
          [bob.uuid, bob.username, bob.email, 'viewer'],
        ],
      );
      assert.deepEqual(Object.keys(list[0] as Body).sort(), [
        'email',
        'first_name',
        'joined_at',
        'last_name',
        'role',
        'user_uuid',
        'username',
      ]);

      const res = await call(app, 'PATCH', orgUrl(org, `/members/${bob.uuid}`), alice.token, { role: 'user' });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(json(res).role, 'user');
      assert.equal(json(res).user_uuid, bob.uuid);
      assert.equal(json(await call(app, 'GET', orgUrl(org), bob.token)).role, 'user');
      const audit = await auditRows(app, String(org.uuid), 'member_role_changed');
      assert.equal(audit.length, 1);
      assert.deepEqual(audit[0]?.details, { member_uuid: bob.uuid, from: 'viewer', to: 'user' });
      assert.equal(audit[0]?.user_id, alice.id);

      // The same role again changes nothing and writes no audit row.
      assert.equal(
        (await call(app, 'PATCH', orgUrl(org, `/members/${bob.uuid}`), alice.token, { role: 'user' })).statusCode,
        200,
      );
      assert.equal((await auditRows(app, String(org.uuid), 'member_role_changed')).length, 1);
    });

    test('a bad role answers 422 VALIDATION_ERROR on the role field; unknown members 404', async () => {
      const org = await createOrganization(app, alice.token, `Roles ${uniqueName()}`);
      await addMember(app, String(org.uuid), bob.id, 'viewer');
      const url = orgUrl(org, `/members/${bob.uuid}`);
      for (const role of ['owner', 'ADMIN', '', ' admin']) {
        const body = assertProblem(await call(app, 'PATCH', url, alice.token, { role }), 422, 'VALIDATION_ERROR');
        assert.deepEqual(
          (body.errors as Body[]).map((e) => e.field),
          ['role'],
        );
        assert.match(String((body.errors as Body[])[0]?.message), /admin, user, viewer/);
      }
      assertProblem(await call(app, 'PATCH', url, alice.token, {}), 422, 'VALIDATION_ERROR');
      assertProblem(await call(app, 'PATCH', url, alice.token, { role: 3 }), 400, 'MALFORMED_REQUEST');
      for (const target of [randomUUID(), carol.uuid, 'nope']) {
        assertProblem(
          await call(app, 'PATCH', orgUrl(org, `/members/${target}`), alice.token, { role: 'user' }),
          404,
          'NOT_FOUND',
        );
        assertProblem(await call(app, 'DELETE', orgUrl(org, `/members/${target}`), alice.token), 404, 'NOT_FOUND');
      }
    });

    test('the last admin can be neither demoted nor removed nor leave: 409 CONFLICT', async () => {
      const org = await createOrganization(app, alice.token, `Last ${uniqueName()}`);
      await addMember(app, String(org.uuid), bob.id, 'user');
      const self = orgUrl(org, `/members/${alice.uuid}`);
      const demote = assertProblem(await call(app, 'PATCH', self, alice.token, { role: 'user' }), 409, 'CONFLICT');
      assert.match(String(demote.detail), /last admin/);
      const leave = assertProblem(await call(app, 'DELETE', self, alice.token), 409, 'CONFLICT');
      assert.match(String(leave.detail), /last admin/);
      assertProblem(await call(app, 'DELETE', self, bob.token), 403, 'FORBIDDEN');

      // With a second admin, one may step down, and then the other is the last again.
      await call(app, 'PATCH', orgUrl(org, `/members/${bob.uuid}`), alice.token, { role: 'admin' });
      assert.equal((await call(app, 'PATCH', self, alice.token, { role: 'viewer' })).statusCode, 200);
      const bobSelf = orgUrl(org, `/members/${bob.uuid}`);
      assertProblem(await call(app, 'PATCH', bobSelf, bob.token, { role: 'user' }), 409, 'CONFLICT');
      assertProblem(await call(app, 'DELETE', bobSelf, bob.token), 409, 'CONFLICT');
      const admins = json<Body[]>(await call(app, 'GET', orgUrl(org, '/members'), bob.token)).filter(
        (m) => m.role === 'admin',
      );
      assert.deepEqual(
        admins.map((m) => m.user_uuid),
        [bob.uuid],
      );
    });

    test('two admins demoting each other at once leave exactly one admin', async () => {
      const org = await createOrganization(app, alice.token, `Duel ${uniqueName()}`);
      await addMember(app, String(org.uuid), bob.id, 'admin');
      const [a, b] = await Promise.all([
        call(app, 'PATCH', orgUrl(org, `/members/${bob.uuid}`), alice.token, { role: 'viewer' }),
        call(app, 'PATCH', orgUrl(org, `/members/${alice.uuid}`), bob.token, { role: 'viewer' }),
      ]);
      // The second, checked again under the organization lock, is no longer an admin.
      assert.deepEqual([a.statusCode, b.statusCode].sort(), [200, 403]);
      const roles = await sql<{ admins: number }>`
        select count(*)::int as admins from memberships m join roles r on r.id = m.role_id
        join organizations o on o.id = m.organization_id where o.uuid = ${String(org.uuid)} and r.name = 'admin'`.execute(
        app.gatehouse.db,
      );
      assert.equal(roles.rows[0]?.admins, 1);
    });

    test('two admins removing each other at once leave exactly one admin', async () => {
      const org = await createOrganization(app, alice.token, `Duel2 ${uniqueName()}`);
      await addMember(app, String(org.uuid), bob.id, 'admin');
      const [a, b] = await Promise.all([
        call(app, 'DELETE', orgUrl(org, `/members/${bob.uuid}`), alice.token),
        call(app, 'DELETE', orgUrl(org, `/members/${alice.uuid}`), bob.token),
      ]);
      // The loser was removed before its own request could act: it is no longer a member (404).
      assert.deepEqual([a.statusCode, b.statusCode].sort(), [204, 404]);
      const members = json<Body[]>(
        await call(app, 'GET', orgUrl(org, '/members'), a.statusCode === 204 ? alice.token : bob.token),
      );
      assert.deepEqual(
        members.map((m) => m.role),
        ['admin'],
      );
    });

    test('an admin removes a member; any member may leave; both audited as member_removed', async () => {
      const org = await createOrganization(app, alice.token, `Exit ${uniqueName()}`);
      await addMember(app, String(org.uuid), bob.id, 'viewer');
      await addMember(app, String(org.uuid), carol.id, 'user');
      const left = await call(app, 'DELETE', orgUrl(org, `/members/${bob.uuid}`), bob.token);
      assert.equal(left.statusCode, 204, left.body);
      assertProblem(await call(app, 'GET', orgUrl(org), bob.token), 404, 'NOT_FOUND');
      const removed = await call(app, 'DELETE', orgUrl(org, `/members/${carol.uuid}`), alice.token);
      assert.equal(removed.statusCode, 204, removed.body);
      assertProblem(await call(app, 'GET', orgUrl(org), carol.token), 404, 'NOT_FOUND');
      const audit = await auditRows(app, String(org.uuid), 'member_removed');
      assert.deepEqual(
        audit.map((a) => [a.user_id, a.details]),
        [
          [bob.id, { member_uuid: bob.uuid, role: 'viewer', left: true }],
          [alice.id, { member_uuid: carol.uuid, role: 'user', left: false }],
        ],
      );
    });
  });

  describe('audit logs', () => {
    test('admins page through the organization trail newest first, filtered by action', async () => {
      const org = await createOrganization(app, alice.token, `Trail ${uniqueName()}`);
      await addMember(app, String(org.uuid), bob.id, 'viewer');
      await call(app, 'PATCH', orgUrl(org), alice.token, { name: `Trail 2 ${uniqueName()}` });
      await call(app, 'PATCH', orgUrl(org, `/members/${bob.uuid}`), alice.token, { role: 'user' });

      const all = await call(app, 'GET', orgUrl(org, '/audit-logs'), alice.token);
      assert.equal(all.statusCode, 200, all.body);
      const items = json<{ items: Body[]; next_cursor: string | null }>(all);
      assert.deepEqual(
        items.items.map((i) => i.action),
        ['member_role_changed', 'organization_updated', 'organization_created'],
      );
      assert.equal(items.next_cursor, null);
      const first = items.items[0] as Body;
      assert.deepEqual(Object.keys(first).sort(), [
        'action',
        'created_at',
        'details',
        'id',
        'ip_address',
        'organization_uuid',
        'user_agent',
        'user_uuid',
      ]);
      assert.equal(first.user_uuid, alice.uuid);
      assert.equal(first.organization_uuid, org.uuid);

      const page1 = json<{ items: Body[]; next_cursor: string }>(
        await call(app, 'GET', orgUrl(org, '/audit-logs?limit=2'), alice.token),
      );
      assert.equal(page1.items.length, 2);
      assert.equal(typeof page1.next_cursor, 'string');
      const page2 = json<{ items: Body[]; next_cursor: string | null }>(
        await call(app, 'GET', orgUrl(org, `/audit-logs?limit=2&cursor=${page1.next_cursor}`), alice.token),
      );
      assert.deepEqual(
        page2.items.map((i) => i.action),
        ['organization_created'],
      );
      assert.equal(page2.next_cursor, null);

      const filtered = json<{ items: Body[] }>(
        await call(app, 'GET', orgUrl(org, '/audit-logs?action=organization_updated'), alice.token),
      );
      assert.deepEqual(
        filtered.items.map((i) => i.action),
        ['organization_updated'],
      );
      const since = json<{ items: Body[] }>(
        await call(app, 'GET', orgUrl(org, '/audit-logs?since=2999-01-01T00:00:00Z'), alice.token),
      );
      assert.deepEqual(since.items, []);
    });

    test('bad audit-log queries answer problem+json, never 500', async () => {
      const org = await createOrganization(app, alice.token, `Query ${uniqueName()}`);
      for (const query of ['limit=0', 'limit=201', 'cursor=bm9wZQ', 'since=yesterday']) {
        assertProblem(
          await call(app, 'GET', orgUrl(org, `/audit-logs?${query}`), alice.token),
          422,
          'VALIDATION_ERROR',
        );
      }
      assertProblem(
        await call(app, 'GET', orgUrl(org, '/audit-logs?limit=ten'), alice.token),
        400,
        'MALFORMED_REQUEST',
      );
    });
  });

  test('every change writes its audit row: created, updated, invited, accepted, role changed, removed, deleted', async () => {
    const invitee = await signUp(app);
    const org = await createOrganization(app, alice.token, `Audited ${uniqueName()}`);
    await call(app, 'PATCH', orgUrl(org), alice.token, { name: `Audited 2 ${uniqueName()}` });
    const invited = await call(app, 'POST', orgUrl(org, '/invitations'), alice.token, {
      email: invitee.email,
      role: 'viewer',
    });
    assert.equal(invited.statusCode, 201, invited.body);
    const mail = await app.gatehouse.db
      .selectFrom('email_outbox')
      .select('text_body')
      .where('to_address', '=', invitee.email)
      .where('template', '=', 'invitation')
      .executeTakeFirstOrThrow();
    const token = /accept-invitation\?token=([A-Za-z0-9_-]+)/.exec(mail.text_body)?.[1];
    assert.ok(token);
    assert.equal((await call(app, 'POST', '/api/v1/invitations/accept', invitee.token, { token })).statusCode, 200);
    await call(app, 'PATCH', orgUrl(org, `/members/${invitee.uuid}`), alice.token, { role: 'user' });
    await call(app, 'DELETE', orgUrl(org, `/members/${invitee.uuid}`), alice.token);
    const { id } = await app.gatehouse.db
      .selectFrom('organizations')
      .select('id')
      .where('uuid', '=', String(org.uuid))
      .executeTakeFirstOrThrow();
    assert.equal((await call(app, 'DELETE', orgUrl(org), alice.token)).statusCode, 204);
    const actions = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select(['action', 'user_id'])
      .where('organization_id', '=', id)
      .orderBy('id')
      .execute();
    assert.deepEqual(
      actions.map((a) => [a.action, a.user_id]),
      [
        ['organization_created', alice.id],
        ['organization_updated', alice.id],
        ['member_invited', alice.id],
        ['invitation_accepted', invitee.id],
        ['member_role_changed', alice.id],
        ['member_removed', alice.id],
        ['organization_deleted', alice.id],
      ],
    );
  });

  test('every membership points at a role row of its own organization, and each has the three roles', async () => {
    const rows = await sql<{ n: number }>`
      select count(*)::int as n from memberships m join roles r on r.id = m.role_id
      where r.organization_id <> m.organization_id`.execute(app.gatehouse.db);
    assert.equal(rows.rows[0]?.n, 0);
    const orphans = await sql<{ n: number }>`
      select count(*)::int as n from organizations o
      where o.id in (select organization_id from memberships where user_id = ${alice.id})
      and (select count(*) from roles r where r.organization_id = o.id and r.name in ('admin', 'user', 'viewer')) <> 3`.execute(
      app.gatehouse.db,
    );
    assert.equal(orphans.rows[0]?.n, 0);
  });
});
