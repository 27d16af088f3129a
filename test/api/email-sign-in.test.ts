import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, startApp, uniqueName } from '../helpers.ts';
import { startAppWithMail, type TestMailServer } from '../mail-server.ts';
import { testClock } from '../support/clock.ts';
import { readSignInMail, requestSignIn, verifySignIn } from '../support/email-sign-in.ts';
import { bearer, claims, enrol, postJson } from '../support/mfa.ts';
import { assertProblem } from '../support/problem.ts';
import { createAccount, login } from './auth-helpers.ts';

const MESSAGE = 'If an account exists for this email address, a sign-in email has been sent.';

describe('e-mail sign-in (EMAIL_SIGN_IN=both)', () => {
  const clock = testClock();
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail(
      {
        EMAIL_SIGN_IN: 'both',
        RATE_LIMIT_EMAIL_SIGN_IN: '100000/1h',
        EMAIL_SIGN_IN_LIMIT_PER_ADDRESS: '100000/1h',
      },
      { clock },
    ));
  });
  after(() => close());

  /** The details of a user's audit rows of one action, oldest first. */
  const auditRows = async (userId: number, action: string) =>
    (
      await app.gatehouse.db
        .selectFrom('audit_logs')
        .select('details')
        .where('user_id', '=', userId)
        .where('action', '=', action)
        .orderBy('id')
        .execute()
    ).map((row) => row.details as Record<string, unknown>);

  test('a mailed link signs in: 202 with the fixed body, one mail with a link and a code, tokens with amr ["email"]', async () => {
    const account = await createAccount(app);
    const res = await postJson(app, '/api/v1/login/email', { email: account.email.toUpperCase() });
    assert.equal(res.statusCode, 202, res.body);
    assert.deepEqual(json(res), { message: MESSAGE });
    const mails = await smtp.waitFor(account.email, 2);
    const mail = mails.find((m) => m.subject === 'Your sign-in code');
    assert.ok(mail, mails.map((m) => m.subject).join());
    const signIn = readSignInMail(mail);
    assert.equal(mail.subject, 'Your sign-in code');
    assert.match(mail.text, /valid for 15 minutes/);
    assert.ok(signIn.link?.startsWith('http://gatehouse.test/email-sign-in?token='), String(mail.links));
    assert.match(signIn.code ?? '', /^\d{6}$/);

    const signedIn = await verifySignIn(app, { token: signIn.token });
    assert.equal(signedIn.statusCode, 200, signedIn.body);
    assert.equal(signedIn.headers['cache-control'], 'no-store');
    const body = json<{ access_token: string; refresh_token: string; token_type: string }>(signedIn);
    assert.equal(body.token_type, 'bearer');
    assert.deepEqual(claims(body.access_token).amr, ['email']);
    assert.ok(signedIn.headers['set-cookie'], 'the device cookie, as after a password login');
    const me = await app.inject({ url: '/api/v1/me', headers: bearer(body.access_token) });
    assert.equal(me.statusCode, 200, me.body);

    const [success] = await auditRows(account.id, 'login_success');
    assert.equal(success?.method, 'email');
    assert.deepEqual(success?.amr, ['email']);
    const attempt = await app.gatehouse.db
      .selectFrom('login_attempts')
      .selectAll()
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.equal(attempt.success, true);
    assert.equal(attempt.identifier, account.email);

    // The code of the same mail was spent with the link.
    assertProblem(await verifySignIn(app, { email: account.email, code: signIn.code }), 401, 'EMAIL_SIGN_IN_INVALID');
  });

  test('the mailed code signs in with {email, code}; a newer mail voids the older one', async () => {
    const account = await createAccount(app);
    const first = await requestSignIn(app, smtp, account.email);
    const second = await requestSignIn(app, smtp, account.email);
    assertProblem(await verifySignIn(app, { token: first.token }), 401, 'EMAIL_SIGN_IN_INVALID');
    const res = await verifySignIn(app, { email: ` ${account.email.toUpperCase()} `, code: second.code });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(claims(json<{ access_token: string }>(res).access_token).amr, ['email']);
  });

  test('an unknown address and a disabled account get the same 202 body and no mail', async () => {
    const disabled = await createAccount(app);
    await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', disabled.id).execute();
    const unknown = `${uniqueName()}@example.com`;
    const known = await createAccount(app);
    const answers = [];
    for (const email of [unknown, disabled.email, known.email]) {
      const res = await postJson(app, '/api/v1/login/email', { email });
      assert.equal(res.statusCode, 202, res.body);
      answers.push(res.body);
    }
    assert.equal(new Set(answers).size, 1);
    await smtp.waitFor(known.email, 2);
    await smtp.waitFor(disabled.email, 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(smtp.to(unknown).length, 0);
    assert.deepEqual(
      smtp.to(disabled.email).map((m) => m.subject),
      ['Verify your email address'],
    );
    const [request] = await auditRows(disabled.id, 'email_sign_in_request');
    assert.deepEqual(
      {
        mailed: request?.mailed,
        reason: request?.reason,
      },
      { mailed: false, reason: 'account_disabled' },
    );
  });

  test('an unverified address becomes verified by signing in with it', async () => {
    const account = await createAccount(app, {}, { verified: false });
    const { token } = await requestSignIn(app, smtp, account.email);
    const res = await verifySignIn(app, { token });
    assert.equal(res.statusCode, 200, res.body);
    const me = await app.inject({
      url: '/api/v1/me',
      headers: bearer(json<{ access_token: string }>(res).access_token),
    });
    assert.equal(json(me).email_verified, true);
  });

  test('with a second factor on: 403 MFA_REQUIRED, then POST /login/mfa gives amr ["email","otp"]', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const { authenticator } = await enrol(app, tokens.access_token, clock);
    const { code } = await requestSignIn(app, smtp, account.email);
    const challenge = assertProblem(await verifySignIn(app, { email: account.email, code }), 403, 'MFA_REQUIRED');
    assert.equal(typeof challenge.mfa_token, 'string');
    assert.deepEqual(challenge.methods, ['totp', 'backup_code']);
    const done = await postJson(app, '/api/v1/login/mfa', {
      mfa_token: challenge.mfa_token,
      code: authenticator.code(),
    });
    assert.equal(done.statusCode, 200, done.body);
    assert.deepEqual(claims(json<{ access_token: string }>(done).access_token).amr, ['email', 'otp']);
    const successes = await auditRows(account.id, 'login_success');
    assert.equal(successes.at(-1)?.method, 'email');
  });

  test('the mail is in the language of the account', async () => {
    const account = await createAccount(app, { language_code: 'es' });
    const { mail, code } = await requestSignIn(app, smtp, account.email);
    assert.equal(mail.subject, 'Tu código de acceso');
    assert.match(mail.text, /15 minutos/);
    assert.ok(code);
  });

  test('bad input is 400 or 422 problem+json, never 500', async () => {
    const request = (payload: unknown) => postJson(app, '/api/v1/login/email', payload);
    assertProblem(await request({}), 422, 'VALIDATION_ERROR');
    assertProblem(await request({ email: 42 }), 400, 'MALFORMED_REQUEST');
    assertProblem(await request({ email: ['a@example.com'] }), 400, 'MALFORMED_REQUEST');
    assertProblem(await request({ email: 'not-an-address' }), 422, 'VALIDATION_ERROR');
    assertProblem(await request({ email: `${'a'.repeat(5000)}@example.com` }), 422, 'VALIDATION_ERROR');
    assertProblem(await request('{"email":'), 400, 'MALFORMED_REQUEST');

    const verify = (payload: unknown) => postJson(app, '/api/v1/login/email/verify', payload);
    assertProblem(await verify({}), 422, 'VALIDATION_ERROR');
    assertProblem(await verify({ token: 7 }), 400, 'MALFORMED_REQUEST');
    assertProblem(await verify({ token: 'x'.repeat(100_000) }), 413, 'PAYLOAD_TOO_LARGE');
    assertProblem(await verify({ token: 'x'.repeat(600) }), 422, 'VALIDATION_ERROR');
    assertProblem(await verify({ email: 'a@example.com' }), 422, 'VALIDATION_ERROR');
    assertProblem(await verify({ email: 'a@example.com', code: '12ab56' }), 422, 'VALIDATION_ERROR');
    assertProblem(await verify({ email: 'a@example.com', code: 123456 }), 400, 'MALFORMED_REQUEST');
    assertProblem(await verify({ token: 'abc', code: '123456' }), 422, 'VALIDATION_ERROR');
    assertProblem(await verify({ token: 'not-a-real-token' }), 401, 'EMAIL_SIGN_IN_INVALID');
  });
});

describe('e-mail sign-in limits and modes', () => {
  test('EMAIL_SIGN_IN=off (the default): the routes answer 404', async () => {
    const app = await startApp();
    try {
      assertProblem(await postJson(app, '/api/v1/login/email', { email: 'a@example.com' }), 404, 'NOT_FOUND');
      assertProblem(await postJson(app, '/api/v1/login/email/verify', { token: 'x' }), 404, 'NOT_FOUND');
      assert.equal((await app.inject({ url: '/email-sign-in?token=x' })).statusCode, 404);
    } finally {
      await app.close();
    }
  });

  test('per address (whatever the IP) and per client IP: 429 with Retry-After past either limit', async () => {
    const { app, close } = await startAppWithMail({
      EMAIL_SIGN_IN: 'link',
      EMAIL_SIGN_IN_LIMIT_PER_ADDRESS: '3/15m',
      RATE_LIMIT_EMAIL_SIGN_IN: '5/15m',
      TRUST_PROXY: 'true',
    });
    try {
      const ask = (email: string, ip: string) =>
        app.inject({
          method: 'POST',
          url: '/api/v1/login/email',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
          payload: JSON.stringify({ email }),
        });
      const unknown = `${uniqueName()}@example.com`;
      for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) assert.equal((await ask(unknown, ip)).statusCode, 202);
      const limited = assertProblem(await ask(unknown, '192.0.2.4'), 429, 'RATE_LIMIT_EXCEEDED');
      assert.ok(Number(limited.retry_after) > 0);

      const ip = '198.51.100.7';
      for (let i = 0; i < 5; i++) assert.equal((await ask(`${uniqueName()}@example.com`, ip)).statusCode, 202);
      const res = await ask(`${uniqueName()}@example.com`, ip);
      assertProblem(res, 429, 'RATE_LIMIT_EXCEEDED');
      assert.ok(Number(res.headers['retry-after']) > 0);
    } finally {
      await close();
    }
  });

  test('EMAIL_SIGN_IN=link mails only a link; EMAIL_SIGN_IN=code only a code', async () => {
    for (const mode of ['link', 'code'] as const) {
      const { app, smtp, close } = await startAppWithMail({ EMAIL_SIGN_IN: mode });
      try {
        const account = await createAccount(app);
        const signIn = await requestSignIn(app, smtp, account.email);
        assert.equal(signIn.mail.subject, mode === 'link' ? 'Your sign-in link' : 'Your sign-in code');
        assert.equal(signIn.token === undefined, mode === 'code');
        assert.equal(signIn.code === undefined, mode === 'link');
        const res = await verifySignIn(
          app,
          mode === 'link' ? { token: signIn.token } : { email: account.email, code: signIn.code },
        );
        assert.equal(res.statusCode, 200, res.body);
      } finally {
        await close();
      }
    }
  });
});
