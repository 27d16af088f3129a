import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, newUser } from '../helpers.ts';
import { type ReceivedMail, startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';
import { testClock } from '../support/clock.ts';
import { assertProblem } from '../support/problem.ts';

type Body = Record<string, unknown>;

/** A clock the test can move forward, to cross token lifetimes without waiting. */
const clock = testClock();

describe('email verification', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({}, { clock }));
  });
  after(() => close());

  const post = (url: string, payload: unknown) =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });

  async function registered(overrides: Body = {}): Promise<{ user: Body; mail: ReceivedMail; token: string }> {
    const user = newUser(overrides);
    const res = await post('/api/v1/register', user);
    assert.equal(res.statusCode, 201, res.body);
    const [mail] = await smtp.waitFor(String(user.email));
    assert.ok(mail);
    const link = mail.links.find((l) => l.includes('/verify-email?token='));
    assert.ok(link, `no verification link in ${mail.links.join(', ')}`);
    return { user, mail, token: tokenFrom(link) };
  }

  async function userRow(email: unknown) {
    return app.gatehouse.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', String(email))
      .executeTakeFirstOrThrow();
  }

  test('the mailed link is PUBLIC_URL/verify-email?token=…, and POST /api/v1/verify-email answers 200 {"email_verified": true}', async () => {
    const { user, mail, token } = await registered();
    assert.ok(mail.links.includes(`http://gatehouse.test/verify-email?token=${token}`), mail.links.join(', '));
    assert.ok(mail.text.includes(`http://gatehouse.test/verify-email?token=${token}`));
    assert.equal((await userRow(user.email)).email_verified_at, null);

    // Opening the link (a GET, as a mail scanner would) never spends the token.
    await app.inject({ method: 'GET', url: `/verify-email?token=${token}` });

    const res = await post('/api/v1/verify-email', { token });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res), { email_verified: true });
    const row = await userRow(user.email);
    assert.ok(row.email_verified_at instanceof Date);
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .selectAll()
      .where('action', '=', 'email_verification')
      .where('user_id', '=', row.id)
      .execute();
    assert.equal(audit.length, 1);
  });

  test('a form-encoded verification is accepted too', async () => {
    const { token } = await registered();
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/verify-email',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ token }).toString(),
    });
    assert.equal(res.statusCode, 200, res.body);
  });

  test('a token works once: the second use answers 422 TOKEN_INVALID_OR_EXPIRED', async () => {
    const { token } = await registered();
    assert.equal((await post('/api/v1/verify-email', { token })).statusCode, 200);
    assertProblem(await post('/api/v1/verify-email', { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
  });

  test('of two concurrent uses of one token exactly one succeeds', async () => {
    const { token } = await registered();
    const results = await Promise.all([1, 2, 3].map(() => post('/api/v1/verify-email', { token })));
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 422, 422]);
  });

  test('a token is 256 random bits and only its SHA-256 is stored', async () => {
    const { user, token } = await registered();
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(token, 'base64url').length, 32);
    const row = await userRow(user.email);
    const tokens = await app.gatehouse.db
      .selectFrom('one_time_tokens')
      .selectAll()
      .where('user_id', '=', row.id)
      .execute();
    assert.equal(tokens.length, 1);
    assert.equal(tokens[0]?.token_hash, createHash('sha256').update(token).digest('hex'));
    assert.ok(!JSON.stringify(tokens).includes(token));
  });

  test('a token expires after 24 hours', async () => {
    const fresh = await registered();
    const stale = await registered();
    const issued = clock.now();
    try {
      clock.set(new Date(issued.getTime() + 24 * 3600_000 - 60_000));
      assert.equal((await post('/api/v1/verify-email', { token: fresh.token })).statusCode, 200);
      clock.set(new Date(issued.getTime() + 24 * 3600_000 + 1_000));
      assertProblem(await post('/api/v1/verify-email', { token: stale.token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    } finally {
      clock.set(issued);
    }
    assert.equal((await userRow(stale.user.email)).email_verified_at, null);
  });

  test('a token mailed to an address the account no longer has is void', async () => {
    const { user, token } = await registered();
    const row = await userRow(user.email);
    await app.gatehouse.db
      .updateTable('users')
      .set({ email: `changed-${String(user.email)}` })
      .where('id', '=', row.id)
      .execute();
    assertProblem(await post('/api/v1/verify-email', { token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    const after = await app.gatehouse.db
      .selectFrom('users')
      .select('email_verified_at')
      .where('id', '=', row.id)
      .executeTakeFirstOrThrow();
    assert.equal(after.email_verified_at, null);
  });

  test('unknown, empty, missing, over-long and mistyped tokens get a clear problem, never a 500', async () => {
    assertProblem(await post('/api/v1/verify-email', { token: 'A'.repeat(43) }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assertProblem(
      await post('/api/v1/verify-email', { token: 'not\u0000a token \ud800' }),
      422,
      'TOKEN_INVALID_OR_EXPIRED',
    );
    const empty = assertProblem(await post('/api/v1/verify-email', { token: '' }), 422, 'VALIDATION_ERROR');
    assert.equal((empty.errors as Body[])[0]?.field, 'token');
    const missing = assertProblem(await post('/api/v1/verify-email', {}), 422, 'VALIDATION_ERROR');
    assert.equal((missing.errors as Body[])[0]?.field, 'token');
    assertProblem(await post('/api/v1/verify-email', { token: 'x'.repeat(600) }), 422, 'VALIDATION_ERROR');
    assertProblem(await post('/api/v1/verify-email', { token: 12345 }), 400, 'MALFORMED_REQUEST');
    assertProblem(await post('/api/v1/verify-email', { token: ['a'] }), 400, 'MALFORMED_REQUEST');
    assertProblem(await post('/api/v1/verify-email', '{"token":'), 400, 'MALFORMED_REQUEST');
  });

  test('resend-verification answers 202 with one body for unknown, verified and unverified addresses; only the last gets mail', async () => {
    const unverified = await registered();
    const verified = await registered();
    assert.equal((await post('/api/v1/verify-email', { token: verified.token })).statusCode, 200);
    const unknown = `nobody-${String(newUser().email)}`;

    const answers = [];
    for (const email of [unknown, verified.user.email, unverified.user.email]) {
      const res = await post('/api/v1/resend-verification', { email });
      assert.equal(res.statusCode, 202, res.body);
      answers.push(res.body);
    }
    assert.equal(new Set(answers).size, 1, answers.join(' | '));
    assert.deepEqual(Object.keys(JSON.parse(answers[0] as string)), ['message']);

    const mails = await smtp.waitFor(String(unverified.user.email), 2);
    const newer = tokenFrom(mails[1]?.links[0] as string);
    assert.notEqual(newer, unverified.token);
    await app.gatehouse.outbox.drain();
    assert.equal(smtp.to(unknown).length, 0);
    assert.equal(smtp.to(String(verified.user.email)).length, 1);
    const verifiedTokens = await app.gatehouse.db
      .selectFrom('one_time_tokens')
      .select('id')
      .where('email', 'in', [unknown, String(verified.user.email)])
      .execute();
    assert.equal(verifiedTokens.length, 1, 'only the registration token: the decoy writes were rolled back');

    // The new link replaces the old one.
    assertProblem(await post('/api/v1/verify-email', { token: unverified.token }), 422, 'TOKEN_INVALID_OR_EXPIRED');
    assert.equal((await post('/api/v1/verify-email', { token: newer })).statusCode, 200);
  });

  test('resend-verification mails one address at most 5 times an hour, answering alike beyond that', async () => {
    const { user } = await registered();
    const bodies = new Set<string>();
    for (let i = 0; i < 7; i++) {
      const res = await post('/api/v1/resend-verification', { email: String(user.email).toUpperCase() });
      assert.equal(res.statusCode, 202);
      bodies.add(res.body);
    }
    assert.equal(bodies.size, 1);
    // The registration mail plus four resends: five links this hour.
    await smtp.waitFor(String(user.email), 5);
    await app.gatehouse.outbox.drain();
    assert.equal(smtp.to(String(user.email)).length, 5);
  });

  test('resend-verification with a malformed address answers 422 VALIDATION_ERROR, a mistyped one 400', async () => {
    const body = assertProblem(
      await post('/api/v1/resend-verification', { email: 'not-an-email' }),
      422,
      'VALIDATION_ERROR',
    );
    assert.equal((body.errors as Body[])[0]?.field, 'email');
    assertProblem(await post('/api/v1/resend-verification', { email: 'a\u0000@example.com' }), 422, 'VALIDATION_ERROR');
    assertProblem(await post('/api/v1/resend-verification', {}), 422, 'VALIDATION_ERROR');
    assertProblem(await post('/api/v1/resend-verification', { email: 42 }), 400, 'MALFORMED_REQUEST');
  });

  test("the mail is in the user's language, with an English fallback", async () => {
    const spanish = await registered({ language_code: 'es-MX', first_name: 'Inés' });
    assert.equal(spanish.mail.subject, 'Verifica tu dirección de correo');
    assert.match(spanish.mail.text, /^Hola Inés:/);
    assert.match(spanish.mail.html, /<html lang="es">/);
    const other = await registered({ language_code: 'pt-BR' });
    assert.equal(other.mail.subject, 'Verify your email address');
  });

  test('names are escaped in the HTML part', async () => {
    const { mail } = await registered({ first_name: '<script>alert(1)</script>' });
    assert.ok(!mail.html.includes('<script>'), mail.html);
    assert.ok(mail.html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.match(mail.text, /^Hello <script>alert\(1\)<\/script>,/);
  });
});

describe('email verification with REQUIRE_EMAIL_VERIFICATION=false', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;
  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({ REQUIRE_EMAIL_VERIFICATION: 'false' }));
  });
  after(() => close());
  const post = (url: string, payload: Body) => app.inject({ method: 'POST', url, payload });

  test('a new account is unverified until it follows a link asked for with resend-verification', async () => {
    const user = newUser();
    const res = await post('/api/v1/register', user);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(json(res).email_verified, false);
    assert.equal(json(res).message, 'User account created successfully.');
    assert.equal((await post('/api/v1/resend-verification', { email: user.email })).statusCode, 202);
    const [mail] = await smtp.waitFor(String(user.email));
    const link = mail?.links.find((l) => l.includes('/verify-email?token='));
    assert.ok(link);
    const verified = await post('/api/v1/verify-email', { token: tokenFrom(link) });
    assert.deepEqual(json(verified), { email_verified: true });
    const row = await app.gatehouse.db
      .selectFrom('users')
      .select('email_verified_at')
      .where('email', '=', String(user.email))
      .executeTakeFirstOrThrow();
    assert.ok(row.email_verified_at instanceof Date);
  });
});
