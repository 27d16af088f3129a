import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import {
  type Body,
  bearer,
  createAccount,
  login,
  loginRequest,
  refreshRequest,
  startAuthApp,
  type TestAccount,
} from './auth-helpers.ts';

describe('the account: /api/v1/me', () => {
  let app: FastifyInstance;

  before(async () => {
    app = await startAuthApp();
  });
  after(() => app.close());

  const get = (token: string) => app.inject({ url: '/api/v1/me', headers: bearer(token) });
  const patch = (token: string, payload: unknown) =>
    app.inject({ method: 'PATCH', url: '/api/v1/me', headers: bearer(token), payload: payload as Body });
  const remove = (token: string, payload?: unknown) =>
    app.inject({
      method: 'DELETE',
      url: '/api/v1/me',
      headers: bearer(token),
      ...(payload === undefined ? {} : { payload: payload as Body }),
    });

  /** Adds `user` to the organization with `role`, by SQL (memberships belong to another flow). */
  async function addMember(orgUuid: string, user: TestAccount, role: 'admin' | 'user' | 'viewer'): Promise<void> {
    const db = app.gatehouse.db;
    const org = await db.selectFrom('organizations').select('id').where('uuid', '=', orgUuid).executeTakeFirstOrThrow();
    const roleRow = await db
      .selectFrom('roles')
      .select('id')
      .where('organization_id', '=', org.id)
      .where('name', '=', role)
      .executeTakeFirstOrThrow();
    await db
      .insertInto('memberships')
      .values({ user_id: user.id, organization_id: org.id, role_id: roleRow.id })
      .execute();
  }

  async function organizationOf(token: string): Promise<string> {
    const orgs = json(await get(token)).organizations as Body[];
    return String(orgs[0]?.uuid);
  }

  test('GET /me answers the registration body without message, plus last_login_at and organizations with roles', async () => {
    const orgName = `Acme ${uniqueName()}`;
    const account = await createAccount(app, { first_name: 'Ada', last_name: 'Lovelace', organization_name: orgName });
    const other = await createAccount(app, { organization_name: `Other ${uniqueName()}` });
    const otherTokens = await login(app, other);
    await addMember(await organizationOf(otherTokens.access_token), account, 'viewer');

    const tokens = await login(app, account);
    const res = await get(tokens.access_token);
    assert.equal(res.statusCode, 200, res.body);
    const body = json(res);
    assert.deepEqual(Object.keys(body).sort(), [
      'app_metadata',
      'created_at',
      'email',
      'email_verified',
      'first_name',
      'id',
      'is_active',
      'language_code',
      'last_login_at',
      'last_name',
      'mfa',
      'name',
      'organizations',
      'user_metadata',
      'username',
      'uuid',
    ]);
    assert.equal(body.id, account.id);
    assert.equal(body.uuid, account.uuid);
    assert.equal(body.email, account.email);
    assert.equal(body.username, account.username);
    assert.equal(body.first_name, 'Ada');
    assert.equal(body.last_name, 'Lovelace');
    assert.equal(body.language_code, 'en');
    assert.equal(body.is_active, true);
    assert.equal(body.email_verified, true);
    assert.match(String(body.created_at), /Z$/);
    assert.match(String(body.last_login_at), /Z$/);
    assert.deepEqual(body.mfa, { totp: false, backup_codes_left: 0 });
    assert.deepEqual(body.user_metadata, {});
    assert.deepEqual(body.app_metadata, {});
    const orgs = body.organizations as Body[];
    assert.equal(orgs.length, 2);
    const mine = orgs.find((o) => o.name === orgName);
    assert.equal(mine?.role, 'admin');
    assert.match(String(mine?.slug), /^acme-/);
    assert.match(String(mine?.uuid), /^[0-9a-f-]{36}$/);
    assert.equal(orgs.find((o) => o.name !== orgName)?.role, 'viewer');
    for (const o of orgs) assert.deepEqual(Object.keys(o).sort(), ['name', 'role', 'slug', 'uuid']);
    assert.equal('password_hash' in body, false);
  });

  test('concurrent GET /me calls share reads yet each answers for its own session; a revoked one is refused', async () => {
    const ada = await createAccount(app, { first_name: 'Ada' });
    const bob = await createAccount(app, { first_name: 'Bob' });
    const [ada1, ada2, bob1, revoked] = await Promise.all([
      login(app, ada),
      login(app, ada),
      login(app, bob),
      login(app, bob),
    ]);
    const logout = await app.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(revoked.access_token) });
    assert.equal(logout.statusCode, 204, logout.body);

    const tokens = [ada1, ada2, bob1, revoked, ada1, bob1].map((t) => t.access_token);
    const answers = await Promise.all(tokens.map((token) => get(token)));
    const seen = answers.map((res) => (res.statusCode === 200 ? json(res).first_name : res.statusCode));
    assert.deepEqual(seen, ['Ada', 'Ada', 'Bob', 401, 'Ada', 'Bob']);
    assertProblem(answers[3] as Awaited<ReturnType<typeof get>>, 401, 'TOKEN_INVALID');
  });

  test('GET /me without a token answers 401 UNAUTHORIZED', async () => {
    const res = await app.inject({ url: '/api/v1/me' });
    assertProblem(res, 401, 'UNAUTHORIZED');
    assert.equal(res.headers['www-authenticate'], 'Bearer');
  });

  test('PATCH /me changes first_name, last_name and language_code and writes user_updated', async () => {
    const account = await createAccount(app, { first_name: 'Old' });
    const tokens = await login(app, account);
    const res = await patch(tokens.access_token, { first_name: '  José ', last_name: 'Núñez', language_code: 'pt-br' });
    assert.equal(res.statusCode, 200, res.body);
    const body = json(res);
    assert.equal(body.first_name, 'José');
    assert.equal(body.last_name, 'Núñez');
    assert.equal(body.language_code, 'pt-BR');
    assert.equal(json(await get(tokens.access_token)).first_name, 'José');
    const cleared = json(await patch(tokens.access_token, { last_name: null }));
    assert.equal(cleared.last_name, null);
    assert.equal(cleared.first_name, 'José');
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'user_updated')
      .where('user_id', '=', account.id)
      .orderBy('id')
      .execute();
    assert.deepEqual(
      audit.map((a) => (a.details as Body).fields),
      [['first_name', 'last_name', 'language_code'], ['last_name']],
    );
    // Nothing changed, nothing recorded.
    assert.equal((await patch(tokens.access_token, { first_name: 'José' })).statusCode, 200);
    assert.equal((await patch(tokens.access_token, {})).statusCode, 200);
    const count = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('id')
      .where('action', '=', 'user_updated')
      .where('user_id', '=', account.id)
      .execute();
    assert.equal(count.length, 2);
  });

  test('PATCH /me refuses any other field with 422 and applies nothing', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    for (const field of ['email', 'username', 'is_superuser', 'is_active', 'id', 'password_hash']) {
      const body = assertProblem(
        await patch(tokens.access_token, { first_name: 'Mallory', [field]: field.startsWith('is_') ? true : 'x' }),
        422,
        'VALIDATION_ERROR',
      );
      assert.deepEqual(
        (body.errors as Body[]).map((e) => e.field),
        [field],
      );
    }
    const row = await app.gatehouse.db
      .selectFrom('users')
      .select(['first_name', 'is_superuser', 'email'])
      .where('id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(row, { first_name: null, is_superuser: false, email: account.email });
  });

  test('PATCH /me with bad values answers 422 per field, wrong types 400', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const body = assertProblem(
      await patch(tokens.access_token, {
        first_name: 'x'.repeat(101),
        last_name: 'a\u0000b',
        language_code: 'not a language',
      }),
      422,
      'VALIDATION_ERROR',
    );
    assert.deepEqual((body.errors as Body[]).map((e) => e.field).sort(), ['first_name', 'language_code', 'last_name']);
    assertProblem(await patch(tokens.access_token, { language_code: null }), 400, 'MALFORMED_REQUEST');
    assertProblem(await patch(tokens.access_token, { first_name: 12 }), 400, 'MALFORMED_REQUEST');
    assertProblem(await patch(tokens.access_token, [1, 2]), 400, 'MALFORMED_REQUEST');
    assertProblem(await patch(tokens.access_token, { last_name: 'Line\nBreak' }), 422, 'VALIDATION_ERROR');
  });

  test('DELETE /me with the wrong or no password is refused and deletes nothing', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const wrong = assertProblem(
      await remove(tokens.access_token, { password: 'Wrong-password-1!' }),
      401,
      'INVALID_CREDENTIALS',
    );
    assert.equal(wrong.detail, 'The password is incorrect');
    assertProblem(await remove(tokens.access_token, {}), 422, 'VALIDATION_ERROR');
    assertProblem(await remove(tokens.access_token), 400, 'MALFORMED_REQUEST');
    assert.equal((await get(tokens.access_token)).statusCode, 200);
  });

  test('DELETE /me answers 204: the user, the sessions and every token are gone; user_deleted is recorded', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const other = await login(app, account);
    const res = await remove(tokens.access_token, { password: account.password });
    assert.equal(res.statusCode, 204, res.body);
    const db = app.gatehouse.db;
    assert.equal(await db.selectFrom('users').select('id').where('id', '=', account.id).executeTakeFirst(), undefined);
    assert.deepEqual(await db.selectFrom('sessions').select('id').where('user_id', '=', account.id).execute(), []);
    for (const t of [tokens, other]) {
      assertProblem(await get(t.access_token), 401, 'TOKEN_INVALID');
      assertProblem(await refreshRequest(app, t.refresh_token), 401, 'TOKEN_INVALID');
    }
    assertProblem(await loginRequest(app, account.username, account.password), 401, 'INVALID_CREDENTIALS');
    const audit = await db
      .selectFrom('audit_logs')
      .select(['user_id', 'details'])
      .where('action', '=', 'user_deleted')
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.equal((audit.details as Body).uuid, account.uuid);
    // The account's name is free again.
    const again = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      payload: { email: account.email, username: account.username, password: account.password },
    });
    assert.equal(again.statusCode, 201, again.body);
  });

  test('DELETE /me is refused with 409 while the user is the last admin of an organization with other members', async () => {
    const admin = await createAccount(app, { organization_name: `Team ${uniqueName()}` });
    const member = await createAccount(app);
    const tokens = await login(app, admin);
    const orgUuid = await organizationOf(tokens.access_token);
    await addMember(orgUuid, member, 'user');

    const body = assertProblem(await remove(tokens.access_token, { password: admin.password }), 409, 'CONFLICT');
    assert.match(String(body.detail), /last admin/);
    assert.equal((await get(tokens.access_token)).statusCode, 200);

    // With a second admin the first may leave; the organization stays with its members.
    const second = await createAccount(app);
    await addMember(orgUuid, second, 'admin');
    assert.equal((await remove(tokens.access_token, { password: admin.password })).statusCode, 204);
    const org = await app.gatehouse.db
      .selectFrom('organizations')
      .select('id')
      .where('uuid', '=', orgUuid)
      .executeTakeFirst();
    assert.ok(org, 'the organization must survive its former admin');
  });

  test('DELETE /me takes along an organization the user is alone in', async () => {
    const account = await createAccount(app, { organization_name: `Solo ${uniqueName()}` });
    const tokens = await login(app, account);
    const orgUuid = await organizationOf(tokens.access_token);
    assert.equal((await remove(tokens.access_token, { password: account.password })).statusCode, 204);
    const org = await app.gatehouse.db
      .selectFrom('organizations')
      .select('id')
      .where('uuid', '=', orgUuid)
      .executeTakeFirst();
    assert.equal(org, undefined);
  });
});
