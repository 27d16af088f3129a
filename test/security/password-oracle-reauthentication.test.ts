/**
 * The attack: re-authentication as a password oracle. Whoever held an access
 * token could ask DELETE /api/v1/me whether a password was right as often as
 * they liked: no rate limit, no lockout, and it still answered after
 * change-password had locked the account.
 *
 * The defence: every password check is a login attempt. DELETE /api/v1/me and
 * change-password (API and page) count toward the account's lockout with the
 * caller's session as the source (`session:<uuid>`): five wrong passwords,
 * then 423 ACCOUNT_LOCKED with Retry-After for that session, whatever the
 * password — and the owner's other sessions and devices are not locked by it.
 * They also share a per-client-IP limit (RATE_LIMIT_REAUTHENTICATE, 10 per
 * 15 minutes), and every attempt is in `login_attempts` and the audit log.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createAccount, loginRequest, type TestAccount } from '../api/auth-helpers.ts';
import { json, startApp, strongPassword, uniqueName } from '../helpers.ts';
import { Browser, pageLogIn } from '../support/browser.ts';
import { assertProblem } from '../support/problem.ts';

describe('password oracle through re-authentication', () => {
  let app: FastifyInstance;
  let address = 0;
  /** Each test from an address of its own, so that the per-IP limit of one does not reach the next. */
  const client = () => ({ 'x-forwarded-for': `198.51.100.${++address}` });

  before(async () => {
    app = await startApp({
      TRUST_PROXY: '127.0.0.1',
      // The shipped default, 10 per 15 minutes (the test configuration raises it elsewhere).
      RATE_LIMIT_REAUTHENTICATE: undefined,
      REDIS_KEY_PREFIX: `t:${uniqueName('oracle')}:`,
    });
  });
  after(() => app.close());

  async function signedIn(account?: TestAccount) {
    const user = account ?? (await createAccount(app));
    const res = await loginRequest(app, user.username, user.password);
    assert.equal(res.statusCode, 200, res.body);
    return { user, token: json<{ access_token: string }>(res).access_token };
  }
  const deleteMe = (token: string, password: string, headers: Record<string, string>) =>
    app.inject({
      method: 'DELETE',
      url: '/api/v1/me',
      headers: { authorization: `Bearer ${token}`, ...headers },
      payload: { password },
    });
  const changePassword = (token: string, current: string, headers: Record<string, string>) => {
    const next = strongPassword();
    return app.inject({
      method: 'POST',
      url: '/api/v1/change-password',
      headers: { authorization: `Bearer ${token}`, ...headers },
      payload: { current_password: current, new_password: next, confirm_password: next },
    });
  };

  test('DELETE /me with 25 wrong passwords: 401 five times, 423 for the session, then 429 from the limit', async () => {
    const { user, token } = await signedIn();
    const from = client();
    const statuses: number[] = [];
    for (let i = 0; i < 25; i++) statuses.push((await deleteMe(token, strongPassword(), from)).statusCode);
    assert.deepEqual(statuses, [...Array(5).fill(401), ...Array(5).fill(423), ...Array(15).fill(429)]);

    // Locked for this session: the right password is refused too, from any address.
    const locked = assertProblem(await deleteMe(token, user.password, client()), 423, 'ACCOUNT_LOCKED');
    assert.ok(Number(locked.retry_after) > 0);
    const exists = await app.gatehouse.db.selectFrom('users').select('id').where('id', '=', user.id).executeTakeFirst();
    assert.ok(exists, 'the account is still there');

    const attempts = await app.gatehouse.db
      .selectFrom('login_attempts')
      .select(['failure_reason', 'success'])
      .where('user_id', '=', user.id)
      .where('success', '=', false)
      .orderBy('id')
      .execute();
    assert.deepEqual(
      attempts.map((a) => a.failure_reason),
      [...Array(5).fill('invalid_password'), ...Array(6).fill('account_locked')],
    );
    const audits = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('user_id', '=', user.id)
      .where('action', 'in', ['login_failure', 'account_locked'])
      .execute();
    assert.equal(audits.filter((a) => (a.details as { via?: string }).via === 'delete_account').length, 11);
    assert.deepEqual(
      audits.map((a) => a.details).filter((d) => (d as { lock_count?: number }).lock_count),
      [{ identifier: `user:${user.id}`, source: 'session', lock_count: 1, locked_minutes: 15 }],
    );
  });

  test('after change-password locked the session, DELETE /me answers 423 too, whatever the password', async () => {
    const { user, token } = await signedIn();
    const from = client();
    for (let i = 0; i < 5; i++)
      assertProblem(await changePassword(token, strongPassword(), from), 401, 'INVALID_CREDENTIALS');
    assertProblem(await changePassword(token, user.password, from), 423, 'ACCOUNT_LOCKED');
    assertProblem(await deleteMe(token, strongPassword(), client()), 423, 'ACCOUNT_LOCKED');
    assertProblem(await deleteMe(token, user.password, client()), 423, 'ACCOUNT_LOCKED');
  });

  test('a stolen token locks only its own session: the owner still changes the password and signs in', async () => {
    const { user, token: stolen } = await signedIn();
    const { token: owners } = await signedIn(user);
    for (let i = 0; i < 5; i++) await deleteMe(stolen, strongPassword(), client());
    assertProblem(await deleteMe(stolen, user.password, client()), 423, 'ACCOUNT_LOCKED');

    assert.equal((await loginRequest(app, user.username, user.password)).statusCode, 200);
    const res = await changePassword(owners, user.password, client());
    assert.equal(res.statusCode, 204, res.body);
  });

  test('concurrent re-authentications check at most five passwords', async () => {
    const { user, token } = await signedIn();
    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 2 ? deleteMe(token, strongPassword(), client()) : changePassword(token, strongPassword(), client()),
      ),
    );
    const statuses = responses.map((r) => r.statusCode);
    assert.ok(statuses.filter((s) => s === 401).length <= 5, String(statuses));
    assert.equal(statuses.filter((s) => s === 401 || s === 423).length, 30, String(statuses));
    const checked = await app.gatehouse.db
      .selectFrom('login_attempts')
      .select('id')
      .where('user_id', '=', user.id)
      .where('failure_reason', '=', 'invalid_password')
      .execute();
    assert.ok(checked.length <= 5, `${checked.length} passwords checked`);
  });

  test('the change-password page shares the limit and the lockout', async () => {
    const { user } = await signedIn();
    const browser = new Browser(app, client());
    await pageLogIn(browser, user.username, user.password);
    const change = async (current: string) => {
      const next = strongPassword();
      return browser.submit('/account', {
        action: 'password',
        current_password: current,
        new_password: next,
        confirm_password: next,
      });
    };
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await change(strongPassword())).statusCode);
    assert.deepEqual(statuses, [...Array(5).fill(401), ...Array(5).fill(423), 429]);
  });
});
