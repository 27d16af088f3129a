import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, newUser } from '../helpers.ts';
import { startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';

type Body = Record<string, unknown>;

describe('REGISTRATION_ENUMERATION_SAFE=true', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({ REGISTRATION_ENUMERATION_SAFE: 'true' }));
  });
  after(() => close());

  const register = (payload: Body) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify(payload),
    });

  test('a taken email answers exactly like a free one, at the same hashing cost, and its owner is mailed', async () => {
    const owner = newUser({ first_name: 'Owner' });
    const first = await register(owner);
    assert.equal(first.statusCode, 202, first.body);
    const [verification] = await smtp.waitFor(String(owner.email));
    assert.equal(verification?.subject, 'Verify your email address');

    const hashesBefore = app.gatehouse.hashPool.completed;
    const again = await register({ ...newUser(), email: String(owner.email).toUpperCase() });
    assert.equal(app.gatehouse.hashPool.completed, hashesBefore + 1, 'the password is hashed as for a new account');
    const fresh = await register(newUser());
    assert.equal(app.gatehouse.hashPool.completed, hashesBefore + 2);

    for (const res of [first, again, fresh]) {
      assert.equal(res.statusCode, 202, res.body);
      assert.match(String(res.headers['content-type']), /^application\/json/);
    }
    assert.equal(again.body, fresh.body);
    assert.equal(first.body, fresh.body);
    assert.deepEqual(Object.keys(json(again)), ['message']);

    const mails = await smtp.waitFor(String(owner.email), 2);
    const notice = mails[1];
    assert.equal(notice?.subject, 'Someone tried to register with your address');
    assert.match(notice?.text ?? '', /^Hello Owner,/);
    assert.ok(notice?.links.includes('http://gatehouse.test/login'));
    assert.ok(notice?.links.includes('http://gatehouse.test/forgot-password'));

    // Nothing was created for the second attempt.
    const rows = await app.gatehouse.db
      .selectFrom('users')
      .select('id')
      .where('email', '=', String(owner.email))
      .execute();
    assert.equal(rows.length, 1);
  });

  test('the new account of a 202 is real: its verification link works', async () => {
    const user = newUser();
    assert.equal((await register(user)).statusCode, 202);
    const [mail] = await smtp.waitFor(String(user.email));
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/verify-email',
      payload: { token: tokenFrom(mail?.links[0] as string) },
    });
    assert.equal(res.statusCode, 200, res.body);
  });

  test('a taken username answers the same 202, email taken too or not, and nothing is created', async () => {
    const owner = newUser();
    const fresh = await register(owner);
    assert.equal(fresh.statusCode, 202);
    const other = newUser();
    const bothTaken = await register({ ...newUser(), email: owner.email, username: owner.username });
    const usernameOnly = await register({ ...other, username: owner.username });
    for (const res of [bothTaken, usernameOnly]) {
      assert.equal(res.statusCode, 202, res.body);
      assert.equal(res.body, fresh.body);
    }
    const rows = await app.gatehouse.db
      .selectFrom('users')
      .select('email')
      .where('username', '=', String(owner.username))
      .execute();
    assert.deepEqual(rows, [{ email: owner.email }]);
    // The address given learns why: its username is taken.
    const [notice] = await smtp.waitFor(String(other.email));
    assert.equal(notice?.subject, 'Choose another username to finish registering');
    assert.match(notice?.text ?? '', new RegExp(`the username "${String(owner.username)}"`));
    assert.ok(notice?.links.includes('http://gatehouse.test/register'));
  });

  test('the owner is told at most 5 times an hour', async () => {
    const owner = newUser();
    assert.equal((await register(owner)).statusCode, 202);
    for (let i = 0; i < 7; i++) {
      assert.equal((await register({ ...newUser(), email: owner.email })).statusCode, 202);
    }
    await smtp.waitFor(String(owner.email), 6);
    await app.gatehouse.outbox.drain();
    assert.equal(smtp.to(String(owner.email)).length, 6, 'one verification and five notices');
  });

  test('validation and password rules still answer as usual', async () => {
    const weak = await register(newUser({ password: 'short' }));
    assert.equal(weak.statusCode, 422);
    assert.equal(json(weak).code, 'PASSWORD_POLICY');
    const invalid = await register(newUser({ email: 'not-an-email' }));
    assert.equal(invalid.statusCode, 422);
    assert.equal(json(invalid).code, 'VALIDATION_ERROR');
  });
});

describe('REGISTRATION_ENUMERATION_SAFE default', () => {
  test('is off: a taken email answers 409 EMAIL_TAKEN and the owner gets no notice', async () => {
    const { app, smtp, close } = await startAppWithMail();
    try {
      const owner = newUser();
      const first = await app.inject({ method: 'POST', url: '/api/v1/register', payload: owner });
      assert.equal(first.statusCode, 201, first.body);
      const again = await app.inject({
        method: 'POST',
        url: '/api/v1/register',
        payload: { ...newUser(), email: owner.email },
      });
      assert.equal(again.statusCode, 409);
      assert.equal(json(again).code, 'EMAIL_TAKEN');
      await smtp.waitFor(String(owner.email));
      await app.gatehouse.outbox.drain();
      assert.equal(smtp.to(String(owner.email)).length, 1);
    } finally {
      await close();
    }
  });
});
