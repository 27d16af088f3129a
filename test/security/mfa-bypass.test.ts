import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createAccount, login, loginRequest, startAuthApp, type TestAccount } from '../api/auth-helpers.ts';
import { json } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { type Authenticator, bearer, enrol, postJson } from '../support/mfa.ts';
import { openForm, setCookies } from '../support/page-form.ts';
import { assertProblem } from '../support/problem.ts';

/**
 * An attacker who knows the password, but not the second factor, tries every
 * path that issues tokens, and replays codes in parallel.
 */
describe('second factor: no token without the factor, no code twice', () => {
  const clock = testClock();
  let app: FastifyInstance;

  before(async () => {
    app = await startAuthApp({ LOCKOUT_THRESHOLD: '20' }, { clock });
  });
  after(() => app.close());

  async function enrolled(): Promise<{ account: TestAccount; authenticator: Authenticator; backupCodes: string[] }> {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const { authenticator, backupCodes } = await enrol(app, tokens.access_token, clock);
    return { account, authenticator, backupCodes };
  }

  const sessionCount = async (userId: number) =>
    (await app.gatehouse.db.selectFrom('sessions').select('id').where('user_id', '=', userId).execute()).length;

  async function mfaToken(account: TestAccount): Promise<string> {
    return String(
      assertProblem(await loginRequest(app, account.username, account.password), 403, 'MFA_REQUIRED').mfa_token,
    );
  }

  const noTokens = (res: LightMyRequestResponse) => {
    assert.ok(!res.body.includes('access_token'), res.body);
    assert.ok(!setCookies(res).some((c) => /refresh|session/i.test(c.split('=')[0] as string)), setCookies(res).join());
  };

  test('every token-issuing path refuses the password alone and creates no session', async () => {
    const { account } = await enrolled();
    const before = await sessionCount(account.id);
    const credentials = { username: account.username, password: account.password };

    // Password grant, form and JSON; the JSON alias.
    for (const res of [
      await loginRequest(app, account.username, account.password),
      await postJson(app, '/api/v1/login', credentials),
      await postJson(app, '/api/v1/login/json', credentials),
    ]) {
      assertProblem(res, 403, 'MFA_REQUIRED');
      noTokens(res);
    }
    // A JSON body posted to the login page's path reaches the API route, with the same answer.
    const pageJson = await postJson(app, '/login', credentials);
    assertProblem(pageJson, 403, 'MFA_REQUIRED');
    noTokens(pageJson);
    // The login page's form: it asks for the code, and sets no session cookie.
    const form = await openForm(app, '/login');
    const page = await form.post(credentials);
    assert.equal(page.statusCode, 200, page.body.slice(0, 300));
    assert.match(page.body, /autocomplete="one-time-code"/);
    noTokens(page);
    assert.equal(await sessionCount(account.id), before);
    // There is no session to refresh: the only refresh tokens are those of sessions that exist.
    const refresh = await postJson(app, '/api/v1/refresh', { refresh_token: await mfaToken(account) });
    assertProblem(refresh, 401, 'TOKEN_INVALID');
  });

  test('an mfa_token is not accepted as a bearer token by any route', async () => {
    const { account } = await enrolled();
    const token = await mfaToken(account);
    for (const [method, url] of [
      ['GET', '/api/v1/me'],
      ['GET', '/api/v1/sessions'],
      ['POST', '/api/v1/mfa/totp/setup'],
      ['POST', '/api/v1/logout'],
    ] as const) {
      const res = await app.inject({ method, url, headers: bearer(token) });
      assert.equal(res.statusCode, 401, `${method} ${url}: ${res.body}`);
    }
  });

  test('one code, two parallel logins: exactly one session', async () => {
    const { account, authenticator } = await enrolled();
    const [a, b] = [await mfaToken(account), await mfaToken(account)];
    const code = authenticator.code();
    const before = await sessionCount(account.id);
    const answers = await Promise.all([
      postJson(app, '/api/v1/login/mfa', { mfa_token: a, code }),
      postJson(app, '/api/v1/login/mfa', { mfa_token: b, code }),
    ]);
    const statuses = answers.map((r) => r.statusCode).sort();
    assert.deepEqual(statuses, [200, 401], answers.map((r) => r.body).join('\n'));
    assertProblem(answers.find((r) => r.statusCode === 401) as LightMyRequestResponse, 401, 'INVALID_MFA_CODE');
    assert.equal(await sessionCount(account.id), before + 1);
  });

  test('one mfa_token, parallel requests with different codes: at most one session', async () => {
    const { account, backupCodes } = await enrolled();
    const token = await mfaToken(account);
    const before = await sessionCount(account.id);
    const answers = await Promise.all(
      backupCodes
        .slice(0, 4)
        .map((code) => postJson(app, '/api/v1/login/mfa', { mfa_token: token, backup_code: code })),
    );
    const ok = answers.filter((r) => r.statusCode === 200);
    assert.equal(ok.length, 1, answers.map((r) => r.body).join('\n'));
    for (const res of answers.filter((r) => r.statusCode !== 200)) assertProblem(res, 401, 'TOKEN_INVALID');
    assert.equal(await sessionCount(account.id), before + 1);
  });

  test('one backup code, parallel logins: it works once', async () => {
    const { account, backupCodes } = await enrolled();
    const tokens = await Promise.all([mfaToken(account), mfaToken(account), mfaToken(account)]);
    const code = backupCodes[0] as string;
    const answers = await Promise.all(
      tokens.map((token) => postJson(app, '/api/v1/login/mfa', { mfa_token: token, backup_code: code })),
    );
    assert.equal(answers.filter((r) => r.statusCode === 200).length, 1, answers.map((r) => r.body).join('\n'));
    for (const res of answers.filter((r) => r.statusCode !== 200)) assertProblem(res, 401, 'INVALID_MFA_CODE');
  });

  test('a code used for a step-up cannot be replayed at login', async () => {
    const { account, authenticator } = await enrolled();
    const tokens = json<{ access_token: string }>(
      await postJson(app, '/api/v1/login/mfa', { mfa_token: await mfaToken(account), code: authenticator.code() }),
    );
    authenticator.nextStep();
    const code = authenticator.code();
    const step = await postJson(
      app,
      '/api/v1/reauthenticate',
      { password: account.password, code },
      bearer(tokens.access_token),
    );
    assert.equal(step.statusCode, 200, step.body);
    assertProblem(
      await postJson(app, '/api/v1/login/mfa', { mfa_token: await mfaToken(account), code }),
      401,
      'INVALID_MFA_CODE',
    );
  });

  test('an mfa_token issued for the API does not complete a page login, nor the reverse', async () => {
    const { account, authenticator } = await enrolled();
    const apiToken = await mfaToken(account);
    const form = await openForm(app, '/login');
    const page = await form.post({ mfa_token: apiToken, code: authenticator.code() }, {}, '/login/mfa');
    assert.equal(page.statusCode, 401, page.body.slice(0, 300));
    noTokens(page);
  });
});
