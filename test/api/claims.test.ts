import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import { sql } from 'kysely';
import type { DatabaseHandle } from '../../src/db/index.ts';
import type { ClaimsHookContext } from '../../src/infra/claims.ts';
import { gatehouse } from '../../src/plugin.ts';
import { json, logCapture, newUser, testConfig, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import {
  bearer,
  createAccount,
  login,
  loginRequest,
  refreshRequest,
  startAuthApp,
  type TestAccount,
  type Tokens,
  testDatabase,
} from './auth-helpers.ts';

let database: DatabaseHandle;
before(async () => {
  database = await testDatabase();
});
after(() => database.close());

/** Registers with an organization of its own (the caller is its admin); returns the account and the organization uuid. */
async function accountWithOrganization(app: FastifyInstance): Promise<{ account: TestAccount; org: string }> {
  const name = uniqueName('Org');
  const account = await createAccount(app, { organization_name: name });
  const row = await app.gatehouse.db
    .selectFrom('organizations')
    .select('uuid')
    .where('name', '=', name)
    .executeTakeFirstOrThrow();
  return { account, org: row.uuid };
}

/** Adds the user to the organization with one of its roles, as an accepted invitation would. */
async function addMember(app: FastifyInstance, orgUuid: string, userId: number, role: string): Promise<void> {
  const db = app.gatehouse.db;
  const target = await db
    .selectFrom('roles')
    .innerJoin('organizations', 'organizations.id', 'roles.organization_id')
    .select(['roles.id', 'roles.organization_id'])
    .where('organizations.uuid', '=', orgUuid)
    .where('roles.name', '=', role)
    .executeTakeFirstOrThrow();
  await db
    .insertInto('memberships')
    .values({ user_id: userId, organization_id: target.organization_id, role_id: target.id })
    .execute();
}

/** Makes `count` organizations with the user as a member under `role` (named freely, as custom roles are). */
async function joinOrganizations(app: FastifyInstance, userId: number, count: number, role: string): Promise<void> {
  const tag = uniqueName('cap');
  await sql`with orgs as (
      insert into organizations (name, slug)
      select ${tag} || ' ' || g, ${tag} || '-' || g from generate_series(1, ${count}::int) g returning id
    ), made as (
      insert into roles (organization_id, name, permissions) select id, ${role}, '[]'::jsonb from orgs
      returning id, organization_id
    )
    insert into memberships (user_id, organization_id, role_id) select ${userId}, organization_id, id from made`.execute(
    app.gatehouse.db,
  );
}

async function refreshed(app: FastifyInstance, tokens: Tokens): Promise<Tokens> {
  const res = await refreshRequest(app, tokens.refresh_token);
  assert.equal(res.statusCode, 200, res.body);
  return json<Tokens>(res);
}

const claimsOf = (tokens: Tokens) => decodeJwt(tokens.access_token);

describe('ACCESS_TOKEN_ORG_CLAIMS off (the default)', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startAuthApp({}, { database });
  });
  after(() => app.close());

  test('access tokens carry no orgs claim, at login or refresh', async () => {
    const { account } = await accountWithOrganization(app);
    const tokens = await login(app, account);
    assert.equal('orgs' in claimsOf(tokens), false);
    assert.equal('orgs_truncated' in claimsOf(tokens), false);
    const next = await refreshed(app, tokens);
    assert.equal('orgs' in claimsOf(next), false);
    assert.equal('user_metadata' in claimsOf(next), false);
  });
});

describe('ACCESS_TOKEN_ORG_CLAIMS=true', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startAuthApp({ ACCESS_TOKEN_ORG_CLAIMS: 'true' }, { database });
  });
  after(() => app.close());

  test('login and refresh tokens carry orgs: the role name per organization uuid', async () => {
    const { account, org } = await accountWithOrganization(app);
    const tokens = await login(app, account);
    assert.deepEqual(claimsOf(tokens).orgs, { [org]: 'admin' });
    assert.equal('orgs_truncated' in claimsOf(tokens), false);
    assert.deepEqual(claimsOf(await refreshed(app, tokens)).orgs, { [org]: 'admin' });
  });

  test('a user without organizations gets an empty orgs object', async () => {
    const account = await createAccount(app);
    assert.deepEqual(claimsOf(await login(app, account)).orgs, {});
  });

  test('a role change shows at the next refresh; the earlier access token keeps the old role until it expires', async () => {
    const { account: alice, org } = await accountWithOrganization(app);
    const bob = await createAccount(app);
    await addMember(app, org, bob.id, 'viewer');
    const before = await login(app, bob);
    assert.deepEqual(claimsOf(before).orgs, { [org]: 'viewer' });

    const aliceTokens = await login(app, alice);
    const changed = await app.inject({
      method: 'PATCH',
      url: `/api/v1/organizations/${org}/members/${bob.uuid}`,
      headers: bearer(aliceTokens.access_token),
      payload: { role: 'user' },
    });
    assert.equal(changed.statusCode, 200, changed.body);

    const after = await refreshed(app, before);
    assert.deepEqual(claimsOf(after).orgs, { [org]: 'user' });
    assert.deepEqual(claimsOf(before).orgs, { [org]: 'viewer' });
    // Not revoked by the change: it still works, with its old claim, until it expires.
    const me = await app.inject({ url: '/api/v1/me', headers: bearer(before.access_token) });
    assert.equal(me.statusCode, 200, me.body);
  });

  test('up to 50 organizations are listed; past 50 the claim is left out and orgs_truncated is true', async () => {
    const account = await createAccount(app);
    await joinOrganizations(app, account.id, 50, 'viewer');
    const fifty = claimsOf(await login(app, account));
    assert.equal(Object.keys(fifty.orgs as object).length, 50);
    assert.ok(Object.values(fifty.orgs as object).every((role) => role === 'viewer'));

    await joinOrganizations(app, account.id, 1, 'viewer');
    const tokens = await login(app, account);
    assert.equal('orgs' in claimsOf(tokens), false);
    assert.equal(claimsOf(tokens).orgs_truncated, true);
    const next = await refreshed(app, tokens);
    assert.equal('orgs' in claimsOf(next), false);
    assert.equal(claimsOf(next).orgs_truncated, true);
    // The fallbacks the docs name: GET /me and GET /organizations list every one of them, with the role.
    const me = await app.inject({ url: '/api/v1/me', headers: bearer(tokens.access_token) });
    assert.equal(me.statusCode, 200, me.body);
    assert.equal(json<{ organizations: unknown[] }>(me).organizations.length, 51);
    const listed = await app.inject({ url: '/api/v1/organizations', headers: bearer(tokens.access_token) });
    assert.equal(listed.statusCode, 200, listed.body);
    assert.equal(json<unknown[]>(listed).length, 51);
  });

  test('past 4096 bytes of JSON the claim is left out too, however few organizations', async () => {
    const account = await createAccount(app);
    await joinOrganizations(app, account.id, 30, `role-${'x'.repeat(120)}`);
    const tokens = await login(app, account);
    assert.equal('orgs' in claimsOf(tokens), false);
    assert.equal(claimsOf(tokens).orgs_truncated, true);
  });
});

describe('ACCESS_TOKEN_METADATA_CLAIMS=true', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startAuthApp({ ACCESS_TOKEN_METADATA_CLAIMS: 'true' }, { database });
  });
  after(() => app.close());

  test('access tokens carry user_metadata and app_metadata; a change shows at the next refresh', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    assert.deepEqual(claimsOf(tokens).user_metadata, {});
    assert.deepEqual(claimsOf(tokens).app_metadata, {});
    assert.equal('orgs' in claimsOf(tokens), false);

    const patched = await app.inject({
      method: 'PATCH',
      url: '/api/v1/me',
      headers: bearer(tokens.access_token),
      payload: { user_metadata: { theme: 'dark' } },
    });
    assert.equal(patched.statusCode, 200, patched.body);
    await app.gatehouse.setAppMetadata(account.uuid, { plan: 'pro' });

    const next = await refreshed(app, tokens);
    assert.deepEqual(claimsOf(next).user_metadata, { theme: 'dark' });
    assert.deepEqual(claimsOf(next).app_metadata, { plan: 'pro' });
    assert.deepEqual(claimsOf(await login(app, account)).app_metadata, { plan: 'pro' });
  });
});

describe('the claims hook', () => {
  let app: FastifyInstance;
  const seen: ClaimsHookContext[] = [];
  let behaviour: 'answer' | 'throw' | 'array' = 'answer';
  const logs = logCapture();

  before(async () => {
    app = await startAuthApp(
      { ACCESS_TOKEN_ORG_CLAIMS: 'true' },
      {
        database,
        logger: { level: 'warn', stream: logs.stream },
        claims: async (context) => {
          seen.push(context);
          if (behaviour === 'throw') throw new Error('tenant service down');
          if (behaviour === 'array') return [] as unknown as Record<string, unknown>;
          return {
            tenant: `t-${context.user.uuid.slice(0, 8)}`,
            plan: { tier: 'pro' },
            sub: 'someone-else',
            exp: 4_102_444_800,
            sid: 'other',
            email: 'forged@example.com',
            orgs: { forged: 'admin' },
            amr: ['hwk'],
          };
        },
      },
    );
  });
  after(() => app.close());

  test('its claims are merged into access tokens at login and refresh, not into refresh tokens', async () => {
    const { account, org } = await accountWithOrganization(app);
    seen.length = 0;
    const tokens = await login(app, account);
    const access = claimsOf(tokens);
    assert.equal(access.tenant, `t-${account.uuid.slice(0, 8)}`);
    assert.deepEqual(access.plan, { tier: 'pro' });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.user.uuid, account.uuid);
    assert.equal(seen[0]?.user.id, account.id);
    assert.equal(seen[0]?.user.email, account.email);
    assert.equal(seen[0]?.session.uuid, access.sid);
    assert.deepEqual(seen[0]?.session.amr, ['pwd']);
    assert.equal('tenant' in decodeJwt(tokens.refresh_token), false);

    const next = claimsOf(await refreshed(app, tokens));
    assert.equal(next.tenant, access.tenant);
    assert.equal(seen.length, 2);
    assert.equal(seen[1]?.session.uuid, access.sid);
    assert.deepEqual(next.orgs, { [org]: 'admin' });
  });

  test('it cannot replace registered claims: its sub, exp, sid, email, amr and orgs are dropped and logged', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const access = claimsOf(tokens);
    assert.equal(access.sub, account.uuid);
    assert.equal(access.email, account.email);
    assert.deepEqual(access.amr, ['pwd']);
    assert.deepEqual(access.orgs, {});
    assert.notEqual(access.sid, 'other');
    assert.equal(access.exp, (access.iat as number) + 30 * 60);
    // The token still works: its session is the real one.
    const me = await app.inject({ url: '/api/v1/me', headers: bearer(tokens.access_token) });
    assert.equal(me.statusCode, 200, me.body);
    assert.ok(logs.lines.some((line) => line.includes('claims hook returned registered claims')));
  });

  test('a hook that throws fails login with 503 CLAIMS_HOOK_FAILED and starts no session', async () => {
    const account = await createAccount(app);
    behaviour = 'throw';
    try {
      const res = await loginRequest(app, account.username, account.password);
      assertProblem(res, 503, 'CLAIMS_HOOK_FAILED');
      assert.equal(res.body.includes('tenant service down'), false);
    } finally {
      behaviour = 'answer';
    }
    const sessions = await app.gatehouse.db
      .selectFrom('sessions')
      .select('id')
      .where('user_id', '=', account.id)
      .execute();
    assert.equal(sessions.length, 0);
    await login(app, account);
  });

  test('a hook that throws or answers a non-object fails refresh with 503, and the refresh token stays good', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    for (const failing of ['throw', 'array'] as const) {
      behaviour = failing;
      try {
        assertProblem(await refreshRequest(app, tokens.refresh_token), 503, 'CLAIMS_HOOK_FAILED');
      } finally {
        behaviour = 'answer';
      }
    }
    // Not spent, so not a reuse: the same token refreshes once the hook answers.
    const next = await refreshed(app, tokens);
    assert.equal(typeof claimsOf(next).tenant, 'string');
  });
});

describe('the claims hook and setAppMetadata of the plugin mounted in a host application', () => {
  let host: FastifyInstance;

  before(async () => {
    host = Fastify({ logger: false, pluginTimeout: 120_000 });
    await host.register(gatehouse, {
      config: testConfig({ REDIS_KEY_PREFIX: `t:${uniqueName('claims')}:`, ACCESS_TOKEN_METADATA_CLAIMS: 'true' }),
      database,
      prefix: '/auth',
      docs: false,
      metrics: false,
      pages: false,
      claims: ({ user }) => ({ tenant: user.email.split('@')[1] }),
    });
    await host.ready();
  });
  after(() => host.close());

  test("the host's claims and app_metadata reach the access token", async () => {
    const user = newUser();
    const created = await host.inject({ method: 'POST', url: '/auth/register', payload: user });
    assert.equal(created.statusCode, 201, created.body);
    const uuid = String(json(created).uuid);
    await host.gatehouse.db
      .updateTable('users')
      .set({ email_verified_at: new Date() })
      .where('uuid', '=', uuid)
      .execute();
    const view = await host.gatehouse.setAppMetadata(uuid, { plan: 'enterprise', seats: 10 });
    assert.deepEqual(view.app_metadata, { plan: 'enterprise', seats: 10 });

    const res = await host.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { username: user.username, password: user.password },
    });
    assert.equal(res.statusCode, 200, res.body);
    const access = decodeJwt(String(json(res).access_token));
    assert.equal(access.tenant, String(user.email).split('@')[1]);
    assert.deepEqual(access.app_metadata, { plan: 'enterprise', seats: 10 });
  });

  test('setAppMetadata refuses what the admin API refuses', async () => {
    await assert.rejects(host.gatehouse.setAppMetadata('0f4b2c2e-1111-4222-8333-444455556666', {}), {
      code: 'NOT_FOUND',
    });
    const user = newUser();
    const created = await host.inject({ method: 'POST', url: '/auth/register', payload: user });
    const uuid = String(json(created).uuid);
    await assert.rejects(host.gatehouse.setAppMetadata(uuid, ['x'] as unknown as Record<string, unknown>), {
      code: 'VALIDATION_ERROR',
    });
  });
});
