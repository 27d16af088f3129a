import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { type DatabaseHandle, openDatabase } from '../../src/db/index.ts';
import { AppError } from '../../src/domain/errors.ts';
import { type Lockout, lockoutIdentifier, lockoutSubject, unlockAccount } from '../../src/infra/lockout.ts';
import { startApp, uniqueName } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { recordFailure, recordFailures } from '../support/lockout.ts';

const MINUTE = 60_000;

function isLocked(retryAfter?: number) {
  return (error: unknown) => {
    assert.ok(error instanceof AppError);
    assert.equal(error.code, 'ACCOUNT_LOCKED');
    assert.equal(error.status, 423);
    if (retryAfter !== undefined) assert.equal(error.options.retryAfter, retryAfter);
    return true;
  };
}

describe('lockout service', () => {
  let dataDir: string;
  let database: DatabaseHandle;
  let app: FastifyInstance;
  let other: FastifyInstance;
  let lockout: Lockout;
  const clock = testClock();

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-lockout-'));
    // One database for two instances, as in production (PGlite in memory, or DATABASE_URL).
    database = await openDatabase(process.env.DATABASE_URL ?? 'memory://', dataDir);
    const env = { REDIS_KEY_PREFIX: `t:${uniqueName()}:` };
    app = await startApp(env, { database, clock });
    other = await startApp(env, { database, clock });
    lockout = app.gatehouse.lockout;
  });
  after(async () => {
    await app.close();
    await other.close();
    await database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const subject = (prefix: string) => `name:${uniqueName(prefix)}`;

  test('five failures of one source lock it for 15 minutes: the fifth reservation sets the lock', async () => {
    const id = subject('victim');
    for (let i = 1; i <= 4; i++) {
      assert.equal(await recordFailure(lockout, id), undefined);
      assert.equal((await lockout.check(id)).failures, i);
    }
    const fifth = await lockout.reserve(id, 'untrusted');
    assert.equal(fifth.fills, true);
    // Locked from the reservation on, before its password is even checked.
    assert.equal((await lockout.check(id)).locked, true);
    assert.deepEqual(await lockout.failed(fifth), { lockCount: 1, minutes: 15 });

    const state = await lockout.check(id);
    assert.deepEqual(state, { locked: true, retryAfterSeconds: 15 * 60, failures: 0 });
    await assert.rejects(lockout.reserve(id, 'untrusted'), isLocked(15 * 60));
    const row = await app.gatehouse.db
      .selectFrom('lockouts')
      .selectAll()
      .where('identifier', '=', id)
      .executeTakeFirstOrThrow();
    assert.equal(row.source, 'untrusted');
    assert.equal(row.lock_count, 1);
    assert.equal(row.locked_until?.getTime(), clock.now().getTime() + 15 * MINUTE);
  });

  test('reservations in flight count: past the threshold a racing request is refused before any password is checked', async () => {
    const id = subject('racing');
    const held = [];
    for (let i = 0; i < 4; i++) held.push(await lockout.reserve(id, 'untrusted'));
    const filler = await lockout.reserve(id, 'untrusted');
    assert.ok(filler.fills, 'the fifth reservation fills the allowance');
    assert.ok(held.every((r) => !r.fills));
    await assert.rejects(lockout.reserve(id, 'untrusted'), isLocked(15 * 60));
    await assert.rejects(other.gatehouse.lockout.reserve(id, 'untrusted'), isLocked());
    // The filler had the right password: the source starts again, whatever the others were.
    await lockout.succeeded(filler);
    for (const reservation of held) await lockout.failed(reservation);
    assert.deepEqual(await lockout.check(id), { locked: false, retryAfterSeconds: 0, failures: 0 });
    assert.equal((await lockout.reserve(id, 'untrusted')).fills, false);
  });

  test('concurrent reservations on two instances: exactly the threshold is granted, one locks, with one audit row', async () => {
    const id = subject('burst');
    const attempts = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? app : other).gatehouse.lockout.reserve(id, 'untrusted')),
    );
    const granted = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
    assert.equal(granted.length, 5);
    assert.equal(granted.filter((r) => r.fills).length, 1);
    for (const a of attempts) if (a.status === 'rejected') isLocked()(a.reason);
    await Promise.all(granted.map((r) => lockout.failed(r, { userId: null })));
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
    assert.deepEqual(
      mine.map((a) => a.details),
      [{ identifier: id, source: 'untrusted', lock_count: 1, locked_minutes: 15 }],
    );
  });

  test('the lock ends after its time; each further lock doubles', async () => {
    const id = subject('doubling');
    const lockFor = async () => {
      await recordFailures(lockout, id, 4);
      return (await recordFailure(lockout, id))?.minutes;
    };
    assert.equal(await lockFor(), 15);
    clock.advance(15 * MINUTE - 1000);
    assert.equal((await lockout.check(id)).locked, true);
    clock.advance(1000);
    assert.equal((await lockout.check(id)).locked, false);
    assert.equal(await lockFor(), 30);
    clock.advance(30 * MINUTE);
    assert.equal(await lockFor(), 60);
    clock.advance(60 * MINUTE);
    assert.equal(await lockFor(), 120);
  });

  test('a success resets its source: failures must be consecutive', async () => {
    const id = subject('forgetful');
    await recordFailures(lockout, id, 4);
    await lockout.succeeded(await lockout.reserve(id, 'untrusted'));
    assert.equal((await lockout.check(id)).failures, 0);
    await recordFailures(lockout, id, 4);
    assert.equal((await lockout.check(id)).locked, false);
  });

  test('each source has its own allowance; a success from one leaves the others counted and locked', async () => {
    const id = subject('sources');
    await recordFailures(lockout, id, 5, 'untrusted');
    assert.equal((await lockout.check(id, 'untrusted')).locked, true);
    for (const source of ['device:abc', 'session:0f4b2c2e-1111-4222-8333-444455556666'] as const) {
      assert.equal((await lockout.check(id, source)).locked, false);
      await recordFailures(lockout, id, 2, source);
      await lockout.succeeded(await lockout.reserve(id, source));
      assert.equal((await lockout.check(id, source)).failures, 0);
    }
    assert.equal((await lockout.check(id, 'untrusted')).locked, true, 'a trusted success does not unlock strangers');
    await recordFailures(lockout, id, 5, 'device:abc');
    await assert.rejects(lockout.reserve(id, 'device:abc'), isLocked());
  });

  test('a cancelled reservation is given back, and a cancelled filler undoes its lock', async () => {
    const id = subject('cancelled');
    await recordFailures(lockout, id, 3);
    await lockout.cancelled(await lockout.reserve(id, 'untrusted'));
    assert.equal((await lockout.check(id)).failures, 3);
    await recordFailure(lockout, id);
    const filler = await lockout.reserve(id, 'untrusted');
    assert.ok(filler.fills);
    await lockout.cancelled(filler);
    assert.deepEqual(await lockout.check(id), { locked: false, retryAfterSeconds: 0, failures: 4 });
    assert.ok(await recordFailure(lockout, id), 'the next failure fills it again');
  });

  test('the subject is the account whichever identifier is typed; names without one by themselves', () => {
    assert.equal(lockoutSubject({ id: 42 }, 'Alice'), 'user:42');
    assert.equal(lockoutSubject({ id: 42 }, 'alice@example.com'), 'user:42');
    assert.equal(lockoutSubject(undefined, '  Bob '), 'name:bob');
    assert.equal(lockoutIdentifier('  Bob '), 'bob');
    assert.match(lockoutSubject(undefined, 'x'.repeat(5000)), /^name:sha256:[0-9a-f]{64}$/);
  });

  test('the counts are shared by two instances: failures spread over both still lock after five', async () => {
    const id = subject('spread');
    for (let i = 0; i < 4; i++) {
      assert.equal(await recordFailure(i % 2 ? other.gatehouse.lockout : lockout, id), undefined);
    }
    assert.ok(await recordFailure(other.gatehouse.lockout, id));
    assert.equal((await lockout.check(id)).locked, true);
    assert.equal((await other.gatehouse.lockout.check(id)).locked, true);
  });

  test('locking audits account_locked with the user and the request', async () => {
    const id = subject('audited');
    for (let i = 0; i < 5; i++) {
      await recordFailure(lockout, id, 'untrusted', {
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

  test('unlockAccount clears every source of the account and audits account_unlocked', async () => {
    const user = { id: 900_000_000 + Math.floor(Math.random() * 1_000_000) };
    const id = lockoutSubject(user, '');
    await recordFailures(lockout, id, 5, 'untrusted');
    await recordFailures(lockout, id, 5, 'session:0f4b2c2e-1111-4222-8333-444455556666');
    await recordFailures(lockout, id, 2, 'device:abc');
    const context = { ip: '198.51.100.78', userAgent: null };
    assert.equal(await unlockAccount(app.gatehouse, user, { byUserId: null, via: 'cli' }, context), true);
    for (const source of ['untrusted', 'session:0f4b2c2e-1111-4222-8333-444455556666', 'device:abc'] as const) {
      assert.deepEqual(await lockout.check(id, source), { locked: false, retryAfterSeconds: 0, failures: 0 });
    }
    assert.equal(await unlockAccount(app.gatehouse, user, { byUserId: null, via: 'cli' }, context), false);
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
      const id = subject('tuned');
      const lock = async () => {
        assert.equal(await recordFailure(tuned.gatehouse.lockout, id), undefined);
        const minutes = (await recordFailure(tuned.gatehouse.lockout, id))?.minutes ?? 0;
        clock.advance(minutes * MINUTE);
        return minutes;
      };
      assert.deepEqual([await lock(), await lock(), await lock()], [10, 20, 25]);
    } finally {
      await tuned.close();
    }
  });

  test('in PostgreSQL, a day without failures forgets the count (Redis forgets after the same day)', async () => {
    const postgresOnly = await startApp({ REDIS_URL: undefined }, { database, clock });
    try {
      const id = subject('stale');
      await recordFailures(postgresOnly.gatehouse.lockout, id, 4);
      assert.equal((await postgresOnly.gatehouse.lockout.check(id)).failures, 4);
      clock.advance(24 * 60 * MINUTE + 1000);
      assert.equal((await postgresOnly.gatehouse.lockout.check(id)).failures, 0);
      await recordFailure(postgresOnly.gatehouse.lockout, id);
      assert.equal((await postgresOnly.gatehouse.lockout.check(id)).failures, 1);
    } finally {
      await postgresOnly.close();
    }
  });
});
