import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import gatehouse, { requireOrgRole } from '../../src/plugin.ts';
import { json, testConfig, uniqueName } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { bearer, enrol, postJson } from '../support/mfa.ts';
import { assertProblem } from '../support/problem.ts';
import { addMember, type Body, call, signUp } from './org-helpers.ts';

describe('organizations that require a second factor, and the admin reset', () => {
  const clock = testClock();
  let host: FastifyInstance;

  before(async () => {
    host = Fastify({ logger: false, pluginTimeout: 120_000 });
    await host.register(gatehouse, { config: testConfig({ REDIS_KEY_PREFIX: `t:${uniqueName()}:` }), clock });
    host.register(async (child) => {
      child.get('/api/v1/organizations/:uuid/scan', { onRequest: requireOrgRole('user') }, async (request) => ({
        role: request.membership.role,
      }));
    });
    await host.ready();
  });
  after(() => host.close());

  async function organizationWithMember() {
    const admin = await signUp(host, { organization_name: `Org ${uniqueName()}` });
    const organization = String((admin.body.organization as Body).uuid);
    const member = await signUp(host);
    await addMember(host, organization, member.id, 'user');
    return { admin, organization, member };
  }

  test('only an admin with a second factor turns require_mfa on; members without one get 403 with a pointer', async () => {
    const { admin, organization, member } = await organizationWithMember();
    const url = `/api/v1/organizations/${organization}`;
    assertProblem(await call(host, 'PATCH', url, admin.token, { require_mfa: true }), 409, 'CONFLICT');
    assertProblem(await call(host, 'PATCH', url, member.token, { require_mfa: true }), 403, 'FORBIDDEN');
    assertProblem(await call(host, 'PATCH', url, admin.token, { require_mfa: 'yes' }), 400, 'MALFORMED_REQUEST');
    await enrol(host, admin.token, clock);
    const on = await call(host, 'PATCH', url, admin.token, { require_mfa: true });
    assert.equal(on.statusCode, 200, on.body);
    assert.equal(json(on).require_mfa, true);

    // The member without a second factor: refused by the organization's routes and the host's guard.
    for (const path of [url, `${url}/members`, `${url}/scan`]) {
      const body = assertProblem(await call(host, 'GET', path, member.token), 403, 'MFA_REQUIRED_BY_ORGANIZATION');
      assert.equal(body.enrol_url, '/account/mfa');
    }
    // The admin, with one, passes.
    assert.equal((await call(host, 'GET', `${url}/scan`, admin.token)).statusCode, 200);
    // A stranger still learns nothing.
    const stranger = await signUp(host);
    assertProblem(await call(host, 'GET', url, stranger.token), 404, 'NOT_FOUND');

    // The member's other organizations are unaffected.
    const own = await call(host, 'POST', '/api/v1/organizations', member.token, { name: `Own ${uniqueName()}` });
    assert.equal(own.statusCode, 201, own.body);
    assert.equal(json(own).require_mfa, false);
    assert.equal(
      (await call(host, 'GET', `/api/v1/organizations/${json(own).uuid}/scan`, member.token)).statusCode,
      200,
    );

    // Once the member turns a factor on, they pass.
    await enrol(host, member.token, clock);
    assert.equal((await call(host, 'GET', `${url}/scan`, member.token)).statusCode, 200);

    const audit = await host.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'organization_updated')
      .where('user_id', '=', admin.id)
      .execute();
    assert.ok(audit.some((a) => (a.details as { to: { require_mfa: boolean } }).to.require_mfa === true));
  });

  test('POST /admin/users/{uuid}/mfa/reset: superusers only; turns the factor off, audited and mailed', async () => {
    const superuser = await signUp(host);
    await host.gatehouse.db.updateTable('users').set({ is_superuser: true }).where('id', '=', superuser.id).execute();
    const user = await signUp(host);
    await enrol(host, user.token, clock);
    const reset = `/api/v1/admin/users/${user.uuid}/mfa/reset`;
    assertProblem(await postJson(host, reset, {}, bearer(user.token)), 403, 'FORBIDDEN');
    assertProblem(
      await postJson(host, `/api/v1/admin/users/nope/mfa/reset`, {}, bearer(superuser.token)),
      404,
      'NOT_FOUND',
    );
    const res = await postJson(host, reset, {}, bearer(superuser.token));
    assert.equal(res.statusCode, 204, res.body);
    const me = json<{ mfa: unknown }>(await call(host, 'GET', '/api/v1/me', user.token));
    assert.deepEqual(me.mfa, { totp: false, backup_codes_left: 0 });
    const audit = await host.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'mfa_reset_by_admin')
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(audit.details, { by_user_id: superuser.id, via: 'api' });
    const mail = await host.gatehouse.db
      .selectFrom('email_outbox')
      .select(['template', 'text_body'])
      .where('to_address', '=', user.email)
      .where('template', '=', 'mfa_disabled')
      .executeTakeFirstOrThrow();
    assert.match(mail.text_body, /administrator/);
    // The password alone signs in again.
    const login = await host.inject({
      method: 'POST',
      url: '/api/v1/login',
      payload: { username: user.username, password: user.password },
    });
    assert.equal(login.statusCode, 200, login.body);
  });

  test('mail goes out in the user’s language', async () => {
    const user = await signUp(host, { language_code: 'es' });
    await enrol(host, user.token, clock);
    const mail = await host.gatehouse.db
      .selectFrom('email_outbox')
      .select('subject')
      .where('to_address', '=', user.email)
      .where('template', '=', 'mfa_enabled')
      .executeTakeFirstOrThrow();
    assert.equal(mail.subject, 'La verificación en dos pasos está activada');
  });
});
