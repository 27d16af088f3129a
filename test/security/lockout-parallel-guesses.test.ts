/**
 * The attack: parallel guesses pass the lockout. The lock was checked before
 * the password hash and the failure counted after it, so every request of a
 * burst passed the check before any of them was counted: 40 concurrent logins
 * for one account from 4 addresses had 39 wrong passwords checked, with a
 * threshold of 5. Now the failure is reserved before the hash, atomically (a
 * Lua script in Redis, one INSERT … ON CONFLICT in PostgreSQL): at most
 * LOCKOUT_THRESHOLD passwords are checked per lock period, however many
 * requests race, and every other one answers 423 ACCOUNT_LOCKED with
 * Retry-After — never 401, which would mean a password was checked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createAccount, loginRequest, type TestAccount } from '../api/auth-helpers.ts';
import { json, startApp, strongPassword, uniqueName } from '../helpers.ts';

const THRESHOLD = 5;
const GUESSES = 100;
const ADDRESSES = 10;

/** Password checks so far: every hash and verification waits for a slot of the hashing pool once. */
async function passwordChecks(app: FastifyInstance): Promise<number> {
  const metric = await app.gatehouse.metrics.registry.getSingleMetric('gatehouse_hash_queue_wait_seconds')?.get();
  const count = metric?.values.find(
    (v) => (v as { metricName?: string }).metricName === 'gatehouse_hash_queue_wait_seconds_count',
  );
  assert.ok(count, 'the histogram has a count');
  return count.value;
}

const stores = [
  { name: 'PostgreSQL', env: { REDIS_URL: undefined } },
  ...(process.env.REDIS_URL ? [{ name: 'Redis', env: {} }] : []),
];

for (const store of stores) {
  describe(`parallel guesses, lockout counted in ${store.name}`, () => {
    let app: FastifyInstance;
    let other: FastifyInstance;

    before(async () => {
      const env = {
        ...store.env,
        // inject() connects from 127.0.0.1: the proxy whose X-Forwarded-For names the client.
        TRUST_PROXY: '127.0.0.1',
        RATE_LIMIT_LOGIN: '100000/1h',
        LOCKOUT_THRESHOLD: String(THRESHOLD),
        REDIS_KEY_PREFIX: `t:${uniqueName('parallel')}:`,
      };
      app = await startApp(env);
      other = await startApp(env, { database: app.gatehouse.database });
    });
    after(async () => {
      await other.close();
      await app.close();
    });

    async function burst(account: { username: string }, identifiers: string[]) {
      return Promise.all(
        Array.from({ length: GUESSES }, (_, i) =>
          loginRequest(i % 2 ? other : app, identifiers[i % identifiers.length] as string, strongPassword(), {
            'x-forwarded-for': `198.51.100.${1 + (i % ADDRESSES)}`,
          }),
        ),
      ).then((responses) => ({ account, responses }));
    }

    test(`${GUESSES} concurrent guesses from ${ADDRESSES} addresses check at most ${THRESHOLD} passwords`, async () => {
      const victim: TestAccount = await createAccount(app);
      const checksBefore = (await passwordChecks(app)) + (await passwordChecks(other));
      const { responses } = await burst(victim, [victim.username, victim.email]);
      const checks = (await passwordChecks(app)) + (await passwordChecks(other)) - checksBefore;

      const statuses = responses.map((r) => r.statusCode);
      const unauthorized = statuses.filter((s) => s === 401).length;
      assert.ok(unauthorized >= 1 && unauthorized <= THRESHOLD, `401s: ${unauthorized}`);
      assert.equal(statuses.filter((s) => s === 423).length, GUESSES - unauthorized, String(statuses));
      assert.ok(checks <= THRESHOLD, `${checks} passwords checked`);
      for (const res of responses.filter((r) => r.statusCode === 423)) {
        assert.equal(json(res).code, 'ACCOUNT_LOCKED');
        assert.ok(Number(res.headers['retry-after']) > 0);
      }

      const attempts = await app.gatehouse.db
        .selectFrom('login_attempts')
        .select(['failure_reason'])
        .where('user_id', '=', victim.id)
        .execute();
      const reasons = attempts.map((a) => a.failure_reason);
      assert.equal(reasons.length, GUESSES, 'every attempt is on the record');
      assert.ok(reasons.filter((r) => r === 'invalid_password').length <= THRESHOLD);
      assert.equal(reasons.filter((r) => r === 'account_locked').length, GUESSES - unauthorized);

      // Locked now: the right password is refused too, on both instances.
      for (const instance of [app, other]) {
        const res = await loginRequest(instance, victim.username, victim.password, {
          'x-forwarded-for': '203.0.113.9',
        });
        assert.equal(res.statusCode, 423, res.body);
      }
      const locks = await app.gatehouse.db
        .selectFrom('audit_logs')
        .select('details')
        .where('action', '=', 'account_locked')
        .where('user_id', '=', victim.id)
        .execute();
      assert.equal(locks.length, 1, 'one lock, audited once');
    });

    test('a name without an account is guarded the same way', async () => {
      const nobody = uniqueName('nobody');
      const checksBefore = (await passwordChecks(app)) + (await passwordChecks(other));
      const { responses } = await burst({ username: nobody }, [nobody]);
      const checks = (await passwordChecks(app)) + (await passwordChecks(other)) - checksBefore;
      const unauthorized = responses.filter((r) => r.statusCode === 401).length;
      assert.ok(unauthorized >= 1 && unauthorized <= THRESHOLD, `401s: ${unauthorized}`);
      assert.equal(responses.filter((r) => r.statusCode === 423).length, GUESSES - unauthorized);
      assert.ok(checks <= THRESHOLD, `${checks} passwords checked`);
    });
  });
}
