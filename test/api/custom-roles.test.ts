import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { DEFAULT_ROLE_PERMISSIONS, PERMISSIONS } from '../../src/domain/roles.ts';
import gatehouse, { requireOrgPermission, requireOrgRole, requirePermission } from '../../src/plugin.ts';
import { json, testConfig, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import { addMember, auditRows, type Body, call, createOrganization, type SignedIn, signUp } from './org-helpers.ts';

/** What a member of a custom role may do on Gatehouse's own routes and on the host's. */
describe('custom roles per organization', () => {
  let app: FastifyInstance;
  let owner: SignedIn;
  /** Declaring a host route guarded by an undeclared permission, after Gatehouse was registered. */
  let undeclaredRouteError: unknown;

  before(async () => {
    app = Fastify({ logger: false, pluginTimeout: 120_000 });
    await app.register(gatehouse, {
      config: testConfig({
        REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
        RATE_LIMIT_INVITATIONS: '100000/1h',
        INVITATION_LIMIT_PER_ADDRESS: '100000/24h',
        INVITATION_LIMIT_PER_ORGANIZATION: '100000/24h',
      }),
      permissions: ['scans:start', 'scans:start', 'members:read'],
    });
    app.post('/api/v1/organizations/:uuid/scans', { onRequest: requirePermission('scans:start') }, async (request) => ({
      role: request.membership.role,
    }));
    app.get('/api/v1/organizations/:uuid/reports', { onRequest: requireOrgRole('user') }, async (request) => ({
      role: request.membership.role,
    }));
    app.get(
      '/api/v1/organizations/:uuid/resources',
      { preHandler: requireOrgPermission('resources:read') },
      async (request) => ({ role: request.membership.role }),
    );
    try {
      app.get(
        '/api/v1/organizations/:uuid/exports',
        { onRequest: requirePermission('reports:export') },
        async () => ({}),
      );
    } catch (error) {
      undeclaredRouteError = error;
    }
    await app.ready();
    owner = await signUp(app);
  });
  after(() => app?.close());

  // Every test makes its own organization, so that what one creates stays out of another's assertions.
  const roles = (o: Body, rest = '') => `/api/v1/organizations/${String(o.uuid)}/roles${rest}`;
  const newOrg = () => createOrganization(app, owner.token, `Roles ${uniqueName()}`);
  const createRole = async (o: Body, name: string, permissions: string[], token = owner.token) => {
    const res = await call(app, 'POST', roles(o), token, { name, permissions });
    assert.equal(res.statusCode, 201, res.body);
    return json(res);
  };
  /** A signed-in member of `o` holding `role`. */
  const memberWith = async (o: Body, role: string) => {
    const member = await signUp(app);
    await addMember(app, String(o.uuid), member.id, role);
    return member;
  };
  const invitationToken = async (email: string) => {
    const mail = await app.gatehouse.db
      .selectFrom('email_outbox')
      .select('text_body')
      .where('to_address', '=', email)
      .where('template', '=', 'invitation')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    return /accept-invitation\?token=([A-Za-z0-9_-]{43})/.exec(mail.text_body)?.[1];
  };

  test('POST creates a custom role: 201 {name, permissions, built_in: false}; GET lists built-in then custom', async () => {
    const org = await newOrg();
    const res = await call(app, 'POST', roles(org), owner.token, {
      name: 'auditor',
      permissions: ['organization:read', 'audit:read', 'audit:read'],
    });
    assert.equal(res.statusCode, 201, res.body);
    assert.deepEqual(json(res), { name: 'auditor', permissions: ['organization:read', 'audit:read'], built_in: false });

    const list = await call(app, 'GET', roles(org), owner.token);
    assert.equal(list.statusCode, 200, list.body);
    const body = json<Body[]>(list);
    assert.ok(Array.isArray(body));
    assert.deepEqual(
      body.map((r) => [r.name, r.built_in]),
      [
        ['admin', true],
        ['user', true],
        ['viewer', true],
        ['auditor', false],
      ],
    );
    // The built-in admin holds every permission, the host's declared ones too; user and viewer none of those.
    assert.deepEqual(body[0]?.permissions, [...PERMISSIONS, 'scans:start']);
    assert.deepEqual(body[1]?.permissions, [...DEFAULT_ROLE_PERMISSIONS.user]);
    assert.deepEqual(body[2]?.permissions, [...DEFAULT_ROLE_PERMISSIONS.viewer]);
    assert.deepEqual(body[3], { name: 'auditor', permissions: ['organization:read', 'audit:read'], built_in: false });

    const [created] = await auditRows(app, String(org.uuid), 'role_created');
    assert.deepEqual(created?.details, { role: 'auditor', permissions: ['organization:read', 'audit:read'] });
    assert.equal(created?.user_id, owner.id);
  });

  test('PATCH replaces the permissions (200 role body), DELETE answers 204; both audited', async () => {
    const o = await newOrg();
    await createRole(o, 'support', ['organization:read']);
    const patched = await call(app, 'PATCH', roles(o, '/support'), owner.token, {
      permissions: ['organization:read', 'members:read', 'scans:start'],
    });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.deepEqual(json(patched), {
      name: 'support',
      permissions: ['organization:read', 'members:read', 'scans:start'],
      built_in: false,
    });
    const [updated] = await auditRows(app, String(o.uuid), 'role_updated');
    assert.deepEqual(updated?.details, {
      role: 'support',
      from: ['organization:read'],
      to: ['organization:read', 'members:read', 'scans:start'],
    });

    // A host permission no longer declared, left in the row: an admin still replaces and deletes the role.
    await app.gatehouse.db
      .updateTable('roles')
      .set({ permissions: JSON.stringify(['organization:read', 'members:read', 'scans:start', 'legacy:thing']) })
      .where('name', '=', 'support')
      .where(
        'organization_id',
        '=',
        app.gatehouse.db.selectFrom('organizations').select('id').where('uuid', '=', String(o.uuid)),
      )
      .execute();
    const stale = await call(app, 'PATCH', roles(o, '/support'), owner.token, {
      permissions: ['organization:read', 'members:read', 'scans:start', 'legacy:thing'],
    });
    assertProblem(stale, 422, 'VALIDATION_ERROR');
    const cleaned = await call(app, 'PATCH', roles(o, '/support'), owner.token, {
      permissions: ['organization:read', 'members:read', 'scans:start'],
    });
    assert.equal(cleaned.statusCode, 200, cleaned.body);

    const deleted = await call(app, 'DELETE', roles(o, '/support'), owner.token);
    assert.equal(deleted.statusCode, 204, deleted.body);
    assert.equal(deleted.body, '');
    const names = json<Body[]>(await call(app, 'GET', roles(o), owner.token)).map((r) => r.name);
    assert.deepEqual(names, ['admin', 'user', 'viewer']);
    const [removed] = await auditRows(app, String(o.uuid), 'role_deleted');
    assert.deepEqual(removed?.details, {
      role: 'support',
      permissions: ['organization:read', 'members:read', 'scans:start'],
    });
    assertProblem(await call(app, 'DELETE', roles(o, '/support'), owner.token), 404, 'NOT_FOUND');
  });

  test('bad names and permissions answer 422 VALIDATION_ERROR naming the field; wrong types 400', async () => {
    const o = await newOrg();
    const post = (payload: unknown) => call(app, 'POST', roles(o), owner.token, payload);
    const fieldOf = async (payload: unknown) => {
      const body = assertProblem(await post(payload), 422, 'VALIDATION_ERROR');
      return (body.errors as { field: string; code: string }[]).map((e) => `${e.field}:${e.code}`);
    };
    for (const name of ['Auditor', 'a', '1abc', 'has space', 'x'.repeat(33), 'über', '-lead', 'team.lead', '']) {
      assert.deepEqual(await fieldOf({ name, permissions: [] }), ['name:invalid_value'], name);
    }
    assert.deepEqual(await fieldOf({ name: 'ok-name', permissions: ['nope:x'] }), ['permissions:invalid_value']);
    assert.deepEqual(await fieldOf({ name: 'ok-name', permissions: ['members:read', 'Members:Read'] }), [
      'permissions:invalid_value',
    ]);
    assert.deepEqual(await fieldOf({ name: 'ok-name', permissions: ['reports:export'] }), [
      'permissions:invalid_value',
    ]);
    assert.deepEqual(await fieldOf({ name: 'Bad', permissions: ['nope:x'] }), [
      'name:invalid_value',
      'permissions:invalid_value',
    ]);
    const missing = assertProblem(await post({ permissions: [] }), 422, 'VALIDATION_ERROR');
    assert.equal((missing.errors as { field: string }[])[0]?.field, 'name');
    const noPermissions = assertProblem(await post({ name: 'ok-name' }), 422, 'VALIDATION_ERROR');
    assert.equal((noPermissions.errors as { field: string }[])[0]?.field, 'permissions');
    assertProblem(await post({ name: 'ok-name', permissions: 'members:read' }), 400, 'MALFORMED_REQUEST');
    assertProblem(await post({ name: 12, permissions: [] }), 400, 'MALFORMED_REQUEST');
    assertProblem(await post({ name: 'ok-name', permissions: [1] }), 400, 'MALFORMED_REQUEST');

    await createRole(o, 'editor', ['organization:read']);
    const patch = (name: string, payload: unknown) => call(app, 'PATCH', roles(o, `/${name}`), owner.token, payload);
    const unknown = assertProblem(await patch('editor', { permissions: ['nope:x'] }), 422, 'VALIDATION_ERROR');
    assert.equal((unknown.errors as { field: string }[])[0]?.field, 'permissions');
    const rename = assertProblem(
      await patch('editor', { name: 'other', permissions: ['organization:read'] }),
      422,
      'VALIDATION_ERROR',
    );
    assert.equal((rename.errors as { field: string }[])[0]?.field, 'name');
    const none = assertProblem(await patch('editor', {}), 422, 'VALIDATION_ERROR');
    assert.equal((none.errors as { field: string }[])[0]?.field, 'permissions');
    assertProblem(await patch('editor', { permissions: 'organization:read' }), 400, 'MALFORMED_REQUEST');
    // Nothing was changed by the refusals.
    const editor = json<Body[]>(await call(app, 'GET', roles(o), owner.token)).find((r) => r.name === 'editor');
    assert.deepEqual(editor?.permissions, ['organization:read']);
    assert.equal((await auditRows(app, String(o.uuid), 'role_updated')).length, 0);
  });

  test('a name taken by a built-in or custom role is 409 ROLE_EXISTS', async () => {
    const o = await newOrg();
    for (const name of ['admin', 'user', 'viewer']) {
      assertProblem(await call(app, 'POST', roles(o), owner.token, { name, permissions: [] }), 409, 'ROLE_EXISTS');
    }
    await createRole(o, 'billing', ['organization:read']);
    assertProblem(
      await call(app, 'POST', roles(o), owner.token, { name: 'billing', permissions: ['members:read'] }),
      409,
      'ROLE_EXISTS',
    );
    // Another organization may use the same name.
    await createRole(await newOrg(), 'billing', []);
    assert.equal((await auditRows(app, String(o.uuid), 'role_created')).length, 1);
  });

  test('unknown roles are 404 NOT_FOUND; built-in roles cannot be changed or deleted (403 ROLE_BUILT_IN)', async () => {
    const o = await newOrg();
    for (const name of ['ghost', 'NOT-A-NAME', '%20', 'x'.repeat(40)]) {
      assertProblem(await call(app, 'PATCH', roles(o, `/${name}`), owner.token, { permissions: [] }), 404, 'NOT_FOUND');
      assertProblem(await call(app, 'DELETE', roles(o, `/${name}`), owner.token), 404, 'NOT_FOUND');
    }
    // The role is judged before the body.
    assertProblem(
      await call(app, 'PATCH', roles(o, '/ghost'), owner.token, { permissions: ['nope:x'] }),
      404,
      'NOT_FOUND',
    );
    assertProblem(await call(app, 'PATCH', roles(o, '/admin'), owner.token, {}), 403, 'ROLE_BUILT_IN');
    for (const name of ['admin', 'user', 'viewer']) {
      assertProblem(
        await call(app, 'PATCH', roles(o, `/${name}`), owner.token, { permissions: ['organization:read'] }),
        403,
        'ROLE_BUILT_IN',
      );
      assertProblem(await call(app, 'DELETE', roles(o, `/${name}`), owner.token), 403, 'ROLE_BUILT_IN');
    }
    const names = json<Body[]>(await call(app, 'GET', roles(o), owner.token)).map((r) => r.name);
    assert.deepEqual(names, ['admin', 'user', 'viewer']);
  });

  test('a role a member or a pending invitation holds cannot be deleted: 409 ROLE_IN_USE', async () => {
    const o = await newOrg();
    await createRole(o, 'analyst', ['organization:read', 'members:read']);
    const member = await memberWith(o, 'viewer');
    const memberUrl = `/api/v1/organizations/${String(o.uuid)}/members/${member.uuid}`;
    assert.equal((await call(app, 'PATCH', memberUrl, owner.token, { role: 'analyst' })).statusCode, 200);
    const inUse = assertProblem(await call(app, 'DELETE', roles(o, '/analyst'), owner.token), 409, 'ROLE_IN_USE');
    assert.equal(inUse.members, 1);
    assert.equal((await call(app, 'PATCH', memberUrl, owner.token, { role: 'viewer' })).statusCode, 200);

    const email = `${uniqueName()}@example.com`;
    const invited = await call(app, 'POST', `/api/v1/organizations/${String(o.uuid)}/invitations`, owner.token, {
      email,
      role: 'analyst',
    });
    assert.equal(invited.statusCode, 201, invited.body);
    assert.equal(json(invited).role, 'analyst');
    const pending = assertProblem(await call(app, 'DELETE', roles(o, '/analyst'), owner.token), 409, 'ROLE_IN_USE');
    assert.equal(pending.pending_invitations, 1);

    const invitationUuid = String(json(invited).uuid);
    const revoked = await call(
      app,
      'DELETE',
      `/api/v1/organizations/${String(o.uuid)}/invitations/${invitationUuid}`,
      owner.token,
    );
    assert.equal(revoked.statusCode, 204);
    assert.equal((await call(app, 'DELETE', roles(o, '/analyst'), owner.token)).statusCode, 204);
    // The revoked invitation stays (the invitation caps count it), without a role.
    const row = await app.gatehouse.db
      .selectFrom('invitations')
      .select(['role_id', 'revoked_at'])
      .where('uuid', '=', invitationUuid)
      .executeTakeFirstOrThrow();
    assert.equal(row.role_id, null);
    assert.ok(row.revoked_at);
    assert.equal((await auditRows(app, String(o.uuid), 'role_deleted')).length, 1);
  });

  test('a member is given a custom role by the member endpoint; unknown role names are 422 on role', async () => {
    const o = await newOrg();
    await createRole(o, 'auditor', ['organization:read', 'audit:read']);
    const member = await memberWith(o, 'viewer');
    const memberUrl = `/api/v1/organizations/${String(o.uuid)}/members/${member.uuid}`;
    const res = await call(app, 'PATCH', memberUrl, owner.token, { role: 'auditor' });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(json(res).role, 'auditor');
    const [changed] = await auditRows(app, String(o.uuid), 'member_role_changed');
    assert.deepEqual(changed?.details, { member_uuid: member.uuid, from: 'viewer', to: 'auditor' });

    for (const role of ['ghost', 'Auditor', 'owner']) {
      const bad = assertProblem(await call(app, 'PATCH', memberUrl, owner.token, { role }), 422, 'VALIDATION_ERROR');
      const [error] = bad.errors as { field: string; message: string }[];
      assert.equal(error?.field, 'role');
      assert.match(error?.message ?? '', /admin, user, viewer, auditor/);
    }
    // A custom role of another organization is no role here.
    const other = await newOrg();
    await createRole(other, 'foreign', []);
    assertProblem(await call(app, 'PATCH', memberUrl, owner.token, { role: 'foreign' }), 422, 'VALIDATION_ERROR');

    // The role shows wherever the member's roles are listed.
    const members = json<Body[]>(
      await call(app, 'GET', `/api/v1/organizations/${String(o.uuid)}/members`, owner.token),
    );
    assert.equal(members.find((m) => m.user_uuid === member.uuid)?.role, 'auditor');
    const mine = json<Body[]>(await call(app, 'GET', '/api/v1/organizations', member.token));
    assert.deepEqual(
      mine.map((m) => m.role),
      ['auditor'],
    );
    const single = json(await call(app, 'GET', `/api/v1/organizations/${String(o.uuid)}`, member.token));
    assert.equal(single.role, 'auditor');
    const me = json(await call(app, 'GET', '/api/v1/me', member.token));
    assert.deepEqual(
      (me.organizations as Body[]).map((m) => m.role),
      ['auditor'],
    );
  });

  test('an invitation offers a custom role; accepting joins with it', async () => {
    const o = await newOrg();
    await createRole(o, 'guest', ['organization:read']);
    const invitee = await signUp(app);
    const invited = await call(app, 'POST', `/api/v1/organizations/${String(o.uuid)}/invitations`, owner.token, {
      email: invitee.email,
      role: 'guest',
    });
    assert.equal(invited.statusCode, 201, invited.body);
    assert.equal(json(invited).role, 'guest');
    const token = await invitationToken(invitee.email);
    const page = await app.inject(`/accept-invitation?token=${token}`);
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /as the guest role/);
    const accepted = await call(app, 'POST', '/api/v1/invitations/accept', invitee.token, { token });
    assert.equal(accepted.statusCode, 200, accepted.body);
    assert.equal(json(accepted).role, 'guest');
    const bad = assertProblem(
      await call(app, 'POST', `/api/v1/organizations/${String(o.uuid)}/invitations`, owner.token, {
        email: `${uniqueName()}@example.com`,
        role: 'ghost',
      }),
      422,
      'VALIDATION_ERROR',
    );
    assert.equal((bad.errors as { field: string }[])[0]?.field, 'role');
  });

  test('the last admin cannot take a custom role: 409 CONFLICT', async () => {
    const o = await newOrg();
    await createRole(o, 'almost-admin', [...PERMISSIONS]);
    const res = await call(app, 'PATCH', `/api/v1/organizations/${String(o.uuid)}/members/${owner.uuid}`, owner.token, {
      role: 'almost-admin',
    });
    assertProblem(res, 409, 'CONFLICT');
    // Another admin first: then the first one may move to the custom role.
    const second = await memberWith(o, 'admin');
    const moved = await call(
      app,
      'PATCH',
      `/api/v1/organizations/${String(o.uuid)}/members/${owner.uuid}`,
      second.token,
      { role: 'almost-admin' },
    );
    assert.equal(moved.statusCode, 200, moved.body);
    // The custom role is no admin role: the remaining admin is the last one.
    assertProblem(
      await call(app, 'PATCH', `/api/v1/organizations/${String(o.uuid)}/members/${second.uuid}`, second.token, {
        role: 'viewer',
      }),
      409,
      'CONFLICT',
    );
  });

  test('listing needs members:read, managing members:manage; non-members get 404', async () => {
    const o = await newOrg();
    await createRole(o, 'blind', ['organization:read']);
    await createRole(o, 'reader', ['organization:read', 'members:read']);
    const viewer = await memberWith(o, 'viewer');
    const user = await memberWith(o, 'user');
    const blind = await memberWith(o, 'blind');
    const stranger = await signUp(app);
    assert.equal((await call(app, 'GET', roles(o), viewer.token)).statusCode, 200);
    assert.equal((await call(app, 'GET', roles(o), user.token)).statusCode, 200);
    assertProblem(await call(app, 'GET', roles(o), blind.token), 403, 'FORBIDDEN');
    assertProblem(await call(app, 'GET', roles(o), stranger.token), 404, 'NOT_FOUND');
    assertProblem(await call(app, 'GET', roles(o)), 401, 'UNAUTHORIZED');
    for (const token of [viewer.token, user.token]) {
      assertProblem(await call(app, 'POST', roles(o), token, { name: 'mine', permissions: [] }), 403, 'FORBIDDEN');
      assertProblem(await call(app, 'PATCH', roles(o, '/reader'), token, { permissions: [] }), 403, 'FORBIDDEN');
      assertProblem(await call(app, 'DELETE', roles(o, '/reader'), token), 403, 'FORBIDDEN');
    }
    assertProblem(
      await call(app, 'POST', roles(o), stranger.token, { name: 'mine', permissions: [] }),
      404,
      'NOT_FOUND',
    );
    assertProblem(await call(app, 'DELETE', roles(o, '/reader'), stranger.token), 404, 'NOT_FOUND');
  });

  test("a custom role's permissions decide Gatehouse's own routes, and a change applies at the next request", async () => {
    const o = await newOrg();
    await createRole(o, 'inviter', ['organization:read', 'invitations:manage']);
    const member = await memberWith(o, 'inviter');
    const invitations = `/api/v1/organizations/${String(o.uuid)}/invitations`;
    assert.equal((await call(app, 'GET', invitations, member.token)).statusCode, 200);
    assertProblem(
      await call(app, 'GET', `/api/v1/organizations/${String(o.uuid)}/audit-logs`, member.token),
      403,
      'FORBIDDEN',
    );
    assertProblem(
      await call(app, 'GET', `/api/v1/organizations/${String(o.uuid)}/members`, member.token),
      403,
      'FORBIDDEN',
    );
    await call(app, 'PATCH', roles(o, '/inviter'), owner.token, { permissions: ['organization:read', 'members:read'] });
    assertProblem(await call(app, 'GET', invitations, member.token), 403, 'FORBIDDEN');
    assert.equal(
      (await call(app, 'GET', `/api/v1/organizations/${String(o.uuid)}/members`, member.token)).statusCode,
      200,
    );
  });

  test('a custom role that manages members hands out no more than it holds: 403 FORBIDDEN', async () => {
    const o = await newOrg();
    await createRole(o, 'manager', [
      'organization:read',
      'members:read',
      'members:manage',
      'invitations:manage',
      'resources:read',
    ]);
    const manager = await memberWith(o, 'manager');
    const viewer = await memberWith(o, 'viewer');
    // Roles beyond its own: refused.
    assertProblem(
      await call(app, 'POST', roles(o), manager.token, { name: 'snoop', permissions: ['audit:read'] }),
      403,
      'FORBIDDEN',
    );
    const self = `/api/v1/organizations/${String(o.uuid)}/members/${manager.uuid}`;
    assertProblem(await call(app, 'PATCH', self, manager.token, { role: 'admin' }), 403, 'FORBIDDEN');
    assertProblem(
      await call(app, 'PATCH', `/api/v1/organizations/${String(o.uuid)}/members/${owner.uuid}`, manager.token, {
        role: 'viewer',
      }),
      403,
      'FORBIDDEN',
    );
    assertProblem(
      await call(app, 'POST', `/api/v1/organizations/${String(o.uuid)}/invitations`, manager.token, {
        email: `${uniqueName()}@example.com`,
        role: 'admin',
      }),
      403,
      'FORBIDDEN',
    );
    assertProblem(
      await call(app, 'DELETE', `/api/v1/organizations/${String(o.uuid)}/members/${owner.uuid}`, manager.token),
      403,
      'FORBIDDEN',
    );
    // Within its own: allowed.
    const limited = await call(app, 'POST', roles(o), manager.token, { name: 'helper', permissions: ['members:read'] });
    assert.equal(limited.statusCode, 201, limited.body);
    const demoted = await call(
      app,
      'PATCH',
      `/api/v1/organizations/${String(o.uuid)}/members/${viewer.uuid}`,
      manager.token,
      { role: 'helper' },
    );
    assert.equal(demoted.statusCode, 200, demoted.body);
    const members = await app.gatehouse.db
      .selectFrom('memberships')
      .innerJoin('roles', 'roles.id', 'memberships.role_id')
      .select('roles.name')
      .where('memberships.user_id', '=', owner.id)
      .where(
        'roles.organization_id',
        '=',
        app.gatehouse.db.selectFrom('organizations').select('id').where('uuid', '=', String(o.uuid)),
      )
      .execute();
    assert.deepEqual(members, [{ name: 'admin' }]);
  });

  test('host routes: requirePermission passes a custom role iff it holds the permission; admin holds it', async () => {
    const o = await newOrg();
    await createRole(o, 'scanner', ['organization:read', 'scans:start']);
    await createRole(o, 'reader', ['organization:read', 'resources:read']);
    const scanner = await memberWith(o, 'scanner');
    const reader = await memberWith(o, 'reader');
    const user = await memberWith(o, 'user');
    const scans = `/api/v1/organizations/${String(o.uuid)}/scans`;
    const ok = await call(app, 'POST', scans, scanner.token, {});
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(json(ok), { role: 'scanner' });
    assert.equal((await call(app, 'POST', scans, owner.token, {})).statusCode, 200);
    assertProblem(await call(app, 'POST', scans, reader.token, {}), 403, 'FORBIDDEN');
    // The built-in user role holds none of the host's permissions.
    assertProblem(await call(app, 'POST', scans, user.token, {}), 403, 'FORBIDDEN');
    assertProblem(await call(app, 'POST', scans, (await signUp(app)).token, {}), 404, 'NOT_FOUND');
    assertProblem(await call(app, 'POST', scans), 401, 'UNAUTHORIZED');

    const resources = `/api/v1/organizations/${String(o.uuid)}/resources`;
    assert.equal((await call(app, 'GET', resources, reader.token)).statusCode, 200);
    assertProblem(await call(app, 'GET', resources, scanner.token), 403, 'FORBIDDEN');
  });

  test("host routes: requireOrgRole('user') passes a custom role iff it holds every permission of user", async () => {
    const o = await newOrg();
    await createRole(o, 'operator', [...DEFAULT_ROLE_PERMISSIONS.user, 'scans:start']);
    await createRole(
      o,
      'partial',
      DEFAULT_ROLE_PERMISSIONS.user.filter((p) => p !== 'resources:use'),
    );
    const operator = await memberWith(o, 'operator');
    const partial = await memberWith(o, 'partial');
    const reports = `/api/v1/organizations/${String(o.uuid)}/reports`;
    const res = await call(app, 'GET', reports, operator.token);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res), { role: 'operator' });
    assertProblem(await call(app, 'GET', reports, partial.token), 403, 'FORBIDDEN');
    assert.equal((await call(app, 'GET', reports, owner.token)).statusCode, 200);
  });

  test('host permissions: undeclared ones are refused where the route is declared, malformed ones at once', async () => {
    assert.ok(undeclaredRouteError instanceof TypeError);
    assert.match(String(undeclaredRouteError), /"reports:export" is not declared/);
    assert.throws(() => requirePermission('Scans:Start'), /unknown permission "Scans:Start"/);
    assert.throws(() => requirePermission('scans'), /unknown permission "scans"/);
    assert.throws(() => requireOrgPermission('' as never), /unknown permission/);
    // A malformed declaration stops the plugin before it opens anything.
    const bad = Fastify({ logger: false });
    try {
      await assert.rejects(
        (async () => {
          await bad.register(gatehouse, { config: testConfig(), permissions: ['Scans Start'] });
          await bad.ready();
        })(),
        /must be "scope:action"/,
      );
    } finally {
      await bad.close().catch(() => {});
    }
  });

  test('the roles API is in the OpenAPI document', async () => {
    const spec = json<{ paths: Record<string, Record<string, unknown>> }>(await app.inject('/openapi.json'));
    assert.deepEqual(Object.keys(spec.paths['/api/v1/organizations/{uuid}/roles'] ?? {}).sort(), ['get', 'post']);
    assert.deepEqual(Object.keys(spec.paths['/api/v1/organizations/{uuid}/roles/{name}'] ?? {}).sort(), [
      'delete',
      'patch',
    ]);
  });
});
