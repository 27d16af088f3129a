import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, startApp, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import { addMember, type Body, call, createOrganization, type SignedIn, signUp } from './org-helpers.ts';

type Actor = 'admin' | 'user' | 'viewer' | 'non-member' | 'anonymous';
const ACTORS: readonly Actor[] = ['admin', 'user', 'viewer', 'non-member', 'anonymous'];

/** A fresh organization per cell, so that what one cell changes cannot decide another. */
interface Fixture {
  org: Body;
  /** A viewer the member endpoints act on. */
  target: SignedIn;
  /** A pending invitation to an address nobody uses. */
  invitation: Body;
  /** The acting user's own pending invitation (see the accept row). */
  actorInvitationToken: string | undefined;
  /** A custom role nobody holds. */
  role: string;
}

interface Row {
  endpoint: string;
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: (f: Fixture) => string;
  body?: (f: Fixture) => unknown;
  expect: Record<Actor, number>;
}

const org = (f: Fixture, rest = '') => `/api/v1/organizations/${String(f.org.uuid)}${rest}`;

/** admin, user, viewer, non-member, anonymous. */
const statuses = (...s: [number, number, number, number, number]): Record<Actor, number> =>
  Object.fromEntries(ACTORS.map((a, i) => [a, s[i]])) as Record<Actor, number>;

const MATRIX: Row[] = [
  {
    endpoint: 'GET /organizations',
    method: 'GET',
    path: () => '/api/v1/organizations',
    expect: statuses(200, 200, 200, 200, 401),
  },
  {
    endpoint: 'POST /organizations',
    method: 'POST',
    path: () => '/api/v1/organizations',
    body: () => ({ name: `Matrix ${uniqueName()}` }),
    expect: statuses(201, 201, 201, 201, 401),
  },
  {
    endpoint: 'GET /organizations/{uuid}',
    method: 'GET',
    path: (f) => org(f),
    expect: statuses(200, 200, 200, 404, 401),
  },
  {
    endpoint: 'PATCH /organizations/{uuid}',
    method: 'PATCH',
    path: (f) => org(f),
    body: () => ({ name: `Renamed ${uniqueName()}` }),
    expect: statuses(200, 403, 403, 404, 401),
  },
  {
    endpoint: 'DELETE /organizations/{uuid}',
    method: 'DELETE',
    path: (f) => org(f),
    expect: statuses(204, 403, 403, 404, 401),
  },
  {
    endpoint: 'GET /organizations/{uuid}/members',
    method: 'GET',
    path: (f) => org(f, '/members'),
    expect: statuses(200, 200, 200, 404, 401),
  },
  {
    endpoint: 'PATCH /organizations/{uuid}/members/{user_uuid}',
    method: 'PATCH',
    path: (f) => org(f, `/members/${f.target.uuid}`),
    body: () => ({ role: 'user' }),
    expect: statuses(200, 403, 403, 404, 401),
  },
  {
    endpoint: 'DELETE /organizations/{uuid}/members/{user_uuid}',
    method: 'DELETE',
    path: (f) => org(f, `/members/${f.target.uuid}`),
    expect: statuses(204, 403, 403, 404, 401),
  },
  {
    endpoint: 'POST /organizations/{uuid}/invitations',
    method: 'POST',
    path: (f) => org(f, '/invitations'),
    body: () => ({ email: `${uniqueName()}@example.com`, role: 'viewer' }),
    expect: statuses(201, 403, 403, 404, 401),
  },
  {
    endpoint: 'GET /organizations/{uuid}/invitations',
    method: 'GET',
    path: (f) => org(f, '/invitations'),
    expect: statuses(200, 403, 403, 404, 401),
  },
  {
    endpoint: 'DELETE /organizations/{uuid}/invitations/{invitation_uuid}',
    method: 'DELETE',
    path: (f) => org(f, `/invitations/${String(f.invitation.uuid)}`),
    expect: statuses(204, 403, 403, 404, 401),
  },
  {
    endpoint: 'GET /organizations/{uuid}/audit-logs',
    method: 'GET',
    path: (f) => org(f, '/audit-logs'),
    expect: statuses(200, 403, 403, 404, 401),
  },
  {
    endpoint: 'GET /organizations/{uuid}/roles',
    method: 'GET',
    path: (f) => org(f, '/roles'),
    expect: statuses(200, 200, 200, 404, 401),
  },
  {
    endpoint: 'POST /organizations/{uuid}/roles',
    method: 'POST',
    path: (f) => org(f, '/roles'),
    body: () => ({ name: uniqueName('role'), permissions: ['members:read'] }),
    expect: statuses(201, 403, 403, 404, 401),
  },
  {
    endpoint: 'PATCH /organizations/{uuid}/roles/{name}',
    method: 'PATCH',
    path: (f) => org(f, `/roles/${f.role}`),
    body: () => ({ permissions: ['organization:read', 'resources:read'] }),
    expect: statuses(200, 403, 403, 404, 401),
  },
  {
    endpoint: 'DELETE /organizations/{uuid}/roles/{name}',
    method: 'DELETE',
    path: (f) => org(f, `/roles/${f.role}`),
    expect: statuses(204, 403, 403, 404, 401),
  },
  // The acting user was invited before joining: members are already in (409); the non-member joins (200).
  {
    endpoint: 'POST /invitations/accept (own invitation)',
    method: 'POST',
    path: () => '/api/v1/invitations/accept',
    body: (f) => ({ token: f.actorInvitationToken ?? 'x'.repeat(43) }),
    expect: statuses(409, 409, 409, 200, 401),
  },
];

const CODES: Record<number, string> = { 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT' };

describe('organization endpoints × roles', () => {
  let app: FastifyInstance;
  let owner: SignedIn;
  const users = {} as Record<Exclude<Actor, 'anonymous'>, SignedIn>;

  before(async () => {
    app = await startApp({
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      RATE_LIMIT_INVITATIONS: '100000/1h',
      // Every cell invites the same actors again: the caps of docs/organizations.md are tested elsewhere.
      INVITATION_LIMIT_PER_ADDRESS: '100000/24h',
      INVITATION_LIMIT_PER_ORGANIZATION: '100000/24h',
    });
    owner = await signUp(app);
    for (const actor of ['admin', 'user', 'viewer', 'non-member'] as const) users[actor] = await signUp(app);
  });
  after(() => app.close());

  async function fixture(actor: Actor): Promise<Fixture> {
    const created = await createOrganization(app, owner.token, `Cell ${uniqueName()}`);
    const target = await signUp(app);
    await addMember(app, String(created.uuid), target.id, 'viewer');
    const invite = async (email: string) => {
      const res = await call(app, 'POST', `/api/v1/organizations/${String(created.uuid)}/invitations`, owner.token, {
        email,
        role: 'user',
      });
      assert.equal(res.statusCode, 201, res.body);
      const mail = await app.gatehouse.db
        .selectFrom('email_outbox')
        .select('text_body')
        .where('to_address', '=', email)
        .where('template', '=', 'invitation')
        .orderBy('id', 'desc')
        .executeTakeFirstOrThrow();
      return { invitation: json(res), token: /accept-invitation\?token=([A-Za-z0-9_-]+)/.exec(mail.text_body)?.[1] };
    };
    const { invitation } = await invite(`${uniqueName()}@example.com`);
    let actorInvitationToken: string | undefined;
    if (actor !== 'anonymous') {
      actorInvitationToken = (await invite(users[actor].email)).token;
      if (actor !== 'non-member') await addMember(app, String(created.uuid), users[actor].id, actor);
    }
    const role = uniqueName('role');
    const res = await call(app, 'POST', `/api/v1/organizations/${String(created.uuid)}/roles`, owner.token, {
      name: role,
      permissions: ['organization:read'],
    });
    assert.equal(res.statusCode, 201, res.body);
    return { org: created, target, invitation, actorInvitationToken, role };
  }

  /** What a refused request must leave untouched. */
  async function snapshot(f: Fixture) {
    const db = app.gatehouse.db;
    const organization = await db
      .selectFrom('organizations')
      .select(['name', 'slug'])
      .where('uuid', '=', String(f.org.uuid))
      .executeTakeFirst();
    const members = await db
      .selectFrom('memberships')
      .innerJoin('organizations', 'organizations.id', 'memberships.organization_id')
      .innerJoin('roles', 'roles.id', 'memberships.role_id')
      .innerJoin('users', 'users.id', 'memberships.user_id')
      .select(['users.uuid', 'roles.name'])
      .where('organizations.uuid', '=', String(f.org.uuid))
      .orderBy('users.uuid')
      .execute();
    const invitations = await db
      .selectFrom('invitations')
      .select(['uuid', 'revoked_at', 'accepted_at'])
      .where('organization_id', '=', db.selectFrom('organizations').select('id').where('uuid', '=', String(f.org.uuid)))
      .orderBy('uuid')
      .execute();
    const roles = await db
      .selectFrom('roles')
      .select(['name', 'permissions'])
      .where('organization_id', '=', db.selectFrom('organizations').select('id').where('uuid', '=', String(f.org.uuid)))
      .orderBy('name')
      .execute();
    return { organization, members, invitations, roles };
  }

  for (const row of MATRIX) {
    for (const actor of ACTORS) {
      const status = row.expect[actor];
      test(`${row.endpoint} as ${actor} → ${status}`, async () => {
        const f = await fixture(actor);
        const before = await snapshot(f);
        const token = actor === 'anonymous' ? undefined : users[actor].token;
        const res = await call(app, row.method, row.path(f), token, row.body?.(f));
        const code = CODES[status];
        if (code) {
          assertProblem(res, status, code);
          assert.deepEqual(await snapshot(f), before, 'a refused request changed the organization');
        } else {
          assert.equal(res.statusCode, status, res.body);
        }
      });
    }
  }

  test('the matrix covers every organization route the OpenAPI document lists', async () => {
    const spec = json<{ paths: Record<string, Record<string, unknown>> }>(
      await app.inject({ method: 'GET', url: '/openapi.json' }),
    );
    const documented = Object.entries(spec.paths)
      .filter(([path]) => /^\/api\/v1\/(organizations|invitations)/.test(path))
      .flatMap(([path, operations]) =>
        Object.keys(operations).map((m) => `${m.toUpperCase()} ${path.slice('/api/v1'.length)}`),
      );
    const covered = MATRIX.map((r) => r.endpoint.replace(/ \(.*\)$/, ''));
    assert.equal(documented.length, 17);
    assert.deepEqual([...new Set(covered)].sort(), documented.sort());
  });
});
