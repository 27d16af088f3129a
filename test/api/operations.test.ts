import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, startApp } from '../helpers.ts';

let app: FastifyInstance;
before(async () => {
  app = await startApp();
});
after(() => app.close());

test('GET /healthz answers 200', async () => {
  const res = await app.inject('/healthz');
  assert.equal(res.statusCode, 200);
  assert.equal(json(res).status, 'ok');
});

test('GET /readyz reports the database', async () => {
  const res = await app.inject('/readyz');
  assert.equal(res.statusCode, 200);
  assert.equal((json(res).checks as Record<string, string>).database, 'ok');
});

test('GET /openapi.json is OpenAPI 3.1 generated from the route schemas', async () => {
  const res = await app.inject('/openapi.json');
  assert.equal(res.statusCode, 200);
  const doc = json<{
    openapi: string;
    paths: Record<
      string,
      Record<string, { requestBody?: { content: Record<string, unknown> }; responses: Record<string, unknown> }>
    >;
    components: { securitySchemes: Record<string, { type: string; flows?: { password?: { tokenUrl: string } } }> };
  }>(res);
  assert.equal(doc.openapi, '3.1.0');
  const register = doc.paths['/api/v1/register']?.post;
  assert.ok(register, 'register route documented');
  assert.ok(register.requestBody?.content['application/json']);
  assert.ok(register.requestBody?.content['application/x-www-form-urlencoded']);
  assert.ok(register.responses['201']);
  assert.ok(register.responses['422']);
  assert.equal(doc.components.securitySchemes.oauth2?.flows?.password?.tokenUrl, '/api/v1/login');
});

test('GET /docs serves the interactive documentation', async () => {
  const res = await app.inject('/docs/');
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /text\/html/);
  assert.match(res.body, /swagger/i);
});

test('an unknown path answers 404 problem+json', async () => {
  for (const url of ['/nope', '/api/v1/nope']) {
    const res = await app.inject(url);
    assert.equal(res.statusCode, 404);
    assert.match(String(res.headers['content-type']), /application\/problem\+json/);
    assert.equal(json(res).code, 'NOT_FOUND');
  }
});

test('each problem type is a page that explains the problem and its fix', async () => {
  const res = await app.inject('/problems/password-policy');
  assert.equal(res.statusCode, 200);
  assert.match(res.body, /Password does not meet security requirements/);
  assert.match(res.body, /How to fix it/);
  assert.equal((await app.inject('/problems/no-such-problem')).statusCode, 404);
});
