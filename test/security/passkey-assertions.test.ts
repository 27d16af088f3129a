import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createAccount, login, startAuthApp } from '../api/auth-helpers.ts';
import { bearer, postJson } from '../support/mfa.ts';
import { addPasskey, loginOptions, loginVerify, registrationOptions } from '../support/passkeys.ts';
import { assertProblem } from '../support/problem.ts';
import { SoftAuthenticator } from '../support/webauthn-authenticator.ts';

/**
 * Hostile passkey answers: each is refused with its own problem code, starts
 * no session, and leaves a `passkey_refused` audit row saying why.
 */
describe('hostile passkey answers', () => {
  let app: FastifyInstance;

  before(async () => {
    app = await startAuthApp();
  });
  after(() => app.close());

  async function owner() {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const { authenticator } = await addPasskey(app, tokens.access_token);
    return { account, tokens, authenticator };
  }

  const sessions = async (userId: number) =>
    Number(
      (
        await app.gatehouse.db
          .selectFrom('sessions')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('user_id', '=', userId)
          .executeTakeFirstOrThrow()
      ).n,
    );

  /** The reasons of the `passkey_refused` rows written since `sinceId`. */
  const refusals = async (sinceId: number) =>
    (
      await app.gatehouse.db
        .selectFrom('audit_logs')
        .select(['details', 'user_id'])
        .where('action', '=', 'passkey_refused')
        .where('id', '>', sinceId)
        .orderBy('id')
        .execute()
    ).map((r) => (r.details as Record<string, unknown>).reason);

  const lastAuditId = async () =>
    Number(
      (
        await app.gatehouse.db
          .selectFrom('audit_logs')
          .select((eb) => eb.fn.max('id').as('id'))
          .executeTakeFirstOrThrow()
      ).id ?? 0,
    );

  /** Runs `attempt`, expects the problem, no new session of `userId`, and one refusal with `reason`. */
  async function refused(
    userId: number,
    attempt: () => Promise<{ statusCode: number; headers: Record<string, unknown>; body: string }>,
    code: string,
    reason: string,
  ) {
    const since = await lastAuditId();
    const before = await sessions(userId);
    const res = await attempt();
    const body = assertProblem(res, 401, code);
    assert.equal(body.access_token, undefined);
    assert.equal(res.headers['set-cookie'], undefined, 'no cookie is set');
    assert.equal(await sessions(userId), before, 'no session started');
    assert.deepEqual(await refusals(since), [reason]);
  }

  test('an answer to another challenge is CHALLENGE_INVALID', async () => {
    const { account, authenticator } = await owner();
    const first = await loginOptions(app);
    const second = await loginOptions(app);
    await refused(
      account.id,
      () => loginVerify(app, second.challenge_id, authenticator.authenticate(first)),
      'CHALLENGE_INVALID',
      'response_for_another_challenge',
    );
    // The first one is still good for its own answer.
    assert.equal((await loginVerify(app, first.challenge_id, authenticator.authenticate(first))).statusCode, 200);
  });

  test('a challenge is good once: a replayed answer is CHALLENGE_INVALID', async () => {
    const { account, authenticator } = await owner();
    const options = await loginOptions(app);
    const answer = authenticator.authenticate(options);
    assert.equal((await loginVerify(app, options.challenge_id, answer)).statusCode, 200);
    await refused(account.id, () => loginVerify(app, options.challenge_id, answer), 'CHALLENGE_INVALID', 'challenge');
  });

  test('of two requests with one answer, exactly one signs in', async () => {
    const { authenticator } = await owner();
    const options = await loginOptions(app);
    const answer = authenticator.authenticate(options);
    const results = await Promise.all([1, 2, 3].map(() => loginVerify(app, options.challenge_id, answer)));
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 401, 401]);
  });

  test('an answer made for another origin is PASSKEY_INVALID', async () => {
    const { account, authenticator } = await owner();
    const options = await loginOptions(app);
    await refused(
      account.id,
      () =>
        loginVerify(app, options.challenge_id, authenticator.authenticate(options, { origin: 'https://evil.example' })),
      'PASSKEY_INVALID',
      'verification_failed',
    );
  });

  test('an answer signed for another RP id is PASSKEY_INVALID', async () => {
    const { account, authenticator } = await owner();
    const options = await loginOptions(app);
    await refused(
      account.id,
      () => loginVerify(app, options.challenge_id, authenticator.authenticate(options, { rpId: 'evil.example' })),
      'PASSKEY_INVALID',
      'verification_failed',
    );
  });

  test('an assertion without user verification does not sign in', async () => {
    const { account, authenticator } = await owner();
    const options = await loginOptions(app);
    await refused(
      account.id,
      () => loginVerify(app, options.challenge_id, authenticator.authenticate(options, { userVerified: false })),
      'PASSKEY_INVALID',
      'verification_failed',
    );
  });

  test('a signature counter that goes back (a cloned authenticator) is PASSKEY_COUNTER_REGRESSION', async () => {
    const { account, authenticator } = await owner();
    let options = await loginOptions(app);
    assert.equal(
      (await loginVerify(app, options.challenge_id, authenticator.authenticate(options, { counter: 10 }))).statusCode,
      200,
    );
    for (const counter of [10, 3]) {
      options = await loginOptions(app);
      const answer = authenticator.authenticate(options, { counter });
      await refused(
        account.id,
        () => loginVerify(app, options.challenge_id, answer),
        'PASSKEY_COUNTER_REGRESSION',
        'counter_regression',
      );
    }
    options = await loginOptions(app);
    assert.equal(
      (await loginVerify(app, options.challenge_id, authenticator.authenticate(options, { counter: 11 }))).statusCode,
      200,
    );
  });

  test("with a username given, another user's passkey is PASSKEY_INVALID", async () => {
    const victim = await owner();
    const attacker = await owner();
    const options = await loginOptions(app, { username: victim.account.username });
    const answer = attacker.authenticator.authenticate(options, {
      credential: attacker.authenticator.credentials[0],
    });
    await refused(
      attacker.account.id,
      () => loginVerify(app, options.challenge_id, answer),
      'PASSKEY_INVALID',
      'credential_of_another_user',
    );
    assert.equal(await sessions(victim.account.id), 1, 'only the login that added the passkey');
  });

  test('an unknown credential is PASSKEY_INVALID', async () => {
    const { account } = await owner();
    const stranger = new SoftAuthenticator();
    stranger.register({ challenge: 'x', rp: { id: 'gatehouse.test' }, user: { id: 'eA' } });
    const options = await loginOptions(app);
    await refused(
      account.id,
      () => loginVerify(app, options.challenge_id, stranger.authenticate(options)),
      'PASSKEY_INVALID',
      'unknown_credential',
    );
  });

  test('registration: another origin, another RP id, another challenge are refused and nothing is stored', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const auth = bearer(tokens.access_token);
    const cases: [Record<string, string>, string, string][] = [
      [{ origin: 'https://evil.example' }, 'PASSKEY_INVALID', 'verification_failed'],
      [{ rpId: 'evil.example' }, 'PASSKEY_INVALID', 'verification_failed'],
      [{ challenge: 'bm90LWEtY2hhbGxlbmdl' }, 'CHALLENGE_INVALID', 'challenge'],
    ];
    for (const [lie, code, reason] of cases) {
      const options = await registrationOptions(app, tokens.access_token);
      const since = await lastAuditId();
      const res = await postJson(
        app,
        '/api/v1/passkeys/register/verify',
        { response: new SoftAuthenticator().register(options, lie) },
        auth,
      );
      assertProblem(res, 401, code);
      assert.deepEqual(await refusals(since), [reason]);
    }
    const list = await app.inject({ url: '/api/v1/passkeys', headers: auth });
    assert.deepEqual(JSON.parse(list.body).items, []);
  });

  test('a registration challenge is good once and only for the user it was given to', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const other = await login(app, await createAccount(app));
    const options = await registrationOptions(app, tokens.access_token);
    const answer = new SoftAuthenticator().register(options);
    const stolen = await postJson(
      app,
      '/api/v1/passkeys/register/verify',
      { response: answer },
      bearer(other.access_token),
    );
    assertProblem(stolen, 401, 'CHALLENGE_INVALID');
    const ok = await postJson(
      app,
      '/api/v1/passkeys/register/verify',
      { response: answer },
      bearer(tokens.access_token),
    );
    assert.equal(ok.statusCode, 201, ok.body);
    const again = await postJson(
      app,
      '/api/v1/passkeys/register/verify',
      { response: answer },
      bearer(tokens.access_token),
    );
    assertProblem(again, 401, 'CHALLENGE_INVALID');
  });
});
