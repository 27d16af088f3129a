import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { buildScanApp } from '../../examples/scan-app/app.ts';
import gatehouse, { AppError, requireOrgRole } from '../../src/plugin.ts';
import { addMember, type Body, call, type SignedIn, type SignedUp, signUp } from '../api/org-helpers.ts';
import { json, newUser, testConfig, uniqueName } from '../helpers.ts';
import { TestMailServer, tokenFrom } from '../mail-server.ts';
import { assertProblem } from '../support/problem.ts';

describe('example host application: scan-app', () => {
  let smtp: TestMailServer;
  let app: FastifyInstance;

  before(async () => {
    smtp = await TestMailServer.start();
    app = await buildScanApp({
      config: testConfig({
        SMTP_URL: smtp.url,
        OUTBOX_POLL_MS: '50',
        OUTBOX_RETRY_BASE_MS: '50',
        REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      }),
      logger: false,
    });
    await app.ready();
  });
  after(async () => {
    await app?.close();
    await smtp?.stop();
  });

  const scanUrl = (organizationUuid: string) => `/api/v1/organizations/${organizationUuid}/scan`;
  const scansOf = (organizationUuid: string) =>
    sql<{ target: string; protocol_filter: string | null; requested_by: number | null; status: string }>`
      select s.target, s.protocol_filter, s.requested_by, s.status from scan_requests s
      join organizations o on o.id = s.organization_id where o.uuid = ${organizationUuid} order by s.id`
      .execute(app.gatehouse.db)
      .then((r) => r.rows);

  test('the seed journey: register with an organization, verify by the mailed link, log in, scan → 202', async () => {
    const user = newUser({ organization_name: `Scanners ${uniqueName()}` });
    const registered = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(registered.statusCode, 201, registered.body);
    const account = json(registered);
    const organization = account.organization as Body;
    assert.equal(organization.role, 'admin');

    const login = () =>
      app.inject({
        method: 'POST',
        url: '/api/v1/login',
        payload: { username: user.username, password: user.password },
      });
    assertProblem(await login(), 403, 'EMAIL_NOT_VERIFIED');

    // The verification mail arrives over real SMTP; its link carries the token.
    const [mail] = await smtp.waitFor(String(account.email));
    const link = mail?.links.find((l) => l.includes('/verify-email?'));
    assert.ok(link, 'no verification link in the mail');
    const verified = await app.inject({
      method: 'POST',
      url: '/api/v1/verify-email',
      payload: { token: tokenFrom(link) },
    });
    assert.equal(verified.statusCode, 200, verified.body);

    const tokens = await login();
    assert.equal(tokens.statusCode, 200, tokens.body);
    const accessToken = String(json(tokens).access_token);

    const res = await call(app, 'POST', scanUrl(String(organization.uuid)), accessToken, {
      target: 'example.com',
      protocol_filter: 'sui',
    });
    assert.equal(res.statusCode, 202, res.body);
    const scan = json(res);
    assert.equal(scan.target, 'example.com');
    assert.equal(scan.protocol_filter, 'sui');
    assert.equal(scan.status, 'queued');
    assert.equal(scan.organization_uuid, organization.uuid);
    assert.equal(scan.requested_by, account.uuid);
    assert.match(String(scan.uuid), /^[0-9a-f-]{36}$/);
    assert.deepEqual(await scansOf(String(organization.uuid)), [
      { target: 'example.com', protocol_filter: 'sui', requested_by: Number(account.id), status: 'queued' },
    ]);

    const listed = await call(app, 'GET', `/api/v1/organizations/${String(organization.uuid)}/scans`, accessToken);
    assert.equal(listed.statusCode, 200, listed.body);
    assert.deepEqual(
      json<Body[]>(listed).map((s) => s.uuid),
      [scan.uuid],
    );
  });

  describe('the scan route requires role user', () => {
    let owner: SignedUp;
    let organizationUuid: string;
    const actors = {} as Record<'admin' | 'user' | 'viewer' | 'non-member', SignedIn>;

    before(async () => {
      owner = await signUp(app, { organization_name: `Roles ${uniqueName()}` });
      organizationUuid = String((owner.body.organization as Body).uuid);
      for (const role of ['admin', 'user', 'viewer'] as const) {
        actors[role] = await signUp(app);
        await addMember(app, organizationUuid, actors[role].id, role);
      }
      actors['non-member'] = await signUp(app);
    });

    const table: [string, number, string | undefined][] = [
      ['admin', 202, undefined],
      ['user', 202, undefined],
      ['viewer', 403, 'FORBIDDEN'],
      ['non-member', 404, 'NOT_FOUND'],
      ['anonymous', 401, 'UNAUTHORIZED'],
    ];
    for (const [actor, status, code] of table) {
      test(`POST scan as ${actor} → ${status}`, async () => {
        const token = actor === 'anonymous' ? undefined : actors[actor as keyof typeof actors].token;
        const target = `${uniqueName().replaceAll('_', '-')}.example.com`;
        const res = await call(app, 'POST', scanUrl(organizationUuid), token, { target, protocol_filter: 'sui' });
        const recorded = (await scansOf(organizationUuid)).some((s) => s.target === target);
        if (code) {
          assertProblem(res, status, code);
          assert.equal(recorded, false, 'a refused scan was recorded');
        } else {
          assert.equal(res.statusCode, status, res.body);
          assert.equal(recorded, true);
        }
      });
    }

    test('viewers may list scans (GET requires viewer); non-members get 404', async () => {
      const url = `/api/v1/organizations/${organizationUuid}/scans`;
      assert.equal((await call(app, 'GET', url, actors.viewer.token)).statusCode, 200);
      assertProblem(await call(app, 'GET', url, actors['non-member'].token), 404, 'NOT_FOUND');
    });

    test("cancelling needs the app's own permission scans:cancel: admins, and custom roles holding it", async () => {
      const queued = await call(app, 'POST', scanUrl(organizationUuid), actors.user.token, {
        target: 'cancel.example',
      });
      assert.equal(queued.statusCode, 202, queued.body);
      const cancelUrl = `/api/v1/organizations/${organizationUuid}/scans/${String(json(queued).uuid)}/cancel`;
      // The built-in user role holds none of the app's permissions.
      assertProblem(await call(app, 'POST', cancelUrl, actors.user.token), 403, 'FORBIDDEN');
      assertProblem(await call(app, 'POST', cancelUrl, actors['non-member'].token), 404, 'NOT_FOUND');

      const role = await call(app, 'POST', `/api/v1/organizations/${organizationUuid}/roles`, owner.token, {
        name: 'scan-operator',
        permissions: ['organization:read', 'resources:read', 'scans:cancel'],
      });
      assert.equal(role.statusCode, 201, role.body);
      const operator = await signUp(app);
      await addMember(app, organizationUuid, operator.id, 'scan-operator');
      const cancelled = await call(app, 'POST', cancelUrl, operator.token);
      assert.equal(cancelled.statusCode, 200, cancelled.body);
      assert.equal(json(cancelled).status, 'cancelled');
      assert.equal(json(cancelled).requested_by, actors.user.uuid);
      // Admins hold every permission the app declared.
      assert.equal((await call(app, 'POST', cancelUrl, owner.token)).statusCode, 200);
      assertProblem(
        await call(app, 'POST', `/api/v1/organizations/${organizationUuid}/scans/${randomUUID()}/cancel`, owner.token),
        404,
        'NOT_FOUND',
      );
      // The custom role can cancel but not start scans: it lacks resources:use, which role user requires.
      assertProblem(
        await call(app, 'POST', scanUrl(organizationUuid), operator.token, { target: 'example.com' }),
        403,
        'FORBIDDEN',
      );
    });

    test('unknown and malformed organization uuids answer 404 problem+json, not 500', async () => {
      for (const uuid of [randomUUID(), 'not-a-uuid', '%27%20or%201%3D1']) {
        assertProblem(
          await call(app, 'POST', scanUrl(uuid), owner.token, { target: 'example.com', protocol_filter: 'sui' }),
          404,
          'NOT_FOUND',
        );
      }
    });

    test('bad scan bodies answer problem+json: 422 for field rules, 400 for wrong types or unknown fields', async () => {
      const url = scanUrl(organizationUuid);
      for (const body of [
        {},
        { target: '' },
        { target: 'not a host!' },
        { target: 'example.com', protocol_filter: 'SUI!' },
      ]) {
        assertProblem(await call(app, 'POST', url, owner.token, body), 422, 'VALIDATION_ERROR');
      }
      assertProblem(await call(app, 'POST', url, owner.token, { target: 42 }), 400, 'MALFORMED_REQUEST');
      assertProblem(
        await call(app, 'POST', url, owner.token, { target: 'example.com', extra: true }),
        400,
        'MALFORMED_REQUEST',
      );
      assert.equal((await scansOf(organizationUuid)).filter((s) => s.target === 'not a host!').length, 0);
    });

    test('deleting the organization deletes its scan requests with it', async () => {
      const doomed = await signUp(app, { organization_name: `Doomed ${uniqueName()}` });
      const uuid = String((doomed.body.organization as Body).uuid);
      assert.equal((await call(app, 'POST', scanUrl(uuid), doomed.token, { target: 'example.org' })).statusCode, 202);
      assert.equal((await call(app, 'DELETE', `/api/v1/organizations/${uuid}`, doomed.token)).statusCode, 204);
      assert.deepEqual(await scansOf(uuid), []);
    });
  });
});

describe('requireOrgRole on a host with its own error handler', () => {
  let host: FastifyInstance;
  let owner: SignedUp;
  let viewer: SignedIn;
  let stranger: SignedIn;
  let organizationUuid: string;

  before(async () => {
    host = Fastify({ logger: false, pluginTimeout: 120_000 });
    // A host whose error format is not problem+json: the guard must not depend on it.
    host.setErrorHandler((_error, _request, reply) => reply.code(418).send({ teapot: true }));
    await host.register(gatehouse, { config: testConfig({ REDIS_KEY_PREFIX: `t:${uniqueName()}:` }) });
    host.register(async (child) => {
      child.get(
        '/api/v1/organizations/:orgId/reports',
        { preHandler: requireOrgRole('user', { param: 'orgId' }) },
        async (request) => ({
          organization: request.membership.organizationUuid,
          role: request.membership.role,
          user: request.auth.userUuid,
        }),
      );
      child.get('/api/v1/organizations/:uuid/broken', { onRequest: requireOrgRole('viewer') }, async () => {
        throw new AppError('CONFLICT');
      });
    });
    await host.ready();
    owner = await signUp(host, { organization_name: `Host ${uniqueName()}` });
    organizationUuid = String((owner.body.organization as Body).uuid);
    viewer = await signUp(host);
    await addMember(host, organizationUuid, viewer.id, 'viewer');
    stranger = await signUp(host);
  });
  after(() => host?.close());

  const reports = (uuid = organizationUuid) => `/api/v1/organizations/${uuid}/reports`;

  test('a member with the role passes and the route sees request.membership and request.auth', async () => {
    const res = await call(host, 'GET', reports(), owner.token);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res), { organization: organizationUuid, role: 'admin', user: owner.uuid });
  });

  test('refusals are problem+json from the guard itself: 401, 403, 404', async () => {
    const anonymous = assertProblem(await call(host, 'GET', reports()), 401, 'UNAUTHORIZED');
    assert.equal(anonymous.title, 'Authentication required');
    assertProblem(await call(host, 'GET', reports(), 'not.a.jwt'), 401, 'TOKEN_INVALID');
    assertProblem(await call(host, 'GET', reports(), viewer.token), 403, 'FORBIDDEN');
    assertProblem(await call(host, 'GET', reports(), stranger.token), 404, 'NOT_FOUND');
    assertProblem(await call(host, 'GET', reports('nope'), owner.token), 404, 'NOT_FOUND');
  });

  test("errors a host route throws after the guard still go to the host's own handler", async () => {
    const res = await call(host, 'GET', `/api/v1/organizations/${organizationUuid}/broken`, viewer.token);
    assert.equal(res.statusCode, 418);
    assert.deepEqual(json(res), { teapot: true });
  });

  test('an unknown role is refused when the route is declared, not when it is called', () => {
    assert.throws(() => requireOrgRole('owner' as 'admin'), /unknown role "owner"/);
  });
});
