import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { startApp, uniqueName } from '../helpers.ts';

const ALLOWED = 'https://app.example.com';

describe('CORS (CORS_ORIGINS)', () => {
  let app: FastifyInstance;
  let closed: FastifyInstance;

  before(async () => {
    app = await startApp({
      CORS_ORIGINS: `${ALLOWED}, https://admin.example.com/`,
      REDIS_KEY_PREFIX: `t:${uniqueName('cors')}:`,
    });
    closed = await startApp({ REDIS_KEY_PREFIX: `t:${uniqueName('cors')}:` });
  });
  after(async () => {
    await app.close();
    await closed.close();
  });

  const preflight = (target: FastifyInstance, origin: string, url = '/api/v1/login') =>
    target.inject({
      method: 'OPTIONS',
      url,
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, authorization',
      },
    });

  test('a preflight from a listed origin is answered with that origin, credentials and the allowed headers', async () => {
    const res = await preflight(app, ALLOWED);
    assert.equal(res.statusCode, 204, res.body);
    assert.equal(res.headers['access-control-allow-origin'], ALLOWED);
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    assert.match(String(res.headers['access-control-allow-methods']), /POST/);
    assert.match(String(res.headers['access-control-allow-headers']), /Authorization/i);
    assert.equal(res.headers['access-control-max-age'], '600');
    assert.match(String(res.headers.vary), /Origin/i);
  });

  test('a listed origin written with a trailing slash still matches', async () => {
    const res = await preflight(app, 'https://admin.example.com', '/api/v1/register');
    assert.equal(res.headers['access-control-allow-origin'], 'https://admin.example.com');
  });

  test('an actual request from a listed origin carries the CORS headers, errors included', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { origin: ALLOWED, 'content-type': 'application/json' },
      payload: '{',
    });
    assert.equal(res.statusCode, 400);
    assert.equal(res.headers['access-control-allow-origin'], ALLOWED);
    assert.match(String(res.headers['access-control-expose-headers']), /Retry-After/);
  });

  test('an origin not in the list gets no CORS headers, so the browser keeps it out', async () => {
    const res = await preflight(app, 'https://evil.example.net');
    assert.equal(res.headers['access-control-allow-origin'], undefined);
    assert.equal(res.headers['access-control-allow-credentials'], undefined);
    const get = await app.inject({ url: '/api/v1/me', headers: { origin: 'https://evil.example.net' } });
    assert.equal(get.headers['access-control-allow-origin'], undefined);
  });

  test('without CORS_ORIGINS no route sends CORS headers', async () => {
    const res = await preflight(closed, ALLOWED);
    assert.equal(res.headers['access-control-allow-origin'], undefined);
    const get = await closed.inject({ url: '/api/v1/me', headers: { origin: ALLOWED } });
    assert.equal(get.headers['access-control-allow-origin'], undefined);
  });

  test('CORS_ORIGINS=* allows any origin but never with credentials', async () => {
    const open = await startApp({ CORS_ORIGINS: '*', REDIS_KEY_PREFIX: `t:${uniqueName('cors')}:` });
    try {
      const res = await preflight(open, 'https://anywhere.example.org');
      assert.equal(res.headers['access-control-allow-origin'], '*');
      assert.equal(res.headers['access-control-allow-credentials'], undefined);
    } finally {
      await open.close();
    }
  });
});
