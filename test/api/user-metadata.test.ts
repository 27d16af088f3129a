import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createSuperuser } from '../../src/flows/admin.ts';
import { json, newUser, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import { type Body, bearer, createAccount, login, startAuthApp, type TestAccount } from './auth-helpers.ts';

const CLI = { ip: null, userAgent: 'test' };

describe('user_metadata and app_metadata', () => {
  let app: FastifyInstance;
  let adminToken: string;

  before(async () => {
    app = await startAuthApp({ REDIS_KEY_PREFIX: `t:${uniqueName('metadata')}:` });
    const input = newUser();
    await createSuperuser(app.gatehouse, input, CLI);
    adminToken = (await login(app, { ...input, id: 0, uuid: '', email: String(input.email) } as TestAccount))
      .access_token;
  });
  after(() => app.close());

  async function signedIn(): Promise<{ account: TestAccount; token: string }> {
    const account = await createAccount(app);
    return { account, token: (await login(app, account)).access_token };
  }

  const me = (token: string) => app.inject({ url: '/api/v1/me', headers: bearer(token) });
  const patchMe = (token: string, payload: unknown) =>
    app.inject({
      method: 'PATCH',
      url: '/api/v1/me',
      headers: { ...bearer(token), 'content-type': 'application/json' },
      payload: JSON.stringify(payload),
    });
  const patchUser = (uuid: string, payload: unknown, token = adminToken) =>
    app.inject({
      method: 'PATCH',
      url: `/api/v1/admin/users/${uuid}`,
      headers: { ...bearer(token), 'content-type': 'application/json' },
      payload: JSON.stringify(payload),
    });

  async function auditDetails(userId: number, action: 'user_updated' | 'admin_user_updated'): Promise<Body[]> {
    const rows = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', action)
      .where('user_id', '=', userId)
      .orderBy('id')
      .execute();
    return rows.map((row) => row.details as Body);
  }

  test('GET /me answers both, {} for a new account', async () => {
    const { token } = await signedIn();
    const res = await me(token);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res).user_metadata, {});
    assert.deepEqual(json(res).app_metadata, {});
  });

  test('PATCH /me {user_metadata} replaces the object, answers it, and audits user_updated with the field name only', async () => {
    const { account, token } = await signedIn();
    const first = await patchMe(token, { user_metadata: { theme: 'dark', favourites: [1, 2], nested: { a: 'b' } } });
    assert.equal(first.statusCode, 200, first.body);
    assert.deepEqual(json(first).user_metadata, { theme: 'dark', favourites: [1, 2], nested: { a: 'b' } });
    assert.deepEqual(json(first).app_metadata, {});

    const second = await patchMe(token, { user_metadata: { locale_hint: 'es' }, first_name: 'Ana' });
    assert.equal(second.statusCode, 200, second.body);
    assert.deepEqual(json(second).user_metadata, { locale_hint: 'es' }, 'replaced, not merged');
    assert.deepEqual(json(await me(token)).user_metadata, { locale_hint: 'es' });

    // The same object again (keys in another order) changes nothing and writes no audit row.
    assert.equal((await patchMe(token, { user_metadata: { locale_hint: 'es' } })).statusCode, 200);
    const audits = await auditDetails(account.id, 'user_updated');
    assert.deepEqual(
      audits.map((details) => details.fields),
      [['user_metadata'], ['user_metadata', 'first_name']],
    );
    assert.equal(JSON.stringify(audits).includes('dark'), false, 'values never reach the audit log');
  });

  test('PATCH /me refuses app_metadata with 422 VALIDATION_ERROR (not_allowed) and applies nothing', async () => {
    const { token } = await signedIn();
    const body = assertProblem(
      await patchMe(token, { app_metadata: { plan: 'pro' }, user_metadata: { x: 1 } }),
      422,
      'VALIDATION_ERROR',
    );
    assert.deepEqual(body.errors, [
      { field: 'app_metadata', message: 'app_metadata is set by administrators only', code: 'not_allowed' },
    ]);
    const after = json(await me(token));
    assert.deepEqual(after.app_metadata, {});
    assert.deepEqual(after.user_metadata, {});
  });

  test('user_metadata that is not a JSON object answers 422 VALIDATION_ERROR naming the field', async () => {
    const { token } = await signedIn();
    for (const value of [null, [], ['a'], 'text', 42, true]) {
      const body = assertProblem(await patchMe(token, { user_metadata: value }), 422, 'VALIDATION_ERROR');
      assert.deepEqual(body.errors, [
        { field: 'user_metadata', message: 'Must be a JSON object', code: 'invalid_type' },
      ]);
    }
    assert.deepEqual(json(await me(token)).user_metadata, {});
  });

  test('user_metadata over 4096 bytes of JSON answers 422 VALIDATION_ERROR; exactly 4096 is accepted', async () => {
    const { token } = await signedIn();
    // {"k":"…"} is 8 bytes around the value.
    const body = assertProblem(
      await patchMe(token, { user_metadata: { k: 'x'.repeat(4089) } }),
      422,
      'VALIDATION_ERROR',
    );
    assert.deepEqual(body.errors, [
      { field: 'user_metadata', message: 'Must be at most 4096 bytes as JSON', code: 'too_large' },
    ]);
    // Bytes, not characters: 2048 two-byte characters are over too.
    assertProblem(await patchMe(token, { user_metadata: { k: 'é'.repeat(2045) } }), 422, 'VALIDATION_ERROR');
    const fits = await patchMe(token, { user_metadata: { k: 'x'.repeat(4088) } });
    assert.equal(fits.statusCode, 200, fits.body);
  });

  test('user_metadata with a NUL character or a lone surrogate answers 422, never 500', async () => {
    const { token } = await signedIn();
    for (const value of [{ k: 'a\u0000b' }, { 'a\u0000': 1 }, { k: ['\ud800'] }]) {
      const body = assertProblem(await patchMe(token, { user_metadata: value }), 422, 'VALIDATION_ERROR');
      assert.equal((body.errors as Body[])[0]?.code, 'invalid_characters');
    }
  });

  test('a superuser sets app_metadata (and user_metadata) with PATCH /admin/users/{uuid}; /me shows them', async () => {
    const { account, token } = await signedIn();
    const res = await patchUser(account.uuid, { app_metadata: { plan: 'pro', roles: ['beta'] } });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res).app_metadata, { plan: 'pro', roles: ['beta'] });
    assert.deepEqual(json(res).user_metadata, {});
    assert.deepEqual(json(await me(token)).app_metadata, { plan: 'pro', roles: ['beta'] });

    const both = await patchUser(account.uuid, { app_metadata: { plan: 'team' }, user_metadata: { note: 'hi' } });
    assert.equal(both.statusCode, 200, both.body);
    const view = json(await me(token));
    assert.deepEqual(view.app_metadata, { plan: 'team' });
    assert.deepEqual(view.user_metadata, { note: 'hi' });

    const listed = await app.inject({
      url: `/api/v1/admin/users?search=${account.username}`,
      headers: bearer(adminToken),
    });
    assert.deepEqual(json<{ items: Body[] }>(listed).items[0]?.app_metadata, { plan: 'team' });

    const audits = await auditDetails(account.id, 'admin_user_updated');
    assert.deepEqual(
      audits.map((details) => details.fields),
      [['app_metadata'], ['app_metadata', 'user_metadata']],
    );
    assert.equal(JSON.stringify(audits).includes('team'), false, 'values never reach the audit log');
  });

  test('the admin API refuses bad metadata with 422 VALIDATION_ERROR naming each field, and applies nothing', async () => {
    const { account, token } = await signedIn();
    const body = assertProblem(
      await patchUser(account.uuid, { app_metadata: [1], user_metadata: { k: 'x'.repeat(5000) }, is_active: false }),
      422,
      'VALIDATION_ERROR',
    );
    assert.deepEqual(body.errors, [
      { field: 'app_metadata', message: 'Must be a JSON object', code: 'invalid_type' },
      { field: 'user_metadata', message: 'Must be at most 4096 bytes as JSON', code: 'too_large' },
    ]);
    assertProblem(await patchUser(account.uuid, { app_metadata: null }), 422, 'VALIDATION_ERROR');
    assertProblem(await patchUser(account.uuid, { app_metadata: 'plan=pro' }), 422, 'VALIDATION_ERROR');
    const view = json(await me(token));
    assert.equal(view.is_active, true);
    assert.deepEqual(view.app_metadata, {});
  });

  test('a user who is not a superuser cannot set app_metadata through the admin API (403 FORBIDDEN)', async () => {
    const { account, token } = await signedIn();
    assertProblem(await patchUser(account.uuid, { app_metadata: { plan: 'free-upgrade' } }, token), 403, 'FORBIDDEN');
    assert.deepEqual(json(await me(token)).app_metadata, {});
  });
});
