import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { type DatabaseHandle, openDatabase } from '../../src/db/index.ts';
import { AppError } from '../../src/domain/errors.ts';
import { lockoutIdentifier } from '../../src/infra/lockout.ts';
import { startApp, uniqueName } from '../helpers.ts';
import { testClock } from '../support/clock.ts';

const MINUTE = 60_000;

describe('lockout service', () => {
  let dataDir: string;
  let database: DatabaseHandle;
  let app: FastifyInstance;
  let other: FastifyInstance;
  const clock = testClock();

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-lockout-'));
    // One database for two instances, as in production (PGlite in memory, or DATABASE_URL).
    database = await openDatabase(process.env.DATABASE_URL ?? 'memory://', dataDir);
    const env = { REDIS_KEY_PREFIX: `t:${uniqueName()}:` };
    app = await startApp(env, { database, clock });
    other = await startApp(env, { database, clock });
  });
  after(async () => {
    await app.close();
    await other.close();
    await database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const fail = (identifier: string, instance = app) => instance.gatehouse.lockout.recordFailure(identifier);

  test('five consecutive failures lock the identifier for 15 minutes', async () => {
    const id = uniqueName('victim');
    for (let i = 1; i <= 4; i++) {
      const result = await fail(id);
      assert.equal(result.locked, false);
      assert.equal(result.failures, i);
    }
    assert.equal((await app.gatehouse.lockout.check(id)).failures, 4);
    const fifth = await fail(id);
    assert.equal(fifth.locked, true);
    assert.equal(fifth.lockedNow, true);
    assert.equal(fifth.retryAfterSeconds, 15 * 60);

    const state = await app.gatehouse.lockout.check(id);
    assert.equal(state.locked, true);
    await assert.rejects(app.gatehouse.lockout.assertNotLocked(id), (error: unknown) => {
      assert.ok(error instanceof AppError);
      assert.equal(error.code, 'ACCOUNT_LOCKED');
      assert.equal(error.status, 423);
      assert.equal(error.options.retryAfter, 15 * 60);
      return true;
    });
    const row = await app.gatehouse.db
      .selectFrom('lockouts')
      .selectAll()
      .where('identifier', '=', id.toLowerCase())
      .executeTakeFirstOrThrow();
    assert.equal(row.lock_count, 1);
    assert.equal(row.locked_until?.getTime(), clock.now().getTime() + 15 * MINUTE);
  });

  test('the lock ends after its time; each further lock doubles', async () => {
    const id = uniqueName('doubling');
    const lockFor = async () => {
      let last = await fail(id);
      for (let i = 1; i < 5; i++) last = await fail(id);
      assert.equal(last.lockedNow, true);
      return last.retryAfterSeconds / 60;
    };
    assert.equal(await lockFor(), 15);
    clock.advance(15 * MINUTE - 1000);
    assert.equal((await app.gatehouse.lockout.check(id)).locked, true);
    clock.advance(1000);
    assert.equal((await app.gatehouse.lockout.check(id)).locked, false);
    assert.equal(await lockFor(), 30);
    clock.advance(30 * MINUTE);
    assert.equal(await lockFor(), 60);
    clock.advance(60 * MINUTE);
    assert.equal(await lockFor(), 120);
  });

  test('a success resets the count: failures must be consecutive', async () => {
    const id = uniqueName('forgetful');
    for (let i = 0; i < 4; i++) await fail(id);
    await app.gatehouse.lockout.recordSuccess(id);
    assert.equal((await app.gatehouse.lockout.check(id)).failures, 0);
    for (let i = 0; i < 4; i++) await fail(id);
    assert.equal((await app.gatehouse.lockout.check(id)).locked, false);
  });

  test('identifiers are compared trimmed and case-insensitively, and any text can be an identifier', async () => {
    const id = `${uniqueName('Mixed')}@Example.COM`;
    await fail(`  ${id} `);
    await fail(id.toUpperCase());
    assert.equal((await app.gatehouse.lockout.check(id.toLowerCase())).failures, 2);
    assert.equal(lockoutIdentifier('  Bob '), 'bob');
    const long = 'x'.repeat(5000);
    assert.match(lockoutIdentifier(long), /^sha256:[0-9a-f]{64}$/);
    await fail(long);
    assert.equal((await app.gatehouse.lockout.check(long)).failures, 1);
  });

  test('the counts are shared by two instances: failures spread over both still lock after five', async () => {
    const id = uniqueName('spread');
    for (let i = 0; i < 4; i++) assert.equal((await fail(id, i % 2 === 0 ? app : other)).locked, false);
    assert.equal((await fail(id, other)).lockedNow, true);
    assert.equal((await app.gatehouse.lockout.check(id)).locked, true);
    assert.equal((await other.gatehouse.lockout.check(id)).locked, true);
  });

  test('concurrent failures past the threshold lock once, with one audit row', async () => {
    const id = uniqueName('burst');
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => fail(id, i % 2 ? app : other)));
    assert.equal(results.filter((r) => r.lockedNow).length, 1);
    const row = await app.gatehouse.db
      .selectFrom('lockouts')
      .select('lock_count')
      .where('identifier', '=', id)
      .executeTakeFirstOrThrow();
    assert.equal(row.lock_count, 1);
    const audits = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'account_locked')
      .execute();
    const mine = audits.filter((a) => (a.details as { identifier?: string }).identifier === id);
    assert.equal(mine.length, 1);
    assert.deepEqual(mine[0]?.details, { identifier: id, lock_count: 1, locked_minutes: 15 });
  });

  test('locking audits account_locked with the user when the flow knows it', async () => {
    const id = uniqueName('audited');
    for (let i = 0; i < 5; i++) {
      await app.gatehouse.lockout.recordFailure(id, {
        userId: null,
        context: { ip: '198.51.100.77', userAgent: 'test-agent' },
      });
    }
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .selectAll()
      .where('action', '=', 'account_locked')
      .where('ip_address', '=', '198.51.100.77')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    assert.equal(audit.user_agent, 'test-agent');
    assert.equal((audit.details as { identifier: string }).identifier, id);
  });

  test('LOCKOUT_THRESHOLD, LOCKOUT_MINUTES and LOCKOUT_MAX_MINUTES tune it', async () => {
    const tuned = await startApp(
      {
        LOCKOUT_THRESHOLD: '2',
        LOCKOUT_MINUTES: '10',
        LOCKOUT_MAX_MINUTES: '25',
        REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      },
      { database, clock },
    );
    try {
      const id = uniqueName('tuned');
      const lock = async () => {
        await tuned.gatehouse.lockout.recordFailure(id);
        const second = await tuned.gatehouse.lockout.recordFailure(id);
        assert.equal(second.lockedNow, true);
        clock.advance(second.retryAfterSeconds * 1000);
        return second.retryAfterSeconds / 60;
      };
      assert.deepEqual([await lock(), await lock(), await lock()], [10, 20, 25]);
    } finally {
      await tuned.close();
    }
  });

  test('in PostgreSQL, a day without failures forgets the count (Redis expires its key after the same day)', async () => {
    const postgresOnly = await startApp({ REDIS_URL: undefined }, { database, clock });
    try {
      const id = uniqueName('stale');
      for (let i = 0; i < 4; i++) await postgresOnly.gatehouse.lockout.recordFailure(id);
      assert.equal((await postgresOnly.gatehouse.lockout.check(id)).failures, 4);
      clock.advance(24 * 60 * MINUTE + 1000);
      assert.equal((await postgresOnly.gatehouse.lockout.check(id)).failures, 0);
      assert.equal((await postgresOnly.gatehouse.lockout.recordFailure(id)).failures, 1);
    } finally {
      await postgresOnly.close();
    }
  });
});
