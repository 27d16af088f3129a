/**
 * The attack: `/metrics` was public on the application port. Anyone could
 * read the routes, traffic, login outcomes, lockouts and queue depths. Now
 * it is served only with METRICS_TOKEN (a bearer token of at least 16 bytes,
 * compared in constant time) or on a port of its own (METRICS_PORT on
 * METRICS_HOST, default 127.0.0.1); with neither, `/metrics` is 404.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/config.ts';
import { startAuthApp } from '../api/auth-helpers.ts';
import { testConfig } from '../helpers.ts';
import { freePort } from '../support/ports.ts';
import { assertProblem } from '../support/problem.ts';

const TOKEN = 'metrics-token-0123456789abcdef';

describe('metrics exposure', () => {
  test('without METRICS_TOKEN or METRICS_PORT /metrics is not served on the application port (404)', async () => {
    const app = await startAuthApp();
    try {
      assertProblem(await app.inject('/metrics'), 404, 'NOT_FOUND');
      assertProblem(await app.inject({ url: '/metrics', headers: { authorization: 'Bearer x' } }), 404, 'NOT_FOUND');
    } finally {
      await app.close();
    }
  });

  test('with METRICS_TOKEN a scrape without the token, or with another, is 401; with it, 200', async () => {
    const app = await startAuthApp({ METRICS_TOKEN: TOKEN });
    try {
      assert.equal(assertProblem(await app.inject('/metrics'), 401, 'UNAUTHORIZED').code, 'UNAUTHORIZED');
      for (const authorization of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, TOKEN, `Basic ${TOKEN}`]) {
        const res = await app.inject({ url: '/metrics', headers: { authorization } });
        assertProblem(res, 401, 'UNAUTHORIZED');
        assert.doesNotMatch(res.body, /gatehouse_/);
      }
      const res = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(res.statusCode, 200);
      assert.match(res.body, /^# TYPE gatehouse_http_requests_total counter$/m);
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
    } finally {
      await app.close();
    }
  });

  test('a METRICS_TOKEN shorter than 16 bytes stops start-up', () => {
    assert.throws(
      () => testConfig({ METRICS_TOKEN: 'short-token' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.variable, 'METRICS_TOKEN');
        return true;
      },
    );
  });

  test('with METRICS_PORT /metrics is served there, on 127.0.0.1 by default, and not on the application port', async () => {
    const port = await freePort();
    const app = await startAuthApp({ METRICS_PORT: String(port), METRICS_TOKEN: TOKEN });
    try {
      const base = await app.listen({ port: 0, host: '127.0.0.1' });
      assert.equal((await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
      const denied = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(denied.status, 401, 'METRICS_TOKEN is asked for on the metrics port too');
      const scraped = await fetch(`http://127.0.0.1:${port}/metrics`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(scraped.status, 200);
      assert.match(await scraped.text(), /gatehouse_http_requests_total/);
      assert.equal(scraped.headers.get('x-content-type-options'), 'nosniff');
      assert.equal((await fetch(`http://127.0.0.1:${port}/api/v1/me`)).status, 404, 'nothing else on that port');
    } finally {
      await app.close();
    }
    await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'the metrics port closes with the app');
  });
});
