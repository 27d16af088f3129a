/**
 * The attack: answers a browser could sniff or frame. `/docs`, `/problems/*`
 * and every API answer lacked `X-Content-Type-Options: nosniff`, and the
 * HTML ones a Content-Security-Policy and frame protection. Now every answer
 * (API, pages, docs, problem pages, metrics, 404s, errors, malformed URLs)
 * says nosniff, and every HTML answer has a CSP with `frame-ancestors
 * 'none'`, X-Frame-Options and a Referrer-Policy. The docs page's CSP allows
 * only what Swagger UI needs (its own files, a hash for its logo's style, no
 * 'unsafe-inline'); Chromium, when installed, loads it with no violation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { createAccount, login, startAuthApp } from '../api/auth-helpers.ts';
import { launchChromium, skipWithoutChromium } from '../browser/support.ts';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

describe('response headers', () => {
  let app: FastifyInstance;
  let access: string;

  before(async () => {
    app = await startAuthApp({ METRICS_TOKEN });
    access = (await login(app, await createAccount(app))).access_token;
  });
  after(() => app.close());

  const answers = (): [string, InjectOptions, number][] => [
    ['an API success', { url: '/api/v1/me', headers: { authorization: `Bearer ${access}` } }, 200],
    ['an API error', { url: '/api/v1/me' }, 401],
    ['a validation error', { method: 'POST', url: '/api/v1/register', payload: {} }, 422],
    ['an unknown API path', { url: '/api/v1/nothing-here' }, 404],
    ['an unknown path', { url: '/nothing-here' }, 404],
    ['a malformed URL', { url: '/api/v1/%E0%A4%A' }, 400],
    ['the health check', { url: '/healthz' }, 200],
    ['the OpenAPI document', { url: '/openapi.json' }, 200],
    ['the JWKS', { url: '/.well-known/jwks.json' }, 200],
    ['metrics', { url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } }, 200],
    ['the docs page', { url: '/docs' }, 200],
    ['a docs script', { url: '/docs/static/swagger-initializer.js' }, 200],
    ['a problem page', { url: '/problems/token-invalid' }, 200],
    ['an unknown problem page', { url: '/problems/no-such-problem' }, 404],
    ['a page', { url: '/login' }, 200],
    [
      'a page error',
      {
        method: 'POST',
        url: '/login',
        payload: 'a=1',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      },
      403,
    ],
    ['the stylesheet', { url: '/gatehouse.css' }, 200],
  ];

  test('every answer, success or error, says X-Content-Type-Options: nosniff', async () => {
    for (const [what, request, status] of answers()) {
      const res = await app.inject(request);
      assert.equal(res.statusCode, status, `${what}: ${res.body.slice(0, 300)}`);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', what);
    }
  });

  test('every HTML answer has a CSP refusing framing, X-Frame-Options and a Referrer-Policy', async () => {
    let html = 0;
    for (const [what, request] of answers()) {
      const res = await app.inject(request);
      if (!String(res.headers['content-type']).startsWith('text/html')) continue;
      html += 1;
      const csp = String(res.headers['content-security-policy']);
      assert.match(csp, /frame-ancestors 'none'/, what);
      assert.match(csp, /default-src 'none'/, what);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, what);
      assert.equal(res.headers['x-frame-options'], 'DENY', what);
      assert.match(String(res.headers['referrer-policy']), /^(no-referrer|same-origin)$/, what);
    }
    assert.ok(html >= 4, 'the docs, a problem page, a page and a page error are HTML');
  });

  test('the pages keep their own strict CSP (forms post to this site only)', async () => {
    const csp = String((await app.inject('/login')).headers['content-security-policy']);
    assert.match(csp, /form-action 'self'/);
    assert.match(csp, /style-src 'self'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  });

  describe('the docs page in Chromium', { skip: skipWithoutChromium() }, () => {
    test('Swagger UI renders the operations and the Authorize dialog with no CSP violation', async () => {
      const base = await app.listen({ port: 0, host: '127.0.0.1' });
      const browser = await launchChromium();
      try {
        const page = await browser.newPage();
        const violations: string[] = [];
        page.on('console', (message) => {
          if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
        });
        await page.goto(`${base}/docs`);
        await page.waitForSelector('.opblock', { timeout: 30_000 });
        await page.locator('.opblock-summary').first().click();
        await page.locator('button.authorize').first().click();
        await page.waitForSelector('.auth-container', { timeout: 10_000 });
        assert.ok((await page.locator('.opblock').count()) > 10, 'the operations are listed');
        assert.deepEqual(violations, []);
      } finally {
        await browser.close();
      }
    });
  });
});
