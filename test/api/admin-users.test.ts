import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createSuperuser } from '../../src/flows/admin.ts';
import { json, newUser, strongPassword, uniqueName } from '../helpers.ts';
import { startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';
import { assertProblem } from '../support/problem.ts';

type Body = Record<string, unknown>;
interface Page {
  items: Body[];
  next_cursor: string | null;
}

const CLI = { ip: null, userAgent: 'test' };
const UNKNOWN = '123e4567-e89b-12d3-a456-426614174999';

describe('administration of users', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;
  let admin: { id: number; uuid: string; token: string };
  let plainToken: string;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({
      REQUIRE_EMAIL_VERIFICATION: 'true',
      REDIS_KEY_PREFIX: `t:${uniqueName('adminusers')}:`,
    }));
    const input = newUser();
    const created = await createSuperuser(app.gatehouse, input, CLI);
    admin = { id: created.id, uuid: created.uuid, token: await login(input.username, input.password) };
    const plain = await createVerified();
    plainToken = await login(plain.username, plain.password);
  });
  after(() => close());

  async function login(username: string, password: string): Promise<string> {
    const res = await app.inject({ method: 'POST', url: '/api/v1/login', payload: { username, password } });
    assert.equal(res.statusCode, 200, res.body);
    return String(json(res).access_token);
  }

  function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, token = admin.token) {
    return app.inject({
      method,
      url: `/api/v1/admin${url}`,
      headers: { authorization: `Bearer ${token}` },
      ...(payload === undefined ? {} : { payload: payload as Body }),
    });
  }

  /** A verified user with a password, made through the API under test. */
  async function createVerified(overrides: Record<string, unknown> = {}) {
    const user = newUser(overrides);
    const res = await call('POST', '/users', {
      email: user.email,
      username: user.username,
      password: user.password,
      email_verified: true,
    });
    assert.equal(res.statusCode, 201, res.body);
    return {
      email: String(user.email),
      username: String(user.username),
      password: String(user.password),
      uuid: String(json(res).uuid),
      id: Number(json(res).id),
    };
  }

  async function auditRows(action: string, targetUuid: string) {
    const rows = await app.gatehouse.db
      .selectFrom('audit_logs')
      .selectAll()
      .where('action', '=', action)
      .orderBy('id')
      .execute();
    return rows.filter((r) => (r.details as Body).target_user_uuid === targetUuid);
  }

  async function assertAuditedByAdmin(action: string, targetUuid: string) {
    const rows = await auditRows(action, targetUuid);
    assert.ok(rows.length > 0, `${action} audited`);
    for (const row of rows) {
      assert.equal(row.user_id, admin.id, `${action}: the admin is the row's user`);
      assert.equal((row.details as Body).via, 'api');
      assert.equal(row.ip_address, '127.0.0.1');
    }
    return rows;
  }

  describe('access', () => {
    const routes = [
      ['POST', '/users', { email: 'x@example.com', username: 'xxxx' }],
      ['GET', `/users/${UNKNOWN}`],
      ['DELETE', `/users/${UNKNOWN}`],
      ['POST', `/users/${UNKNOWN}/password-reset`],
      ['PATCH', `/users/${UNKNOWN}`, { is_superuser: true }],
      ['GET', `/users/${UNKNOWN}/sessions`],
      ['DELETE', `/users/${UNKNOWN}/sessions`],
      ['DELETE', `/users/${UNKNOWN}/sessions/${UNKNOWN}`],
      ['GET', `/users/${UNKNOWN}/export`],
    ] as const;

    test('without a token 401 UNAUTHORIZED; a user who is not a superuser 403 FORBIDDEN', async () => {
      for (const [method, url, payload] of routes) {
        const res = await app.inject({ method, url: `/api/v1/admin${url}`, ...(payload ? { payload } : {}) });
        assertProblem(res, 401, 'UNAUTHORIZED');
        assertProblem(await call(method, url, payload, plainToken), 403, 'FORBIDDEN');
      }
    });

    test('a user who is not a superuser cannot act on a real user either, and nothing changes', async () => {
      const victim = await createVerified();
      const token = await login(victim.username, victim.password);
      for (const [method, url, payload] of [
        ['DELETE', `/users/${victim.uuid}`],
        ['PATCH', `/users/${victim.uuid}`, { is_superuser: true }],
        ['DELETE', `/users/${victim.uuid}/sessions`],
        ['POST', `/users/${victim.uuid}/password-reset`],
        ['GET', `/users/${victim.uuid}/export`],
      ] as const) {
        assertProblem(await call(method, url, payload, plainToken), 403, 'FORBIDDEN');
      }
      assert.equal(
        (await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${token}` } })).statusCode,
        200,
      );
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select('is_superuser')
        .where('id', '=', victim.id)
        .executeTakeFirstOrThrow();
      assert.equal(row.is_superuser, false);
    });

    test('an unknown or malformed user uuid answers 404 NOT_FOUND on every route', async () => {
      for (const [method, url, payload] of routes.slice(1)) {
        assertProblem(await call(method, url, payload), 404, 'NOT_FOUND');
        assertProblem(await call(method, url.replace(UNKNOWN, 'not-a-uuid'), payload), 404, 'NOT_FOUND');
      }
    });
  });

  describe('POST /api/v1/admin/users', () => {
    test('with a password and email_verified: 201 with the user body, who can log in at once; audited', async () => {
      const user = newUser({ first_name: 'Ada' });
      const res = await call('POST', '/users', {
        email: String(user.email).toUpperCase(),
        username: user.username,
        password: user.password,
        email_verified: true,
        first_name: 'Ada',
      });
      assert.equal(res.statusCode, 201, res.body);
      const body = json(res);
      assert.deepEqual(Object.keys(body).sort(), [
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
      assert.equal(body.email, String(user.email).toLowerCase());
      assert.equal(body.email_verified, true);
      assert.equal(body.is_superuser, false);
      assert.equal(body.first_name, 'Ada');
      const one = await call('GET', `/users/${String(body.uuid)}`);
      assert.equal(one.statusCode, 200, one.body);
      assert.deepEqual(json(one), body);
      const listed = json<Page>(await call('GET', `/users?username=${user.username}`)).items;
      assert.deepEqual(listed, [body]);
      await login(String(user.username), String(user.password));
      const [row] = await assertAuditedByAdmin('admin_user_created', String(body.uuid));
      assert.equal((row?.details as Body | undefined)?.password_set, true);
      assert.equal((row?.details as Body | undefined)?.mailed, null);
    });

    test('with a password, unverified: the verification mail goes as at registration, and following it verifies', async () => {
      const user = newUser();
      const res = await call('POST', '/users', { email: user.email, username: user.username, password: user.password });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(json(res).email_verified, false);
      const [mail] = await smtp.waitFor(String(user.email));
      const link = mail?.links.find((l) => l.includes('/verify-email?token='));
      assert.ok(link, mail?.text);
      const verified = await app.inject({
        method: 'POST',
        url: '/api/v1/verify-email',
        payload: { token: tokenFrom(link) },
      });
      assert.equal(verified.statusCode, 200, verified.body);
      await login(String(user.username), String(user.password));
    });

    test('without a password: account_created mail with a set-password link; using it sets the password and verifies', async () => {
      const username = uniqueName('nopw');
      const email = `${username}@example.com`;
      const res = await call('POST', '/users', { email, username, language_code: 'es' });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(json(res).email_verified, false);
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select(['has_password', 'password_hash'])
        .where('username', '=', username)
        .executeTakeFirstOrThrow();
      assert.equal(row.has_password, false);
      const refused = await app.inject({
        method: 'POST',
        url: '/api/v1/login',
        payload: { username, password: 'anything-at-all-1A!' },
      });
      assertProblem(refused, 401, 'INVALID_CREDENTIALS');

      const [mail] = await smtp.waitFor(email);
      assert.equal(mail?.subject, 'Se ha creado una cuenta para ti');
      assert.match(mail?.text ?? '', new RegExp(username));
      const link = mail?.links.find((l) => l.includes('/reset-password?token='));
      assert.ok(link, mail?.text);
      const token = await app.gatehouse.db
        .selectFrom('one_time_tokens')
        .select(['expires_at', 'created_at'])
        .where('purpose', '=', 'reset_password')
        .where('email', '=', email)
        .executeTakeFirstOrThrow();
      const hours = (token.expires_at.getTime() - Date.now()) / 3600_000;
      assert.ok(hours > 71 && hours <= 72, `link valid ${hours} hours`);

      const page = await app.inject({ url: new URL(link).pathname + new URL(link).search });
      assert.equal(page.statusCode, 200);
      const password = strongPassword();
      const reset = await app.inject({
        method: 'POST',
        url: '/api/v1/reset-password',
        payload: { token: tokenFrom(link), new_password: password, confirm_password: password },
      });
      assert.equal(reset.statusCode, 204, reset.body);
      await login(username, password);
      const after = await app.gatehouse.db
        .selectFrom('users')
        .select(['has_password', 'email_verified_at'])
        .where('username', '=', username)
        .executeTakeFirstOrThrow();
      assert.equal(after.has_password, true);
      assert.notEqual(after.email_verified_at, null);
      const [audit] = await assertAuditedByAdmin('admin_user_created', String(json(res).uuid));
      assert.equal((audit?.details as Body | undefined)?.mailed, 'account_created');
    });

    test('a weak or breached password answers 422 with the registration codes; nothing is created', async () => {
      const weak = newUser({ password: 'password' });
      const body = assertProblem(
        await call('POST', '/users', { ...pick(weak), password: 'password' }),
        422,
        'PASSWORD_POLICY',
      );
      assert.ok(Array.isArray(body.issues) && body.issues.length > 0);
      const breached = newUser();
      assertProblem(
        await call('POST', '/users', { ...pick(breached), password: 'S0nyer1c$$0n' }),
        422,
        'PASSWORD_BREACHED',
      );
      const containsName = newUser();
      assertProblem(
        await call('POST', '/users', { ...pick(containsName), password: `${String(containsName.username)}Aa1!xyz` }),
        422,
        'PASSWORD_POLICY',
      );
      for (const user of [weak, breached, containsName]) {
        const row = await app.gatehouse.db
          .selectFrom('users')
          .select('id')
          .where('username', '=', String(user.username))
          .executeTakeFirst();
        assert.equal(row, undefined);
      }
    });

    test('a taken email or username answers 409 EMAIL_TAKEN or USERNAME_TAKEN', async () => {
      const existing = await createVerified();
      assertProblem(
        await call('POST', '/users', { email: existing.email.toUpperCase(), username: uniqueName('other') }),
        409,
        'EMAIL_TAKEN',
      );
      assertProblem(
        await call('POST', '/users', { email: `${uniqueName('other')}@example.com`, username: existing.username }),
        409,
        'USERNAME_TAKEN',
      );
    });

    test('bad fields: 422 VALIDATION_ERROR naming each; wrong types 400 MALFORMED_REQUEST', async () => {
      const user = newUser();
      const cases: [Body, number, string, string | undefined][] = [
        [{ username: user.username }, 422, 'VALIDATION_ERROR', 'email'],
        [{ email: user.email }, 422, 'VALIDATION_ERROR', 'username'],
        [{ ...pick(user), email: 'not-an-email' }, 422, 'VALIDATION_ERROR', 'email'],
        [{ ...pick(user), username: 'a' }, 422, 'VALIDATION_ERROR', 'username'],
        [{ ...pick(user), username: 'has space' }, 422, 'VALIDATION_ERROR', 'username'],
        [{ ...pick(user), password: '' }, 422, 'VALIDATION_ERROR', 'password'],
        [{ ...pick(user), language_code: 'not a tag!' }, 422, 'VALIDATION_ERROR', 'language_code'],
        [{ ...pick(user), first_name: 'x'.repeat(101) }, 422, 'VALIDATION_ERROR', 'first_name'],
        [{ ...pick(user), email: 'a\u0000@example.com' }, 422, 'VALIDATION_ERROR', 'email'],
        [{ ...pick(user), is_superuser: true }, 422, 'VALIDATION_ERROR', 'is_superuser'],
        [{ ...pick(user), email_verified: 'yes' }, 400, 'MALFORMED_REQUEST', undefined],
        [{ ...pick(user), password: 12345 }, 400, 'MALFORMED_REQUEST', undefined],
        [{ ...pick(user), email: ['a@example.com'] }, 400, 'MALFORMED_REQUEST', undefined],
      ];
      for (const [payload, status, code, field] of cases) {
        const body = assertProblem(await call('POST', '/users', payload), status, code);
        if (field) {
          assert.ok(
            (body.errors as Body[]).some((e) => e.field === field),
            `${JSON.stringify(payload)}: ${JSON.stringify(body.errors)}`,
          );
        }
      }
      const raw = await app.inject({
        method: 'POST',
        url: '/api/v1/admin/users',
        headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
        payload: '{"email":',
      });
      assertProblem(raw, 400, 'MALFORMED_REQUEST');
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select('id')
        .where('username', '=', String(user.username))
        .executeTakeFirst();
      assert.equal(row, undefined);
    });
  });

  describe('DELETE /api/v1/admin/users/{uuid}', () => {
    test('deletes the user, revokes their tokens at once, takes organizations they are alone in; audited', async () => {
      const user = await createVerified();
      const token = await login(user.username, user.password);
      const org = await app.inject({
        method: 'POST',
        url: '/api/v1/organizations',
        headers: { authorization: `Bearer ${token}` },
        payload: { name: uniqueName('Solo Org') },
      });
      assert.equal(org.statusCode, 201, org.body);
      const res = await call('DELETE', `/users/${user.uuid}`);
      assert.equal(res.statusCode, 204, res.body);
      assert.equal(res.body, '');
      assertProblem(
        await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${token}` } }),
        401,
        'TOKEN_INVALID',
      );
      const gone = await app.gatehouse.db.selectFrom('users').select('id').where('id', '=', user.id).executeTakeFirst();
      assert.equal(gone, undefined);
      const orgRow = await app.gatehouse.db
        .selectFrom('organizations')
        .select('id')
        .where('uuid', '=', String(json(org).uuid))
        .executeTakeFirst();
      assert.equal(orgRow, undefined);
      const [row] = await assertAuditedByAdmin('admin_user_deleted', user.uuid);
      assert.equal((row?.details as Body | undefined)?.sessions_revoked, 1);
      assert.deepEqual((row?.details as Body | undefined)?.organizations_deleted, [String(json(org).uuid)]);
      assertProblem(await call('DELETE', `/users/${user.uuid}`), 404, 'NOT_FOUND');
    });

    test('refused with 409 CONFLICT while the user is the last admin of an organization with other members', async () => {
      const owner = await createVerified();
      const member = await createVerified();
      const ownerToken = await login(owner.username, owner.password);
      const org = json(
        await app.inject({
          method: 'POST',
          url: '/api/v1/organizations',
          headers: { authorization: `Bearer ${ownerToken}` },
          payload: { name: uniqueName('Shared Org') },
        }),
      );
      const orgId = await app.gatehouse.db
        .selectFrom('organizations')
        .select('id')
        .where('uuid', '=', String(org.uuid))
        .executeTakeFirstOrThrow();
      const role = await app.gatehouse.db
        .selectFrom('roles')
        .select('id')
        .where('organization_id', '=', orgId.id)
        .where('name', '=', 'user')
        .executeTakeFirstOrThrow();
      await app.gatehouse.db
        .insertInto('memberships')
        .values({ user_id: member.id, organization_id: orgId.id, role_id: role.id })
        .execute();
      const body = assertProblem(await call('DELETE', `/users/${owner.uuid}`), 409, 'CONFLICT');
      assert.match(String(body.detail), /last admin/);
      assert.equal(
        (await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${ownerToken}` } })).statusCode,
        200,
      );
      // The member (not an admin) goes fine.
      assert.equal((await call('DELETE', `/users/${member.uuid}`)).statusCode, 204);
    });

    test('a superuser cannot delete their own account here: 409 CANNOT_DELETE_SELF', async () => {
      assertProblem(await call('DELETE', `/users/${admin.uuid}`), 409, 'CANNOT_DELETE_SELF');
      assert.equal((await call('GET', `/users/${admin.uuid}`)).statusCode, 200);
    });
  });

  describe('POST /api/v1/admin/users/{uuid}/password-reset', () => {
    test('202 and the reset mail, whose link sets a new password; audited', async () => {
      const user = await createVerified();
      const res = await call('POST', `/users/${user.uuid}/password-reset`);
      assert.equal(res.statusCode, 202, res.body);
      const [mail] = await smtp.waitFor(user.email);
      const link = mail?.links.find((l) => l.includes('/reset-password?token='));
      assert.ok(link, mail?.text);
      const password = strongPassword();
      const reset = await app.inject({
        method: 'POST',
        url: '/api/v1/reset-password',
        payload: { token: tokenFrom(link), new_password: password, confirm_password: password },
      });
      assert.equal(reset.statusCode, 204, reset.body);
      await login(user.username, password);
      await assertAuditedByAdmin('admin_password_reset_sent', user.uuid);
    });

    test('a disabled account answers 409 CONFLICT', async () => {
      const user = await createVerified();
      assert.equal((await call('PATCH', `/users/${user.uuid}`, { is_active: false })).statusCode, 200);
      assertProblem(await call('POST', `/users/${user.uuid}/password-reset`), 409, 'CONFLICT');
    });
  });

  describe('PATCH /api/v1/admin/users/{uuid} is_superuser', () => {
    test('sets and clears the flag: the user reaches the administration API, then no longer; audited', async () => {
      const user = await createVerified();
      const token = await login(user.username, user.password);
      assertProblem(await call('GET', '/users', undefined, token), 403, 'FORBIDDEN');
      const on = await call('PATCH', `/users/${user.uuid}`, { is_superuser: true });
      assert.equal(on.statusCode, 200, on.body);
      assert.equal(json(on).is_superuser, true);
      assert.equal((await call('GET', '/users?limit=1', undefined, token)).statusCode, 200);
      const off = await call('PATCH', `/users/${user.uuid}`, { is_superuser: false });
      assert.equal(json(off).is_superuser, false);
      assertProblem(await call('GET', '/users', undefined, token), 403, 'FORBIDDEN');
      const rows = await assertAuditedByAdmin('admin_superuser_changed', user.uuid);
      assert.deepEqual(
        rows.map((r) => [(r.details as Body).is_superuser, (r.details as Body).changed]),
        [
          [true, true],
          [false, true],
        ],
      );
    });

    test('is_superuser with is_active changes both', async () => {
      const user = await createVerified();
      const res = await call('PATCH', `/users/${user.uuid}`, { is_superuser: true, is_active: false });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(json(res).is_superuser, true);
      assert.equal(json(res).is_active, false);
    });

    test('the last active superuser cannot drop their own flag: 409 LAST_SUPERUSER; with another one they can', async () => {
      // Every other superuser of this database (made by earlier tests) loses the flag first.
      await app.gatehouse.db.updateTable('users').set({ is_superuser: false }).where('id', '!=', admin.id).execute();
      assertProblem(await call('PATCH', `/users/${admin.uuid}`, { is_superuser: false }), 409, 'LAST_SUPERUSER');
      const stays = await call('GET', `/users/${admin.uuid}`);
      assert.equal(json(stays).is_superuser, true);
      const other = await createVerified();
      assert.equal((await call('PATCH', `/users/${other.uuid}`, { is_superuser: true })).statusCode, 200);
      const otherToken = await login(other.username, other.password);
      const dropped = await call('PATCH', `/users/${admin.uuid}`, { is_superuser: false });
      assert.equal(dropped.statusCode, 200, dropped.body);
      assertProblem(await call('GET', '/users'), 403, 'FORBIDDEN');
      // The other one gives it back, and is now the last: they cannot drop theirs.
      const back = await call('PATCH', `/users/${admin.uuid}`, { is_superuser: true }, otherToken);
      assert.equal(back.statusCode, 200, back.body);
      assert.equal((await call('PATCH', `/users/${other.uuid}`, { is_superuser: false })).statusCode, 200);
      assertProblem(await call('PATCH', `/users/${admin.uuid}`, { is_superuser: false }), 409, 'LAST_SUPERUSER');
    });

    test('a non-boolean is_superuser answers 400 MALFORMED_REQUEST', async () => {
      const user = await createVerified();
      assertProblem(await call('PATCH', `/users/${user.uuid}`, { is_superuser: 'yes' }), 400, 'MALFORMED_REQUEST');
      assertProblem(await call('PATCH', `/users/${user.uuid}`, { is_superuser: null }), 400, 'MALFORMED_REQUEST');
    });
  });

  describe('sessions of a user', () => {
    test('GET lists live sessions as GET /sessions does; DELETE one revokes it at once; audited', async () => {
      const user = await createVerified();
      const first = await login(user.username, user.password);
      const second = await login(user.username, user.password);
      const own = await app.inject({ url: '/api/v1/sessions', headers: { authorization: `Bearer ${first}` } });
      const res = await call('GET', `/users/${user.uuid}/sessions`);
      assert.equal(res.statusCode, 200, res.body);
      const listed = json<Body[]>(res);
      assert.equal(listed.length, 2);
      const mine = json<Body[]>(own);
      assert.deepEqual(
        listed.map((s) => Object.keys(s).sort()),
        mine.map((s) => Object.keys(s).sort()),
      );
      assert.deepEqual(
        listed.map((s) => s.id),
        mine.map((s) => s.id),
      );
      assert.ok(listed.every((s) => s.current === false));
      await assertAuditedByAdmin('admin_sessions_viewed', user.uuid);

      const secondSession = await app.gatehouse.tokens.verify(second, 'access');
      const revoked = await call('DELETE', `/users/${user.uuid}/sessions/${String(secondSession.sid)}`);
      assert.equal(revoked.statusCode, 204, revoked.body);
      assertProblem(
        await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${second}` } }),
        401,
        'TOKEN_INVALID',
      );
      assert.equal(
        (await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${first}` } })).statusCode,
        200,
      );
      assert.equal(json<Body[]>(await call('GET', `/users/${user.uuid}/sessions`)).length, 1);
      const [row] = await assertAuditedByAdmin('admin_sessions_revoked', user.uuid);
      assert.equal((row?.details as Body | undefined)?.session_uuid, secondSession.sid);
      // Already revoked, unknown, malformed, or someone else's: 404.
      for (const id of [String(secondSession.sid), UNKNOWN, 'nope']) {
        assertProblem(await call('DELETE', `/users/${user.uuid}/sessions/${id}`), 404, 'NOT_FOUND');
      }
      const firstSession = await app.gatehouse.tokens.verify(first, 'access');
      assertProblem(
        await call('DELETE', `/users/${admin.uuid}/sessions/${String(firstSession.sid)}`),
        404,
        'NOT_FOUND',
      );
      assert.equal(
        (await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${first}` } })).statusCode,
        200,
      );
    });

    test('DELETE all revokes every session: access and refresh tokens are refused at once; audited', async () => {
      const user = await createVerified();
      const a = await app.inject({
        method: 'POST',
        url: '/api/v1/login',
        payload: { username: user.username, password: user.password },
      });
      const b = await login(user.username, user.password);
      const res = await call('DELETE', `/users/${user.uuid}/sessions`);
      assert.equal(res.statusCode, 204, res.body);
      for (const token of [String(json(a).access_token), b]) {
        assertProblem(
          await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${token}` } }),
          401,
          'TOKEN_INVALID',
        );
      }
      const refresh = await app.inject({
        method: 'POST',
        url: '/api/v1/refresh',
        payload: { refresh_token: String(json(a).refresh_token) },
      });
      assert.equal(refresh.statusCode, 401, refresh.body);
      assert.deepEqual(json<Body[]>(await call('GET', `/users/${user.uuid}/sessions`)), []);
      const [row] = await assertAuditedByAdmin('admin_sessions_revoked', user.uuid);
      assert.equal((row?.details as Body | undefined)?.sessions_revoked, 2);
      assert.equal((row?.details as Body | undefined)?.all_sessions, true);
      // The user can sign in again.
      await login(user.username, user.password);
    });
  });

  describe('GET /api/v1/admin/users filters', () => {
    test('email, username, q and organization narrow the list; they combine, and page with next_cursor', async () => {
      const tag = uniqueName('flt');
      const made = [];
      for (let i = 0; i < 3; i++)
        made.push(await createVerified({ username: `${tag}_${i}`, email: `${tag}_${i}@example.org` }));
      const ownerToken = await login(made[0]!.username, made[0]!.password);
      const org = json(
        await app.inject({
          method: 'POST',
          url: '/api/v1/organizations',
          headers: { authorization: `Bearer ${ownerToken}` },
          payload: { name: uniqueName('Filter Org') },
        }),
      );
      const uuids = async (query: string) => {
        const res = await call('GET', `/users?${query}`);
        assert.equal(res.statusCode, 200, res.body);
        return json<Page>(res).items.map((u) => u.uuid);
      };
      assert.deepEqual(await uuids(`email=${tag}_1@EXAMPLE.org`), [made[1]!.uuid]);
      assert.deepEqual(await uuids(`username=${tag.toUpperCase()}_2`), [made[2]!.uuid]);
      assert.deepEqual(await uuids(`q=${tag}`), made.map((u) => u.uuid).reverse());
      assert.deepEqual(await uuids(`organization=${String(org.uuid)}`), [made[0]!.uuid]);
      assert.deepEqual(await uuids(`organization=${String(org.uuid)}&username=${tag}_1`), []);
      assert.deepEqual(await uuids(`email=${tag}&username=${tag}_0`), [made[0]!.uuid]);
      assert.deepEqual(await uuids(`organization=${UNKNOWN}`), []);
      assert.deepEqual(await uuids(`email=${encodeURIComponent('%')}`), []);

      const first = json<Page>(await call('GET', `/users?email=${tag}&limit=2`));
      assert.equal(first.items.length, 2);
      assert.ok(first.next_cursor);
      const second = json<Page>(
        await call('GET', `/users?email=${tag}&limit=2&cursor=${encodeURIComponent(first.next_cursor)}`),
      );
      assert.deepEqual(
        second.items.map((u) => u.uuid),
        [made[0]!.uuid],
      );
      assert.equal(second.next_cursor, null);

      const [row] = await app.gatehouse.db
        .selectFrom('audit_logs')
        .select(['user_id', 'details'])
        .where('action', '=', 'admin_users_viewed')
        .orderBy('id', 'desc')
        .limit(1)
        .execute();
      assert.equal(row?.user_id, admin.id);
      assert.deepEqual((row?.details as { filters: Body } | undefined)?.filters, {
        email: tag,
        limit: 2,
        cursor: first.next_cursor,
      });
    });

    test('bad filters: a malformed organization 422, over-long values 422, a bad cursor 422', async () => {
      for (const query of [
        'organization=nope',
        `email=${'a'.repeat(255)}`,
        `username=${'a'.repeat(51)}`,
        `q=${'a'.repeat(255)}`,
        'cursor=bogus',
      ]) {
        assertProblem(await call('GET', `/users?${query}`), 422, 'VALIDATION_ERROR');
      }
    });
  });

  describe('GET /api/v1/admin/users/{uuid}/export', () => {
    test('profile, organizations, sessions and audit rows about the user; no secrets; audited', async () => {
      const user = await createVerified();
      const token = await login(user.username, user.password);
      const org = json(
        await app.inject({
          method: 'POST',
          url: '/api/v1/organizations',
          headers: { authorization: `Bearer ${token}` },
          payload: { name: uniqueName('Export Org') },
        }),
      );
      await app.inject({
        method: 'POST',
        url: '/api/v1/login',
        payload: { username: user.username, password: 'Wrong-pass-1!x' },
      });
      const res = await call('GET', `/users/${user.uuid}/export`);
      assert.equal(res.statusCode, 200, res.body);
      const data = json<{ profile: Body; organizations: Body[]; sessions: Body[]; audit_logs: Body[] }>(res);
      assert.deepEqual(Object.keys(data).sort(), ['audit_logs', 'organizations', 'profile', 'sessions']);
      assert.equal(data.profile.uuid, user.uuid);
      assert.equal(data.profile.email, user.email.toLowerCase());
      assert.equal(data.profile.has_password, true);
      assert.deepEqual(
        data.organizations.map((o) => [o.uuid, o.role]),
        [[org.uuid, 'admin']],
      );
      assert.equal(data.sessions.length, 1);
      const actions = data.audit_logs.map((a) => a.action);
      assert.ok(actions.includes('login_success'), actions.join());
      assert.ok(actions.includes('organization_created'), actions.join());
      const ids = await app.gatehouse.db
        .selectFrom('audit_logs')
        .select('id')
        .where('user_id', '=', user.id)
        .orderBy('id', 'desc')
        .execute();
      assert.deepEqual(
        data.audit_logs.map((a) => a.id),
        ids.map((r) => r.id),
      );
      const secrets = await app.gatehouse.db
        .selectFrom('users')
        .select('password_hash')
        .where('id', '=', user.id)
        .executeTakeFirstOrThrow();
      const sessionHashes = await app.gatehouse.db
        .selectFrom('sessions')
        .select('refresh_token_hash')
        .where('user_id', '=', user.id)
        .execute();
      assert.ok(!res.body.includes(secrets.password_hash));
      assert.doesNotMatch(res.body, /argon2|password_hash|refresh_token_hash|secret/);
      for (const s of sessionHashes) assert.ok(!res.body.includes(s.refresh_token_hash));
      await assertAuditedByAdmin('admin_user_exported', user.uuid);
    });
  });

  test('the new routes are in the OpenAPI document under the administration tag', async () => {
    const doc = json<{ paths: Record<string, Record<string, { tags?: string[] }>> }>(
      await app.inject({ url: '/openapi.json' }),
    );
    for (const [path, method] of [
      ['/api/v1/admin/users', 'post'],
      ['/api/v1/admin/users/{uuid}', 'get'],
      ['/api/v1/admin/users/{uuid}', 'delete'],
      ['/api/v1/admin/users/{uuid}/password-reset', 'post'],
      ['/api/v1/admin/users/{uuid}/sessions', 'get'],
      ['/api/v1/admin/users/{uuid}/sessions', 'delete'],
      ['/api/v1/admin/users/{uuid}/sessions/{id}', 'delete'],
      ['/api/v1/admin/users/{uuid}/export', 'get'],
    ] as const) {
      assert.deepEqual(doc.paths[path]?.[method]?.tags, ['administration'], `${method} ${path}`);
    }
  });
});

function pick(user: Record<string, unknown>): Body {
  return { email: user.email, username: user.username };
}
