import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createSuperuser } from '../../src/flows/admin.ts';
import { lockoutSubject } from '../../src/infra/lockout.ts';
import { json, newUser, startApp, uniqueName } from '../helpers.ts';
import { recordFailures } from '../support/lockout.ts';
import { assertProblem } from '../support/problem.ts';

type Body = Record<string, unknown>;
interface Page {
  items: Body[];
  next_cursor: string | null;
}

const CLI = { ip: null, userAgent: 'test' };

describe('administration API', () => {
  let app: FastifyInstance;
  let admin: { id: number; uuid: string; username: string; password: string; token: string };

  before(async () => {
    app = await startApp({
      REQUIRE_EMAIL_VERIFICATION: 'false',
      LOCKOUT_THRESHOLD: '3',
      REDIS_KEY_PREFIX: `t:${uniqueName('admin')}:`,
    });
    const input = newUser();
    const created = await createSuperuser(app.gatehouse, input, CLI);
    admin = { id: created.id, uuid: created.uuid, username: input.username, password: input.password, token: '' };
    admin.token = await login(input.username, input.password);
  });
  after(() => app.close());

  async function login(username: string, password: string): Promise<string> {
    const res = await loginResponse(username, password);
    assert.equal(res.statusCode, 200, res.body);
    return String(json(res).access_token);
  }

  function loginResponse(username: string, password: string) {
    return app.inject({ method: 'POST', url: '/api/v1/login', payload: { username, password } });
  }

  async function register(overrides: Record<string, unknown> = {}) {
    const user = newUser(overrides);
    const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(res.statusCode, 201, res.body);
    return { ...user, uuid: String(json(res).uuid), id: Number(json(res).id) };
  }

  const get = (url: string, token = admin.token) =>
    app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  const patch = (uuid: string, payload: unknown, token = admin.token) =>
    app.inject({
      method: 'PATCH',
      url: `/api/v1/admin/users/${uuid}`,
      headers: { authorization: `Bearer ${token}` },
      payload: payload as Body,
    });

  describe('access', () => {
    const routes = [
      ['GET', '/api/v1/admin/users'],
      ['GET', '/api/v1/admin/audit-logs'],
      ['GET', '/api/v1/admin/login-attempts'],
      ['PATCH', '/api/v1/admin/users/123e4567-e89b-12d3-a456-426614174000'],
    ] as const;

    test('without a bearer token every admin route answers 401 UNAUTHORIZED', async () => {
      for (const [method, url] of routes) {
        const res = await app.inject({ method, url, payload: method === 'PATCH' ? { is_active: false } : undefined });
        assertProblem(res, 401, 'UNAUTHORIZED');
        assert.equal(res.headers['www-authenticate'], 'Bearer');
      }
    });

    test('a signed-in user who is not a superuser gets 403 FORBIDDEN, and nothing changes', async () => {
      const user = await register();
      const token = await login(user.username, user.password);
      for (const [method, url] of routes) {
        const res = await app.inject({
          method,
          url: method === 'PATCH' ? `/api/v1/admin/users/${admin.uuid}` : url,
          headers: { authorization: `Bearer ${token}` },
          payload: method === 'PATCH' ? { is_active: false } : undefined,
        });
        assertProblem(res, 403, 'FORBIDDEN');
      }
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select('is_active')
        .where('id', '=', admin.id)
        .executeTakeFirstOrThrow();
      assert.equal(row.is_active, true);
    });

    test('a garbage token answers 401 TOKEN_INVALID', async () => {
      assertProblem(await get('/api/v1/admin/users', 'not.a.jwt'), 401, 'TOKEN_INVALID');
    });
  });

  describe('GET /api/v1/admin/users', () => {
    const tag = uniqueName('findme');
    const made: string[] = [];

    before(async () => {
      for (let i = 0; i < 5; i++)
        made.push((await register({ username: `${tag}_${i}`, email: `${tag}_${i}@example.com` })).uuid);
    });

    test('search finds users by part of the username or email; pages follow next_cursor without repeats', async () => {
      const seen: string[] = [];
      let url = `/api/v1/admin/users?search=${tag.toUpperCase()}&limit=2`;
      for (let pageNo = 0; pageNo < 5; pageNo++) {
        const res = await get(url);
        assert.equal(res.statusCode, 200, res.body);
        const page = json<Page>(res);
        assert.ok(page.items.length <= 2);
        seen.push(...page.items.map((u) => String(u.uuid)));
        if (page.next_cursor === null) break;
        url = `/api/v1/admin/users?search=${tag}&limit=2&cursor=${encodeURIComponent(page.next_cursor)}`;
      }
      assert.deepEqual([...seen].sort(), [...made].sort());
      assert.equal(new Set(seen).size, 5);
      // Newest first.
      assert.deepEqual(seen, [...made].reverse());
    });

    test('a user registered with a full name shows it', async () => {
      const user = await register({ name: 'Ada Lovelace' });
      const [item] = json<Page>(await get(`/api/v1/admin/users?search=${user.username}`)).items;
      assert.equal(item?.name, 'Ada Lovelace');
    });

    test('each user carries the documented fields and never a password hash', async () => {
      const res = await get(`/api/v1/admin/users?search=${tag}_0`);
      const [user] = json<Page>(res).items;
      assert.deepEqual(Object.keys(user ?? {}).sort(), [
        'app_metadata',
        'created_at',
        'email',
        'email_verified',
        'first_name',
        'id',
        'is_active',
        'is_superuser',
        'language_code',
        'last_login_at',
        'last_name',
        'name',
        'user_metadata',
        'username',
        'uuid',
      ]);
      assert.equal(user?.username, `${tag}_0`);
      assert.equal(user?.is_superuser, false);
      assert.doesNotMatch(res.body, /argon2/);
    });

    test('search treats % and _ literally', async () => {
      const res = await get(`/api/v1/admin/users?search=${encodeURIComponent('%')}`);
      assert.equal(res.statusCode, 200);
      assert.deepEqual(json<Page>(res).items, []);
    });

    test('a cursor this API did not issue, and a limit out of range, answer 422 VALIDATION_ERROR; a non-number limit 400', async () => {
      const cursor = assertProblem(await get('/api/v1/admin/users?cursor=bogus'), 422, 'VALIDATION_ERROR');
      assert.equal((cursor.errors as Body[])[0]?.field, 'cursor');
      assertProblem(await get('/api/v1/admin/users?limit=0'), 422, 'VALIDATION_ERROR');
      assertProblem(await get('/api/v1/admin/users?limit=101'), 422, 'VALIDATION_ERROR');
      assertProblem(await get('/api/v1/admin/users?limit=ten'), 400, 'MALFORMED_REQUEST');
    });
  });

  describe('PATCH /api/v1/admin/users/{uuid}', () => {
    test('is_active false disables the account, revokes its tokens at once, and is audited', async () => {
      const user = await register();
      const token = await login(user.username, user.password);
      assert.equal((await get('/api/v1/me', token)).statusCode, 200);

      const res = await patch(user.uuid, { is_active: false });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(json(res).is_active, false);
      assert.equal(json(res).uuid, user.uuid);

      assertProblem(await get('/api/v1/me', token), 401, 'TOKEN_INVALID');
      assertProblem(await loginResponse(user.username, user.password), 403, 'ACCOUNT_DISABLED');
      const audit = await app.gatehouse.db
        .selectFrom('audit_logs')
        .selectAll()
        .where('action', '=', 'admin_user_updated')
        .where('user_id', '=', user.id)
        .executeTakeFirstOrThrow();
      const details = audit.details as { by_user_id: number; via: string; applied: Body };
      assert.equal(details.by_user_id, admin.id);
      assert.equal(details.via, 'api');
      assert.equal(details.applied.is_active, false);
      assert.equal(details.applied.sessions_revoked, 1);

      const enabled = await patch(user.uuid, { is_active: true });
      assert.equal(json(enabled).is_active, true);
      await login(user.username, user.password);
    });

    test('unlock: true lifts the login lockout of the account, from every source', async () => {
      const user = await register();
      const { lockout } = app.gatehouse;
      const subject = lockoutSubject(user, user.username);
      for (const source of ['untrusted', 'session:0f4b2c2e-1111-4222-8333-444455556666'] as const) {
        await recordFailures(lockout, subject, lockout.threshold, source);
        assert.equal((await lockout.check(subject, source)).locked, true);
      }

      const res = await patch(user.uuid, { unlock: true });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal((await lockout.check(subject, 'untrusted')).locked, false);
      assert.equal((await lockout.check(subject, 'session:0f4b2c2e-1111-4222-8333-444455556666')).locked, false);
      await login(user.username, user.password);
      const audit = await app.gatehouse.db
        .selectFrom('audit_logs')
        .select('details')
        .where('action', '=', 'admin_user_updated')
        .where('user_id', '=', user.id)
        .executeTakeFirstOrThrow();
      assert.equal((audit.details as { applied: Body }).applied.unlocked, true);
      const unlocked = await app.gatehouse.db
        .selectFrom('audit_logs')
        .select('details')
        .where('action', '=', 'account_unlocked')
        .where('user_id', '=', user.id)
        .executeTakeFirstOrThrow();
      assert.equal((unlocked.details as Body).via, 'api');
      assert.equal(typeof (unlocked.details as Body).by_user_id, 'number');
    });

    test('bad requests: nothing to change 422, wrong type 400, unknown or malformed uuid 404, disabling oneself 409', async () => {
      const user = await register();
      assertProblem(await patch(user.uuid, {}), 422, 'VALIDATION_ERROR');
      assertProblem(await patch(user.uuid, { is_staff: true }), 422, 'VALIDATION_ERROR');
      assertProblem(await patch(user.uuid, { is_active: 'no' }), 400, 'MALFORMED_REQUEST');
      assertProblem(await patch('123e4567-e89b-12d3-a456-426614174999', { is_active: false }), 404, 'NOT_FOUND');
      assertProblem(await patch('not-a-uuid', { is_active: false }), 404, 'NOT_FOUND');
      assertProblem(await patch(admin.uuid, { is_active: false }), 409, 'CONFLICT');
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select(['is_superuser', 'is_active'])
        .where('id', '=', user.id)
        .executeTakeFirstOrThrow();
      assert.equal(row.is_superuser, false, 'unknown fields are never applied');
      assert.equal(row.is_active, true);
    });
  });

  describe('GET /api/v1/admin/audit-logs and /login-attempts', () => {
    test('audit logs filter by action and since, newest first, with user uuids', async () => {
      const since = new Date(Date.now() - 1000).toISOString();
      const user = await register();
      const res = await get(`/api/v1/admin/audit-logs?action=user_registration&since=${since}&limit=100`);
      assert.equal(res.statusCode, 200, res.body);
      const page = json<Page>(res);
      assert.ok(page.items.every((row) => row.action === 'user_registration'));
      assert.ok(page.items.every((row) => Date.parse(String(row.created_at)) >= Date.parse(since)));
      const mine = page.items.find((row) => row.user_uuid === user.uuid);
      assert.ok(mine, 'the new registration is listed');
      assert.deepEqual(Object.keys(mine).sort(), [
        'action',
        'created_at',
        'details',
        'id',
        'ip_address',
        'organization_uuid',
        'user_agent',
        'user_uuid',
      ]);
      const future = await get(`/api/v1/admin/audit-logs?since=${new Date(Date.now() + 60_000).toISOString()}`);
      assert.deepEqual(json<Page>(future).items, []);
    });

    test('an unparsable since answers 422 VALIDATION_ERROR naming the field', async () => {
      const body = assertProblem(await get('/api/v1/admin/audit-logs?since=yesterday'), 422, 'VALIDATION_ERROR');
      assert.equal((body.errors as Body[])[0]?.field, 'since');
      assertProblem(await get('/api/v1/admin/login-attempts?since=2025-13-45'), 422, 'VALIDATION_ERROR');
    });

    test('login attempts filter by since, identifier and success', async () => {
      const since = new Date(Date.now() - 1000).toISOString();
      const user = await register();
      await loginResponse(user.username, 'Wrong-password-1!');
      await login(user.username, user.password);
      const res = await get(`/api/v1/admin/login-attempts?since=${since}&identifier=${user.username.toUpperCase()}`);
      assert.equal(res.statusCode, 200, res.body);
      const items = json<Page>(res).items;
      assert.deepEqual(
        items.map((a) => [a.success, a.failure_reason]),
        [
          [true, null],
          [false, 'invalid_password'],
        ],
      );
      assert.ok(items.every((a) => a.user_uuid === user.uuid));
      const failures = await get(`/api/v1/admin/login-attempts?identifier=${user.username}&success=false`);
      assert.equal(json<Page>(failures).items.length, 1);
    });

    test('every admin read is itself audited with its filters', async () => {
      await get('/api/v1/admin/login-attempts?success=true&limit=1');
      const rows = await app.gatehouse.db
        .selectFrom('audit_logs')
        .select(['action', 'details'])
        .where('user_id', '=', admin.id)
        .where('action', 'in', ['admin_users_viewed', 'admin_audit_logs_viewed', 'admin_login_attempts_viewed'])
        .orderBy('id', 'desc')
        .execute();
      assert.deepEqual(
        new Set(rows.map((r) => r.action)),
        new Set(['admin_users_viewed', 'admin_audit_logs_viewed', 'admin_login_attempts_viewed']),
      );
      assert.deepEqual((rows[0]?.details as { filters?: Body } | undefined)?.filters, { success: true, limit: 1 });
    });

    test('a query parameter the route does not know, NUL included, reads fine and stays out of the audit row', async () => {
      for (const path of ['/api/v1/admin/audit-logs', '/api/v1/admin/users', '/api/v1/admin/login-attempts']) {
        const res = await get(`${path}?limit=2&%2A%5EB=%00&other=x`);
        assert.equal(res.statusCode, 200, `${path}: ${res.body}`);
      }
      const [row] = await app.gatehouse.db
        .selectFrom('audit_logs')
        .select(['action', 'details'])
        .where('user_id', '=', admin.id)
        .where('action', '=', 'admin_login_attempts_viewed')
        .orderBy('id', 'desc')
        .limit(1)
        .execute();
      assert.deepEqual((row?.details as { filters?: Body } | undefined)?.filters, { limit: 2 });
    });
  });

  test('the admin routes are in the OpenAPI document under the administration tag', async () => {
    const doc = json<{ paths: Record<string, Record<string, { tags?: string[] }>> }>(
      await app.inject({ url: '/openapi.json' }),
    );
    for (const [path, method] of [
      ['/api/v1/admin/users', 'get'],
      ['/api/v1/admin/users/{uuid}', 'patch'],
      ['/api/v1/admin/audit-logs', 'get'],
      ['/api/v1/admin/login-attempts', 'get'],
    ] as const) {
      assert.deepEqual(doc.paths[path]?.[method]?.tags, ['administration'], path);
    }
  });
});
