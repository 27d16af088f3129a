/**
 * Attacks on e-mail sign-in: a link replayed (in turn and at once), a code
 * guessed past its tries (in turn and in parallel), a code tried for another
 * address, a link for a disabled account, an expired link or code. Each is
 * refused with a stable problem code, starts no session, and leaves a
 * login_failure audit row and a failed login_attempts row.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createAccount, type TestAccount } from '../api/auth-helpers.ts';
import { json } from '../helpers.ts';
import { startAppWithMail, type TestMailServer } from '../mail-server.ts';
import { testClock } from '../support/clock.ts';
import { requestSignIn, verifySignIn } from '../support/email-sign-in.ts';
import { assertProblem } from '../support/problem.ts';

describe('e-mail sign-in under attack', () => {
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

  /** The failures recorded for an account: audit reasons (via email) and failed attempt rows. */
  async function failures(userId: number): Promise<{ audited: string[]; attempts: number }> {
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('user_id', '=', userId)
      .where('action', '=', 'login_failure')
      .orderBy('id')
      .execute();
    const attempts = await app.gatehouse.db
      .selectFrom('login_attempts')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('user_id', '=', userId)
      .where('success', '=', false)
      .executeTakeFirstOrThrow();
    return {
      audited: audit.map((row) => {
        const details = row.details as Record<string, unknown>;
        assert.equal(details.via, 'email');
        return String(details.reason);
      }),
      attempts: Number(attempts.n),
    };
  }

  /** A wrong code for the account's live code: any 6 digits but the right one. */
  const wrong = (code: string, i: number) => String((Number(code) + 1 + i) % 1_000_000).padStart(6, '0');

  let account: TestAccount;
  test('a link used twice: the second use is 401 EMAIL_SIGN_IN_INVALID, recorded, no second session', async () => {
    account = await createAccount(app);
    const { token } = await requestSignIn(app, smtp, account.email);
    assert.equal((await verifySignIn(app, { token })).statusCode, 200);
    assertProblem(await verifySignIn(app, { token }), 401, 'EMAIL_SIGN_IN_INVALID');
    assert.equal(await sessions(account.id), 1);
    assert.deepEqual(await failures(account.id), { audited: ['invalid_email_sign_in'], attempts: 1 });
  });

  test('one link sent ten times at once signs in once', async () => {
    const target = await createAccount(app);
    const { token } = await requestSignIn(app, smtp, target.email);
    const answers = await Promise.all(Array.from({ length: 10 }, () => verifySignIn(app, { token })));
    assert.deepEqual(answers.map((r) => r.statusCode).sort(), [200, ...Array<number>(9).fill(401)]);
    assert.equal(await sessions(target.id), 1);
  });

  test('a code guessed past its 5 tries is dead, the right code included', async () => {
    const target = await createAccount(app);
    const { code } = await requestSignIn(app, smtp, target.email);
    assert.ok(code);
    for (let i = 0; i < 5; i++) {
      assertProblem(
        await verifySignIn(app, { email: target.email, code: wrong(code, i) }),
        401,
        'EMAIL_SIGN_IN_INVALID',
      );
    }
    assertProblem(await verifySignIn(app, { email: target.email, code }), 401, 'EMAIL_SIGN_IN_INVALID');
    assert.equal(await sessions(target.id), 0);
    const recorded = await failures(target.id);
    assert.equal(recorded.attempts, 6);
    assert.deepEqual(new Set(recorded.audited), new Set(['invalid_email_sign_in']));
  });

  test('guesses in parallel get no more tries: of 20 wrong codes and the right one sent at once, at most 5 are counted', async () => {
    const target = await createAccount(app);
    const { code } = await requestSignIn(app, smtp, target.email);
    assert.ok(code);
    const guesses = Array.from({ length: 20 }, (_, i) => wrong(code, i));
    await Promise.all(guesses.map((guess) => verifySignIn(app, { email: target.email, code: guess })));
    const row = await app.gatehouse.db
      .selectFrom('email_sign_ins')
      .select(['attempts', 'used_at'])
      .where('user_id', '=', target.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.attempts, 5);
    assert.equal(row.used_at, null);
    assertProblem(await verifySignIn(app, { email: target.email, code }), 401, 'EMAIL_SIGN_IN_INVALID');
    assert.equal(await sessions(target.id), 0);
  });

  test("a code tried for another address is refused and costs that address's code a try", async () => {
    const owner = await createAccount(app);
    const other = await createAccount(app);
    const { code } = await requestSignIn(app, smtp, owner.email);
    const theirs = await requestSignIn(app, smtp, other.email);
    // Make sure the two codes differ, so that the test says what it means.
    if (code === theirs.code) return;
    assertProblem(await verifySignIn(app, { email: other.email, code }), 401, 'EMAIL_SIGN_IN_INVALID');
    assert.equal(await sessions(other.id), 0);
    assert.deepEqual((await failures(other.id)).audited, ['invalid_email_sign_in']);
    // The owner's code still works for the owner.
    assert.equal((await verifySignIn(app, { email: owner.email, code })).statusCode, 200);
  });

  test('a link for an account disabled after it was mailed: 403 ACCOUNT_DISABLED, spent, recorded, no session', async () => {
    const target = await createAccount(app);
    const { token } = await requestSignIn(app, smtp, target.email);
    await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', target.id).execute();
    assertProblem(await verifySignIn(app, { token }), 403, 'ACCOUNT_DISABLED');
    assert.equal(await sessions(target.id), 0);
    assert.deepEqual(await failures(target.id), { audited: ['account_disabled'], attempts: 1 });
    await app.gatehouse.db.updateTable('users').set({ is_active: true }).where('id', '=', target.id).execute();
    assertProblem(await verifySignIn(app, { token }), 401, 'EMAIL_SIGN_IN_INVALID');
  });

  test('a link for an account whose address changed since is refused', async () => {
    const target = await createAccount(app);
    const { token } = await requestSignIn(app, smtp, target.email);
    await app.gatehouse.db
      .updateTable('users')
      .set({ email: `moved.${target.email}` })
      .where('id', '=', target.id)
      .execute();
    assertProblem(await verifySignIn(app, { token }), 401, 'EMAIL_SIGN_IN_INVALID');
    assert.equal(await sessions(target.id), 0);
  });

  test('an expired link or code (15 minutes) is 401 EMAIL_SIGN_IN_INVALID, recorded, no session', async () => {
    const target = await createAccount(app);
    const { token, code } = await requestSignIn(app, smtp, target.email);
    clock.advance(15 * 60_000 + 1_000);
    assertProblem(await verifySignIn(app, { token }), 401, 'EMAIL_SIGN_IN_INVALID');
    assertProblem(await verifySignIn(app, { email: target.email, code }), 401, 'EMAIL_SIGN_IN_INVALID');
    assert.equal(await sessions(target.id), 0);
    assert.deepEqual(await failures(target.id), {
      audited: ['invalid_email_sign_in', 'invalid_email_sign_in'],
      attempts: 2,
    });
  });

  test('an unknown token and a code for an address without an account answer the same 401 body', async () => {
    const a = await verifySignIn(app, { token: 'A'.repeat(43) });
    const b = await verifySignIn(app, { email: 'nobody-here@example.com', code: '123456' });
    assertProblem(a, 401, 'EMAIL_SIGN_IN_INVALID');
    assert.deepEqual(json(a), json(b));
  });
});
