/**
 * The attack: telling registered usernames and addresses from unknown ones
 * at the login, by the answer or by the time it takes (a service that skips
 * the password hash for an unknown user answers it many times faster).
 * Gatehouse takes one path for both (`loginWithPassword`,
 * src/flows/login.ts): an unknown user costs one password verification
 * against a dummy hash of the current algorithm and parameters
 * (`PasswordHasher.verifyDummy`, src/infra/passwords.ts; made at start
 * without hashing, so the first unknown user costs no more), a wrong password
 * one verification against the stored hash, and both answer 401
 * INVALID_CREDENTIALS with the same body. The account's state (disabled,
 * unverified) is told only to the right password. No timing is measured
 * here: the cost is counted as the verifications the hash pool ran
 * (`hashPool.completed`), and the answers are compared byte for byte.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createAccount, startAuthApp, type TestAccount } from '../api/auth-helpers.ts';
import { json, uniqueName } from '../helpers.ts';
import { Browser } from '../support/browser.ts';

/** Headers that differ between any two answers: the date, the request id, the per-IP rate-limit count. */
const VOLATILE = /^(date|x-request-id|ratelimit-remaining|ratelimit-reset|ratelimit|ratelimit-policy|x-ratelimit-.*)$/;

interface Seen {
  status: number;
  headers: Record<string, unknown>;
  body: string;
  /** Password verifications the hash pool ran while answering. */
  hashes: number;
}

async function observe(app: FastifyInstance, send: () => Promise<LightMyRequestResponse>): Promise<Seen> {
  const before = app.gatehouse.hashPool.completed;
  const res = await send();
  const headers = Object.fromEntries(Object.entries(res.headers).filter(([name]) => !VOLATILE.test(name)));
  return { status: res.statusCode, headers, body: res.body, hashes: app.gatehouse.hashPool.completed - before };
}

function apiLogin(app: FastifyInstance, username: string, password: string) {
  return () =>
    app.inject({
      method: 'POST',
      url: '/api/v1/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ grant_type: 'password', username, password }).toString(),
    });
}

function jsonLogin(app: FastifyInstance, username: string, password: string) {
  return () => app.inject({ method: 'POST', url: '/api/v1/login/json', payload: { username, password } });
}

for (const [hasher, env] of [
  ['argon2id', {}],
  ['bcrypt', { PASSWORD_HASHER: 'bcrypt', BCRYPT_ROUNDS: '4' }],
] as const) {
  describe(`login of an unknown user and a wrong password, PASSWORD_HASHER=${hasher}`, () => {
    let app: FastifyInstance;
    let account: TestAccount;

    before(async () => {
      app = await startAuthApp(env);
      account = await createAccount(app);
    });
    after(() => app.close());

    test('an unknown username and a wrong password each cost exactly one hash verification and answer byte for byte alike', async () => {
      for (const transport of [apiLogin, jsonLogin]) {
        const unknown = await observe(app, transport(app, uniqueName('nobody'), 'Wrong-password-1!'));
        const wrong = await observe(app, transport(app, account.username, 'Wrong-password-1!'));
        assert.equal(unknown.hashes, 1, 'unknown user: one verification, against the dummy hash');
        assert.equal(wrong.hashes, 1, 'wrong password: one verification, against the stored hash');
        assert.deepEqual(unknown, wrong);
        assert.equal(unknown.status, 401);
        assert.deepEqual(JSON.parse(unknown.body), {
          type: '/problems/invalid-credentials',
          title: 'Invalid username or password',
          status: 401,
          detail: 'Invalid username or password',
          code: 'INVALID_CREDENTIALS',
          error: 'invalid_grant',
        });
      }
    });

    test('an unknown e-mail address and a wrong password for a known one answer alike, one verification each', async () => {
      const unknown = await observe(app, apiLogin(app, `${uniqueName('nobody')}@example.com`, 'Wrong-password-1!'));
      const wrong = await observe(app, apiLogin(app, account.email, 'Wrong-password-1!'));
      assert.deepEqual(unknown, wrong);
      assert.equal(wrong.hashes, 1);
    });

    test('a disabled or unverified account with a wrong password answers like an unknown user', async () => {
      const disabled = await createAccount(app);
      await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', disabled.id).execute();
      const unverified = await createAccount(app, {}, { verified: false });
      const unknown = await observe(app, apiLogin(app, uniqueName('nobody'), 'Wrong-password-1!'));
      for (const who of [disabled, unverified]) {
        const wrong = await observe(app, apiLogin(app, who.username, 'Wrong-password-1!'));
        assert.deepEqual(wrong, unknown, who.username);
      }
      // Only the right password learns the state: 403 with its own code.
      const right = await apiLogin(app, disabled.username, disabled.password)();
      assert.equal(right.statusCode, 403);
      assert.equal(json(right).code, 'ACCOUNT_DISABLED');
    });

    test('the login page answers an unknown user and a wrong password with the same page, one verification each', async () => {
      const page = async (username: string) => {
        const browser = new Browser(app);
        const csrf = await browser.csrfToken('/login');
        return observe(app, () =>
          browser.post('/login', { csrf_token: csrf, username, password: 'Wrong-password-1!' }),
        );
      };
      // The form shows the username typed again: an unknown one of the same length, so that only it differs.
      const last = account.username.at(-1) === '9' ? '8' : '9';
      const unknownName = `${account.username.slice(0, -1)}${last}`;
      const wrong = await page(account.username);
      const unknown = await page(unknownName);
      const blank = (seen: Seen, name: string) => ({
        ...seen,
        body: seen.body.replace(/name="csrf_token" value="[^"]+"/g, '').replace(`value="${name}"`, 'value=""'),
      });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.hashes, 1);
      assert.equal(unknown.hashes, 1);
      assert.deepEqual(blank(unknown, unknownName), blank(wrong, account.username));
    });
  });
}
