import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { captchaToken } from '../../src/infra/captcha.ts';
import { type SiteverifyServer, startSiteverifyServer, TOKENS } from '../fixtures/siteverify-server.ts';
import { logCapture, newUser, scrapeMetrics, startApp, TEST_METRICS_TOKEN } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';

const SECRET = 'test-secret-0x0000000000000000000000000000000AA';
const FIELDS = {
  hcaptcha: 'h-captcha-response',
  recaptcha: 'g-recaptcha-response',
  turnstile: 'cf-turnstile-response',
} as const;

for (const provider of ['hcaptcha', 'recaptcha', 'turnstile'] as const) {
  describe(`registration with CAPTCHA_PROVIDER=${provider}`, () => {
    let server: SiteverifyServer;
    let app: FastifyInstance;
    const logs = logCapture();

    before(async () => {
      server = await startSiteverifyServer(provider, SECRET);
      app = await startApp(
        {
          CAPTCHA_PROVIDER: provider,
          CAPTCHA_SITE_KEY: 'site-key-1',
          CAPTCHA_SECRET_KEY: SECRET,
          CAPTCHA_VERIFY_URL: server.url,
          // Long enough for a loaded machine to answer; the hang token waits forever anyway.
          CAPTCHA_TIMEOUT_MS: '2000',
          METRICS_TOKEN: TEST_METRICS_TOKEN,
        },
        { logger: { level: 'info', stream: logs.stream } },
      );
    });
    after(async () => {
      await app.close();
      await server.close();
    });

    const register = (extra: Record<string, string>, form = false) => {
      const user = { ...newUser(), ...extra } as Record<string, string>;
      return form
        ? app.inject({
            method: 'POST',
            url: '/api/v1/register',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            payload: new URLSearchParams(user).toString(),
            remoteAddress: '198.51.100.20',
          })
        : app.inject({ method: 'POST', url: '/api/v1/register', payload: user, remoteAddress: '198.51.100.20' });
    };

    test('without a token the answer is 422 CAPTCHA_FAILED and the provider is not asked', async () => {
      server.requests.length = 0;
      assertProblem(await register({}), 422, 'CAPTCHA_FAILED');
      assertProblem(await register({ captcha_token: '' }), 422, 'CAPTCHA_FAILED');
      assert.equal(server.requests.length, 0);
    });

    test(`the widget's own form field (${FIELDS[provider]}) is verified with the siteverify form POST`, async () => {
      server.requests.length = 0;
      const res = await register({ [FIELDS[provider]]: TOKENS.valid }, true);
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(server.requests.length, 1);
      const [request] = server.requests;
      assert.match(String(request?.contentType), /^application\/x-www-form-urlencoded/);
      assert.equal(request?.form.secret, SECRET);
      assert.equal(request?.form.response, TOKENS.valid);
      assert.equal(request?.form.remoteip, '198.51.100.20');
      if (provider === 'hcaptcha') assert.equal(request?.form.sitekey, 'site-key-1');
    });

    test('JSON clients may send captcha_token', async () => {
      assert.equal((await register({ captcha_token: TOKENS.valid })).statusCode, 201);
    });

    test('a token the provider rejects answers 422 CAPTCHA_FAILED and creates nothing', async () => {
      const user = newUser({ captcha_token: 'forged-token' });
      const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
      assertProblem(res, 422, 'CAPTCHA_FAILED');
      const rows = await app.gatehouse.db.selectFrom('users').select('id').where('email', '=', user.email).execute();
      assert.equal(rows.length, 0);
    });

    test('a provider that times out or fails answers 503 SERVICE_UNAVAILABLE with Retry-After', async () => {
      for (const token of [TOKENS.hang, TOKENS.error]) {
        const res = await register({ captcha_token: token });
        const body = assertProblem(res, 503, 'SERVICE_UNAVAILABLE');
        assert.ok(Number(res.headers['retry-after']) > 0);
        assert.equal(body.retry_after, Number(res.headers['retry-after']));
      }
      assert.ok(logs.lines.some((l) => l.includes('CAPTCHA provider unavailable')));
    });

    test('the outcomes are counted in /metrics', async () => {
      const res = await scrapeMetrics(app);
      assert.equal(res.statusCode, 200);
      for (const outcome of ['success', 'rejected', 'missing', 'unavailable']) {
        assert.match(
          res.body,
          new RegExp(`gatehouse_captcha_verifications_total\\{provider="${provider}",outcome="${outcome}"\\} [1-9]`),
        );
      }
    });

    test('the token and secret never reach a log line', () => {
      assert.ok(!logs.lines.some((l) => l.includes(SECRET) || l.includes(TOKENS.valid)));
    });
  });
}

describe('CAPTCHA configuration', () => {
  test('a secret key the provider refuses is our fault: 503, logged as an error, not CAPTCHA_FAILED', async () => {
    const server = await startSiteverifyServer('turnstile', SECRET);
    const logs = logCapture();
    const app = await startApp(
      { CAPTCHA_PROVIDER: 'turnstile', CAPTCHA_SECRET_KEY: 'wrong-secret', CAPTCHA_VERIFY_URL: server.url },
      { logger: { level: 'info', stream: logs.stream } },
    );
    try {
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/register',
        payload: newUser({ captcha_token: TOKENS.valid }),
      });
      assertProblem(res, 503, 'SERVICE_UNAVAILABLE');
      const error = logs.lines.map((l) => JSON.parse(l)).find((l) => l.msg?.includes('refused our secret key'));
      assert.equal(error?.level, 50);
      assert.deepEqual(error?.errorCodes, ['invalid-input-secret']);
    } finally {
      await app.close();
      await server.close();
    }
  });

  test('without CAPTCHA_PROVIDER no token is needed', async () => {
    const app = await startApp({ CAPTCHA_PROVIDER: undefined });
    try {
      assert.equal(app.gatehouse.captcha, undefined);
      assert.equal((await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() })).statusCode, 201);
    } finally {
      await app.close();
    }
  });

  test('the token is read from the first non-empty known field', () => {
    assert.equal(captchaToken({ 'g-recaptcha-response': ' abc ' }), 'abc');
    assert.equal(captchaToken({ 'h-captcha-response': '', captcha_token: 'x' }), 'x');
    assert.equal(captchaToken({ captcha_token: 42 }), undefined);
    assert.equal(captchaToken(null), undefined);
  });
});
