import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { type GatehouseOptions, gatehouse, requireUser } from '../../src/plugin.ts';
import { json, logCapture, newUser, testConfig, uniqueName } from '../helpers.ts';

describe('gatehouse mounted in a host Fastify application', () => {
  let host: FastifyInstance;
  const logs = logCapture();

  before(async () => {
    // First start runs migrations: more than Fastify's default 10 s plugin timeout on a slow machine.
    host = Fastify({ logger: { level: 'info', stream: logs.stream }, pluginTimeout: 120_000 });
    host.get('/host/hello', async () => ({ hello: 'from the host' }));
    host.get('/host/boom', async () => {
      throw new Error('host failure');
    });
    const options = {
      config: testConfig({ REDIS_KEY_PREFIX: `t:${uniqueName('mount')}:` }),
      prefix: '/auth/',
      docs: true,
      metrics: false,
    } satisfies GatehouseOptions;
    await host.register(gatehouse, options);
    // A host route protected by the exported guard.
    host.get('/host/reports', { preHandler: requireUser }, async (request) => ({ for: request.auth.userUuid }));
    // The host serves Gatehouse's metrics on its own registry.
    host.get('/host/metrics', async (_request, reply) => {
      const merged = Registry.merge([host.gatehouse.metrics.registry, new Registry()]);
      return reply.type(merged.contentType).send(await merged.metrics());
    });
    await host.ready();
  });
  after(() => host.close());

  test('the API answers under the custom prefix, and only there', async () => {
    const user = newUser();
    const res = await host.inject({ method: 'POST', url: '/auth/register', payload: user });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(json(res).username, user.username);
    const login = await host.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { username: user.username, password: user.password },
    });
    assert.equal(login.statusCode, 403, 'the flow runs (email not verified yet)');
    assert.equal(json(login).code, 'EMAIL_NOT_VERIFIED');
    const old = await host.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
    assert.equal(old.statusCode, 404);
  });

  test("the host protects its own routes with Gatehouse's requireUser", async () => {
    const user = newUser();
    const created = await host.inject({ method: 'POST', url: '/auth/register', payload: user });
    await host.gatehouse.db
      .updateTable('users')
      .set({ email_verified_at: new Date() })
      .where('uuid', '=', String(json(created).uuid))
      .execute();
    const login = await host.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { username: user.username, password: user.password },
    });
    assert.equal(login.statusCode, 200, login.body);
    const anonymous = await host.inject('/host/reports');
    assert.equal(anonymous.statusCode, 401);
    const res = await host.inject({
      url: '/host/reports',
      headers: { authorization: `Bearer ${String(json(login).access_token)}` },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res), { for: json(created).uuid });
  });

  test('the host keeps its own routes, error handler and 404', async () => {
    const hello = await host.inject('/host/hello');
    assert.deepEqual(json(hello), { hello: 'from the host' });
    const boom = await host.inject('/host/boom');
    assert.equal(boom.statusCode, 500);
    assert.match(String(boom.headers['content-type']), /^application\/json/, 'not turned into problem+json');
    const missing = await host.inject('/host/nothing-here');
    assert.equal(missing.statusCode, 404);
    assert.match(String(missing.headers['content-type']), /^application\/json/);
  });

  test('errors inside the prefix are problem+json, whatever the host does elsewhere', async () => {
    const bad = await host.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { 'content-type': 'application/json' },
      payload: '{"email": ',
    });
    assert.equal(bad.statusCode, 400);
    assert.match(String(bad.headers['content-type']), /^application\/problem\+json/);
    assert.equal(json(bad).code, 'MALFORMED_REQUEST');
    const unknown = await host.inject('/auth/no-such-route');
    assert.equal(unknown.statusCode, 404);
    assert.match(String(unknown.headers['content-type']), /^application\/problem\+json/);
    assert.equal(json(unknown).type, '/problems/not-found');
    const unauthorized = await host.inject('/auth/me');
    assert.equal(json(unauthorized).code, 'UNAUTHORIZED');
  });

  test('docs and the OpenAPI document describe the mounted paths only', async () => {
    const docs = await host.inject('/docs/');
    assert.equal(docs.statusCode, 200);
    assert.match(docs.body, /swagger/i);
    const doc = json<{
      paths: Record<string, unknown>;
      components: { securitySchemes: { oauth2: { flows: { password: { tokenUrl: string } } } } };
    }>(await host.inject('/openapi.json'));
    assert.ok(doc.paths['/auth/register']);
    assert.ok(doc.paths['/auth/admin/users']);
    assert.equal(doc.paths['/api/v1/register'], undefined);
    assert.equal(doc.paths['/host/hello'], undefined, "the host's routes are its own business");
    assert.equal(doc.components.securitySchemes.oauth2.flows.password.tokenUrl, '/auth/login');
  });

  test("Gatehouse logs through the host's logger", async () => {
    const user = newUser();
    await host.inject({ method: 'POST', url: '/auth/register', payload: user });
    await host.gatehouse.outbox.drain();
    const mine = logs.lines.map((l) => JSON.parse(l) as { msg?: string; req?: { url?: string } });
    assert.ok(mine.some((l) => l.req?.url === '/auth/register'));
    assert.ok(
      mine.some((l) => l.msg?.startsWith('development mail sink')),
      'a Gatehouse service (the mail sink) wrote to the host stream',
    );
    assert.ok(!logs.lines.some((l) => l.includes(user.password)), 'no password in the host logs');
  });

  test('metrics: false leaves /metrics to the host, which can merge the Gatehouse registry', async () => {
    assert.equal((await host.inject('/metrics')).statusCode, 404);
    const res = await host.inject('/host/metrics');
    assert.match(res.body, /gatehouse_http_requests_total\{method="POST",route="\/auth\/register",status="201"\} \d+/);
  });

  test('operations routes (health, readiness) are mounted beside the API', async () => {
    assert.equal((await host.inject('/healthz')).statusCode, 200);
    assert.equal((await host.inject('/readyz')).statusCode, 200);
  });
});
