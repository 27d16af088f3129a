import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, strongPassword } from '../helpers.ts';
import { registerByMail, startAppWithMail, type TestMailServer } from '../mail-server.ts';
import { assertProblem } from '../support/problem.ts';

type Body = Record<string, unknown>;

describe('POST /api/v1/change-password', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail());
  });
  after(() => close());

  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json', ...headers },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });

  async function login(username: string, password: string): Promise<{ access: string; refresh: string }> {
    const res = await post('/api/v1/login/json', { username, password });
    assert.equal(res.statusCode, 200, res.body);
    const body = json<{ access_token: string; refresh_token: string }>(res);
    return { access: body.access_token, refresh: body.refresh_token };
  }

  /** Registers, verifies through the mailed link, and logs in. */
  async function signedIn(overrides: Body = {}) {
    const { id, email, username, password } = await registerByMail(app, smtp, overrides);
    return { id, email, username, password, session: await login(username, password) };
  }

  const change = (access: string, current: string, next: string, confirm = next) =>
    post(
      '/api/v1/change-password',
      { current_password: current, new_password: next, confirm_password: confirm },
      { authorization: `Bearer ${access}` },
    );

  const me = (access: string) =>
    app.inject({ method: 'GET', url: '/api/v1/me', headers: { authorization: `Bearer ${access}` } });

  test('a change answers 204, keeps this session, revokes the others, and mails a notice', async () => {
    const user = await signedIn();
    const other = await login(user.username, user.password);
    const password = strongPassword();
    const res = await change(user.session.access, user.password, password);
    assert.equal(res.statusCode, 204, res.body);
    assert.equal(res.body, '');

    assert.equal((await me(user.session.access)).statusCode, 200);
    assertProblem(await me(other.access), 401, 'TOKEN_INVALID');
    assert.equal((await post('/api/v1/refresh', { refresh_token: other.refresh })).statusCode, 401);
    assert.equal(
      (await post('/api/v1/login/json', { username: user.username, password: user.password })).statusCode,
      401,
    );
    await login(user.email, password);

    const mails = await smtp.waitFor(user.email, 2);
    assert.equal(mails[1]?.subject, 'Your password was changed');
    assert.match(mails[1]?.text ?? '', /other sessions were signed out/);
    assert.ok(mails[1]?.links.every((l) => l.startsWith('http://gatehouse.test/')));

    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'password_change')
      .where('user_id', '=', user.id)
      .execute();
    assert.equal(audit.length, 1);
    assert.equal((audit[0]?.details as Body | undefined)?.sessions_revoked, 1);
  });

  test('a wrong current password answers 401 INVALID_CREDENTIALS and changes nothing', async () => {
    const user = await signedIn();
    const body = assertProblem(
      await change(user.session.access, 'Not-the-password-1!', strongPassword()),
      401,
      'INVALID_CREDENTIALS',
    );
    assert.equal(body.detail, 'The current password is incorrect');
    // The token itself is fine: a client must not take this 401 for a dead session.
    assert.equal((await me(user.session.access)).statusCode, 200);
    await login(user.username, user.password);
  });

  test('guessing the current password with a stolen token runs into the lockout', async () => {
    const user = await signedIn();
    const { threshold } = app.gatehouse.lockout;
    for (let i = 0; i < threshold; i++) {
      const res = await change(user.session.access, `Wrong-guess-${i}!A`, strongPassword());
      assert.ok([401, 423].includes(res.statusCode), res.body);
    }
    const locked = assertProblem(
      await change(user.session.access, user.password, strongPassword()),
      423,
      'ACCOUNT_LOCKED',
    );
    assert.ok(Number(locked.retry_after) > 0);
  });

  test('the new password must differ from the current one', async () => {
    const user = await signedIn();
    const body = assertProblem(await change(user.session.access, user.password, user.password), 422, 'PASSWORD_REUSED');
    assert.equal(body.detail, 'The new password must differ from the current password');
  });

  test('the last 5 passwords cannot be chosen again; the sixth-last can', async () => {
    const user = await signedIn();
    const passwords = [user.password];
    for (let i = 0; i < 5; i++) {
      const next = strongPassword();
      assert.equal(
        (await change(user.session.access, passwords[passwords.length - 1] as string, next)).statusCode,
        204,
      );
      passwords.push(next);
    }
    const current = passwords[5] as string;
    // passwords[1..5] are the last five (the current one included).
    for (const old of passwords.slice(1, 5)) {
      assertProblem(await change(user.session.access, current, old), 422, 'PASSWORD_REUSED');
    }
    assert.equal((await change(user.session.access, current, passwords[0] as string)).statusCode, 204);
    const history = await app.gatehouse.db
      .selectFrom('password_history')
      .select('id')
      .where('user_id', '=', user.id)
      .execute();
    assert.equal(history.length, 5, 'older hashes are forgotten');
  });

  test('the new password meets the policy and the breach check, and confirm_password must match', async () => {
    const user = await signedIn();
    const access = user.session.access;
    const policy = assertProblem(await change(access, user.password, 'alllowercase'), 422, 'PASSWORD_POLICY');
    assert.ok((policy.issues as string[]).length > 1);
    const personal = assertProblem(await change(access, user.password, `Ab1!${user.username}`), 422, 'PASSWORD_POLICY');
    assert.ok((personal.issues as string[]).includes('Password must not contain your username'));
    assertProblem(await change(access, user.password, 'S0nyer1c$$0n'), 422, 'PASSWORD_BREACHED');
    const password = strongPassword();
    assertProblem(await change(access, user.password, password, `${password}!`), 422, 'PASSWORD_MISMATCH');
    await login(user.username, user.password);
  });

  test('without a valid bearer token the answer is 401, whatever the body', async () => {
    const none = await post('/api/v1/change-password', { nonsense: true });
    assertProblem(none, 401, 'UNAUTHORIZED');
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    assertProblem(
      await post('/api/v1/change-password', {}, { authorization: 'Bearer not.a.jwt' }),
      401,
      'TOKEN_INVALID',
    );
    const user = await signedIn();
    const logout = await app.inject({
      method: 'POST',
      url: '/api/v1/logout',
      headers: { authorization: `Bearer ${user.session.access}` },
    });
    assert.equal(logout.statusCode, 204, logout.body);
    assertProblem(await change(user.session.access, user.password, strongPassword()), 401, 'TOKEN_INVALID');
  });

  test('bad input gets a clear problem, never a 500', async () => {
    const user = await signedIn();
    const auth = { authorization: `Bearer ${user.session.access}` };
    const missing = assertProblem(await post('/api/v1/change-password', {}, auth), 422, 'VALIDATION_ERROR');
    assert.deepEqual((missing.errors as Body[]).map((e) => e.field).sort(), [
      'confirm_password',
      'current_password',
      'new_password',
    ]);
    assertProblem(
      await post('/api/v1/change-password', { current_password: 1, new_password: 'x', confirm_password: 'x' }, auth),
      400,
      'MALFORMED_REQUEST',
    );
    const nul = assertProblem(await change(user.session.access, 'a\u0000b', strongPassword()), 422, 'VALIDATION_ERROR');
    assert.equal((nul.errors as Body[])[0]?.field, 'current_password');
    assertProblem(
      await change(user.session.access, user.password, `Aa1!${'x'.repeat(20_000)}`),
      413,
      'PAYLOAD_TOO_LARGE',
    );
  });

  test("the notice is in the user's language", async () => {
    const user = await signedIn({ language_code: 'es' });
    assert.equal((await change(user.session.access, user.password, strongPassword())).statusCode, 204);
    const mails = await smtp.waitFor(user.email, 2);
    assert.equal(mails[1]?.subject, 'Tu contraseña ha cambiado');
  });
});
