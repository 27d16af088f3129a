import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import { CompiledQuery, sql } from 'kysely';
import type { Config } from '../config.ts';
import type { Db } from '../db/index.ts';
import { executePrepared, prepared } from '../db/prepared.ts';
import { AppError } from '../domain/errors.ts';
import { normalizeIdentifier } from '../domain/identifiers.ts';
import { type RequestContext, SYSTEM_CONTEXT } from '../domain/request-context.ts';
import type { AbuseMetrics } from './abuse-metrics.ts';
import { recordAudit } from './audit.ts';
import type { Clock } from './clock.ts';
import { FallbackReporter } from './rate-limits.ts';
import { sha256Hex } from './sha256.ts';

/** Failures and lock history are forgotten after a day without news of the subject and source. */
export const FORGET_AFTER_SECONDS = 24 * 60 * 60;
const FORGET_MS = FORGET_AFTER_SECONDS * 1000;
const IDENTIFIER_MAX = 320;

/**
 * Where password attempts come from; each source has an allowance of its own,
 * so that strangers who exhaust `untrusted` do not lock the owner's browser
 * (`device:<id>`, a signed device cookie) or signed-in session (`session:<uuid>`).
 */
export type LockoutSource = 'untrusted' | `device:${string}` | `session:${string}`;

export interface LockoutState {
  locked: boolean;
  /** Seconds until the lock ends; 0 when not locked. */
  retryAfterSeconds: number;
  /** Failures counted (and reservations in flight) since the last success or lock. */
  failures: number;
}

/** A lock, as its audit row describes it. */
export interface LockInfo {
  lockCount: number;
  minutes: number;
}

/** The lock a reservation counted in PostgreSQL put in place by filling the allowance. */
interface PendingLock extends LockInfo {
  until: Date;
}

/**
 * One failure counted before the password is checked. Settle it exactly once:
 * `succeeded` (the right password: the source starts again), `failed` (it
 * stays counted; if it filled the allowance, the lock is confirmed and
 * audited), or `cancelled` (the password was never checked).
 */
export interface Reservation {
  readonly subject: string;
  readonly source: LockoutSource;
  readonly store: 'redis' | 'postgres';
  /** This reservation filled the allowance: a wrong password locks. */
  readonly fills: boolean;
  /** In PostgreSQL the filling reservation locks at once; this is that lock. */
  readonly lock: PendingLock | undefined;
  /** Failures counted in PostgreSQL during a Redis outage, added to the Redis count. */
  readonly carried: number;
  /** The pair has a PostgreSQL row that a success must delete as well. */
  readonly postgresRow: boolean;
}

export interface LockoutDependencies {
  db: Db;
  redis: Redis | undefined;
  config: Pick<Config, 'lockoutThreshold' | 'lockoutMinutes' | 'lockoutMaxMinutes'>;
  clock: Clock;
  log: FastifyBaseLogger;
  metrics: AbuseMetrics;
}

/**
 * "username or email, as typed": trimmed, NFC, lower-case. Over-long input is
 * hashed so that a hostile identifier cannot grow a key or a row.
 */
export function lockoutIdentifier(raw: string): string {
  const id = normalizeIdentifier(raw);
  return id.length <= IDENTIFIER_MAX ? id : `sha256:${sha256Hex(id)}`;
}

/**
 * Whose attempts count together: an account, whichever of its identifiers was
 * typed; a name without an account by itself (so a lock says nothing about
 * whether the account exists: both answer 401 ×threshold, then 423).
 */
export function lockoutSubject(user: { id: number } | undefined, typed: string): string {
  return user ? `user:${user.id}` : `name:${lockoutIdentifier(typed)}`;
}

/** A (subject, source) row of `lockouts`, as a reservation reads it. */
export interface LockoutRow {
  failures: number;
  lock_count: number;
  locked_until: Date | null;
  updated_at: Date;
}

/**
 * Reserves a failure atomically: INCR-if-below-threshold on the `f:<source>`
 * field of the subject's hash (`t:<source>` holds when it was last counted).
 * A full count is forgotten after `full` ms (a lock is in PostgreSQL; this
 * only bounds a count left full by a process that died mid-check).
 * Returns {granted, failures, last counted at}.
 */
const RESERVE_SCRIPT = `
local fk, tk = 'f:' .. ARGV[1], 't:' .. ARGV[1]
local now, threshold, full, forget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local f = tonumber(redis.call('HGET', KEYS[1], fk) or '0')
local t = tonumber(redis.call('HGET', KEYS[1], tk) or '0')
if now - t > forget or (f >= threshold and now - t > full) then f = 0 end
if f >= threshold then return {0, f, t} end
f = f + 1
redis.call('HSET', KEYS[1], fk, f, tk, ARGV[2])
redis.call('PEXPIRE', KEYS[1], forget)
return {1, f, t}
`;

/** Gives back a reservation whose password was never checked. */
const REFUND_SCRIPT = `
local fk = 'f:' .. ARGV[1]
local f = tonumber(redis.call('HGET', KEYS[1], fk) or '0')
if f > 0 then redis.call('HSET', KEYS[1], fk, f - 1) end
return f
`;

type LockoutRedis = Redis & {
  gatehouseLockoutReserve(key: string, ...args: (string | number)[]): Promise<[number, number, number]>;
  gatehouseLockoutRefund(key: string, source: string): Promise<number>;
};

/**
 * Consecutive password failures per (subject, source), reserved before the
 * password is hashed, so that however many requests race, no more than
 * LOCKOUT_THRESHOLD passwords are checked per source and lock period.
 *
 * Where things live: locks (locked_until, lock_count) are rare and must
 * survive anything, so they are always in PostgreSQL (`lockouts`, one row per
 * subject and source). The hot counter lives in Redis when configured (hash
 * `<prefix>lockout:<subject>`, field `f:<source>`); while Redis is unreachable
 * it moves to `lockouts.failures`, never to process memory: N instances must
 * not give an attacker N times the attempts. A reservation on Redis reads the
 * PostgreSQL row alongside, so locks and failures counted during an outage
 * still hold after it.
 */
export class Lockout {
  readonly #deps: LockoutDependencies;
  readonly #fallback: FallbackReporter;
  #scriptsDefined = false;

  constructor(deps: LockoutDependencies) {
    this.#deps = deps;
    this.#fallback = new FallbackReporter(
      'lockout',
      'redis unreachable: lockout counters are kept in PostgreSQL until it returns',
      deps,
    );
  }

  get threshold(): number {
    return this.#deps.config.lockoutThreshold;
  }

  /** The state of one source, without counting anything (the CAPTCHA decision, tests). */
  async check(subject: string, source: LockoutSource = 'untrusted'): Promise<LockoutState> {
    const now = this.#deps.clock.now();
    const [row, fields] = await Promise.all([
      this.#row(subject, source),
      this.#redisCall((redis) => redis.hmget(this.#key(subject), `f:${source}`, `t:${source}`)),
    ]);
    const lock = activeLock(row, now);
    if (lock) return { locked: true, retryAfterSeconds: secondsUntil(lock, now), failures: 0 };
    let failures = postgresFailures(row, now);
    const [f = 0, t = 0] = (fields ?? []).map(Number);
    const full = this.#fullUntil(f, t);
    if (full > now.getTime())
      return { locked: true, retryAfterSeconds: secondsUntil(new Date(full), now), failures: 0 };
    if (f && now.getTime() - t <= FORGET_MS) failures += f;
    return { locked: false, retryAfterSeconds: 0, failures };
  }

  /**
   * Counts a failure before the password is checked. Throws 423
   * ACCOUNT_LOCKED with Retry-After while the source is locked, or while
   * reservations in flight already fill its allowance.
   */
  async reserve(subject: string, source: LockoutSource, known?: { row: LockoutRow | undefined }): Promise<Reservation> {
    const now = this.#deps.clock.now();
    if (this.#redisReady()) {
      const reservation = await this.#reserveWithRedis(subject, source, now, known);
      if (reservation) return reservation;
    }
    return this.#reserveInPostgres(subject, source, now);
  }

  /** The right password: this source starts again (other sources keep their counts and locks). */
  async succeeded(reservation: Reservation): Promise<void> {
    const { subject, source } = reservation;
    if (reservation.store === 'redis') {
      await this.#redisCall((redis) => redis.hdel(this.#key(subject), `f:${source}`, `t:${source}`));
      if (!reservation.postgresRow) return;
    }
    const db = this.#deps.db;
    await executePrepared(db, db.deleteFrom('lockouts').where('identifier', '=', subject).where('source', '=', source));
  }

  /**
   * A wrong password: the failure stays counted. The one that filled the
   * allowance locks (on Redis it writes the lock to PostgreSQL now; there it
   * is in place already) and is audited; the lock is returned.
   */
  async failed(
    reservation: Reservation,
    options: { userId?: number | null; context?: RequestContext } = {},
  ): Promise<LockInfo | undefined> {
    const { subject, source } = reservation;
    if (!reservation.fills) return undefined;
    let lock = reservation.lock;
    if (reservation.store === 'redis') {
      const now = this.#deps.clock.now();
      const row = await this.#upsert(subject, source, this.threshold - reservation.carried, now);
      lock = activeLock(row, now) && row ? pendingLock(row, now) : undefined;
      // The lock in PostgreSQL guards the source now; its count starts again when the lock ends.
      await this.#redisCall((redis) => redis.hdel(this.#key(subject), `f:${source}`, `t:${source}`));
    }
    if (!lock) return undefined;
    await recordAudit(
      this.#deps.db,
      {
        action: 'account_locked',
        userId: options.userId ?? null,
        details: {
          identifier: subject,
          source: sourceKind(source),
          lock_count: lock.lockCount,
          locked_minutes: lock.minutes,
        },
      },
      options.context ?? SYSTEM_CONTEXT,
    );
    this.#deps.metrics.lockouts.inc();
    this.#deps.log.info({ source: sourceKind(source) }, 'locked after consecutive password failures');
    return { lockCount: lock.lockCount, minutes: lock.minutes };
  }

  /** The password was never checked (the hashing queue shed it): the reservation is given back. */
  async cancelled(reservation: Reservation): Promise<void> {
    const { subject, source, lock } = reservation;
    const db = this.#deps.db;
    const now = this.#deps.clock.now();
    if (reservation.store === 'redis') {
      await this.#redisCall((redis) => this.#scripts(redis).gatehouseLockoutRefund(this.#key(subject), source));
    }
    if (lock) {
      // Undo the lock this reservation set, unless another has replaced it.
      await db
        .updateTable('lockouts')
        .set({
          failures: this.threshold - 1,
          lock_count: sql<number>`greatest(lock_count - 1, 0)`,
          locked_until: now,
          updated_at: now,
        })
        .where('identifier', '=', subject)
        .where('source', '=', source)
        .where('locked_until', '=', lock.until)
        .execute();
    } else if (reservation.store === 'postgres') {
      await db
        .updateTable('lockouts')
        .set({ failures: sql<number>`greatest(failures - 1, 0)` })
        .where('identifier', '=', subject)
        .where('source', '=', source)
        .where((w) => w.or([w('locked_until', 'is', null), w('locked_until', '<=', now)]))
        .execute();
    }
  }

  /** Removes every lock and count of a subject, all sources; true when one was locked. */
  async clear(subject: string): Promise<boolean> {
    await this.#redisCall((redis) => redis.del(this.#key(subject)));
    const db = this.#deps.db;
    const deleted = await db
      .deleteFrom('lockouts')
      .where('identifier', '=', subject)
      .returning('locked_until')
      .execute();
    const now = this.#deps.clock.now();
    return deleted.some((row) => !!row.locked_until && row.locked_until > now);
  }

  #key(subject: string): string {
    return `lockout:${subject}`;
  }

  async #row(subject: string, source: LockoutSource): Promise<LockoutRow | undefined> {
    const db = this.#deps.db;
    const [row] = await executePrepared(
      db,
      db
        .selectFrom('lockouts')
        .select(['failures', 'lock_count', 'locked_until', 'updated_at'])
        .where('identifier', '=', subject)
        .where('source', '=', source),
    );
    return row;
  }

  /** undefined when Redis failed mid-way: the caller reserves in PostgreSQL instead. */
  /** `known`: the PostgreSQL row, when the caller read it with its own statement (a login, with the account). */
  async #reserveWithRedis(
    subject: string,
    source: LockoutSource,
    now: Date,
    known: { row: LockoutRow | undefined } | undefined,
  ): Promise<Reservation | undefined> {
    const { lockoutMinutes } = this.#deps.config;
    const threshold = this.threshold;
    const [reply, row] = await Promise.all([
      this.#redisCall((redis) =>
        this.#scripts(redis).gatehouseLockoutReserve(
          this.#key(subject),
          source,
          now.getTime(),
          threshold,
          lockoutMinutes * 60_000,
          FORGET_MS,
        ),
      ),
      known ? known.row : this.#row(subject, source),
    ]);
    if (!reply) return undefined;
    const [granted, redisFailures, countedAt] = reply.map(Number) as [number, number, number];
    const refuse = async (retryAfterSeconds: number): Promise<never> => {
      if (granted)
        await this.#redisCall((redis) => this.#scripts(redis).gatehouseLockoutRefund(this.#key(subject), source));
      throw lockedError(retryAfterSeconds);
    };
    const lock = activeLock(row, now);
    if (lock) return refuse(secondsUntil(lock, now));
    // Full while the reservation that filled it is being checked.
    if (!granted) return refuse(secondsUntil(new Date(this.#fullUntil(redisFailures, countedAt)), now));
    // Failures counted in PostgreSQL during an outage still count.
    const carried = postgresFailures(row, now);
    const failures = redisFailures + carried;
    if (failures > threshold) return refuse(lockoutMinutes * 60);
    return {
      subject,
      source,
      store: 'redis',
      fills: failures === threshold,
      lock: undefined,
      carried,
      postgresRow: row !== undefined,
    };
  }

  /** A full Redis count holds until its reservations settle, at most LOCKOUT_MINUTES (a process may die mid-check). */
  #fullUntil(failures: number, countedAt: number): number {
    return failures >= this.threshold ? countedAt + this.#deps.config.lockoutMinutes * 60_000 : 0;
  }

  async #reserveInPostgres(subject: string, source: LockoutSource, now: Date): Promise<Reservation> {
    const row = await this.#upsert(subject, source, 1, now);
    if (!row) {
      const current = await this.#row(subject, source);
      const lock = activeLock(current, now);
      throw lockedError(lock ? secondsUntil(lock, now) : 1);
    }
    const lockedNow = !!row.locked_until && row.locked_until > now;
    return {
      subject,
      source,
      store: 'postgres',
      fills: lockedNow,
      lock: lockedNow ? pendingLock(row, now) : undefined,
      carried: 0,
      postgresRow: true,
    };
  }

  /**
   * One statement: adds `count` failures unless the pair is locked (no row
   * returned then); the addition that reaches the threshold locks it, for
   * LOCKOUT_MINUTES doubling with each lock not yet forgotten, at most
   * LOCKOUT_MAX_MINUTES. Row locks make concurrent reservations on any
   * number of instances count one by one.
   */
  async #upsert(
    subject: string,
    source: LockoutSource,
    count: number,
    now: Date,
  ): Promise<Pick<LockoutRow, 'failures' | 'lock_count' | 'locked_until'> | undefined> {
    const { lockoutMinutes, lockoutMaxMinutes } = this.#deps.config;
    const threshold = this.threshold;
    const forgetBefore = new Date(now.getTime() - FORGET_MS);
    const locksOnInsert = count >= threshold;
    const query = sql<Pick<LockoutRow, 'failures' | 'lock_count' | 'locked_until'>>`
      insert into lockouts as l (identifier, source, failures, lock_count, locked_until, updated_at)
      values (${subject}, ${source}, ${locksOnInsert ? 0 : count}, ${locksOnInsert ? 1 : 0},
              ${locksOnInsert ? new Date(now.getTime() + lockoutMinutes * 60_000) : null}, ${now})
      on conflict (identifier, source) do update set
        (failures, lock_count, locked_until, updated_at) = (
          select
            case when n.failures >= ${threshold}::int then 0 else n.failures end,
            case when n.failures >= ${threshold}::int then n.previous_locks + 1 else l.lock_count end,
            case when n.failures >= ${threshold}::int
              then ${now}::timestamptz + make_interval(mins => least(
                ${lockoutMinutes}::int * power(2, least(n.previous_locks, 30)), ${lockoutMaxMinutes}::int)::int)
              else l.locked_until end,
            ${now}::timestamptz
          from (select
            case when l.updated_at < ${forgetBefore}::timestamptz then 0 else l.failures end + ${count}::int as failures,
            case when l.locked_until is null or l.locked_until < ${forgetBefore}::timestamptz
              then 0 else l.lock_count end as previous_locks) as n)
      where l.locked_until is null or l.locked_until <= ${now}::timestamptz
      returning failures, lock_count, locked_until`.compile(this.#deps.db);
    const { rows } = await this.#deps.db.executeQuery(prepared(CompiledQuery.raw(query.sql, [...query.parameters])));
    return rows[0] as Pick<LockoutRow, 'failures' | 'lock_count' | 'locked_until'> | undefined;
  }

  #redisReady(): boolean {
    const redis = this.#deps.redis;
    if (!redis) return false;
    if (redis.status === 'ready') return true;
    this.#fallback.report();
    return false;
  }

  #scripts(redis: Redis): LockoutRedis {
    if (!this.#scriptsDefined) {
      redis.defineCommand('gatehouseLockoutReserve', { numberOfKeys: 1, lua: RESERVE_SCRIPT });
      redis.defineCommand('gatehouseLockoutRefund', { numberOfKeys: 1, lua: REFUND_SCRIPT });
      this.#scriptsDefined = true;
    }
    return redis as LockoutRedis;
  }

  /** Runs a Redis command; on failure reports the fallback and answers undefined. */
  async #redisCall<T>(command: (redis: Redis) => Promise<T>): Promise<T | undefined> {
    const redis = this.#deps.redis;
    if (!redis) return undefined;
    if (redis.status !== 'ready') {
      this.#fallback.report();
      return undefined;
    }
    try {
      return await command(redis);
    } catch (error) {
      this.#fallback.report(error);
      return undefined;
    }
  }
}

function activeLock(row: Pick<LockoutRow, 'locked_until'> | undefined, now: Date): Date | undefined {
  return row?.locked_until && row.locked_until > now ? row.locked_until : undefined;
}

function secondsUntil(until: Date, now: Date): number {
  return Math.max(1, Math.ceil((until.getTime() - now.getTime()) / 1000));
}

/** Failures in the row that still count: not forgotten, and not from before a lock (a lock resets them). */
function postgresFailures(row: LockoutRow | undefined, now: Date): number {
  if (!row || now.getTime() - row.updated_at.getTime() > FORGET_MS) return 0;
  return row.failures;
}

function pendingLock(row: Pick<LockoutRow, 'lock_count' | 'locked_until'>, now: Date): PendingLock {
  const until = row.locked_until as Date;
  return { until, lockCount: row.lock_count, minutes: Math.round((until.getTime() - now.getTime()) / 60_000) };
}

/** `device:<id>` and `session:<uuid>` name the device or session; audit rows and logs say only which kind. */
function sourceKind(source: LockoutSource): string {
  return source.split(':')[0] as string;
}

function lockedError(retryAfterSeconds: number): AppError {
  return new AppError('ACCOUNT_LOCKED', {
    detail: 'Too many failed login attempts. Try again later or reset your password.',
    retryAfter: retryAfterSeconds,
  });
}

/** Who cleared a lockout, for its audit row. */
export interface Unlocker {
  /** The superuser who asked; null for the CLI and for a password reset. */
  byUserId: number | null;
  via: 'api' | 'cli' | 'host' | 'password_reset';
}

/**
 * The one way a lockout ends early (the admin API, `gatehouse users unlock`
 * and a password reset): clears the locks and failure counts of the account
 * from every source, and audits `account_unlocked` when one of them was
 * locked. True when something was locked.
 */
export async function unlockAccount(
  services: { lockout: Lockout; db: Db },
  user: { id: number },
  unlocker: Unlocker,
  context: RequestContext,
): Promise<boolean> {
  const wasLocked = await services.lockout.clear(lockoutSubject(user, ''));
  if (wasLocked) {
    await recordAudit(
      services.db,
      { action: 'account_unlocked', userId: user.id, details: { by_user_id: unlocker.byUserId, via: unlocker.via } },
      context,
    );
  }
  return wasLocked;
}
