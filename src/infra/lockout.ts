import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import type { Selectable } from 'kysely';
import type { Config } from '../config.ts';
import type { Db } from '../db/index.ts';
import { executePrepared } from '../db/prepared.ts';
import type { LockoutsTable } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { normalizeIdentifier } from '../domain/identifiers.ts';
import { type RequestContext, SYSTEM_CONTEXT } from '../domain/request-context.ts';
import type { AbuseMetrics } from './abuse-metrics.ts';
import { recordAudit } from './audit.ts';
import type { Clock } from './clock.ts';
import { FallbackReporter } from './rate-limits.ts';
import { sha256Hex } from './sha256.ts';

/** Failures and lock history are forgotten after a day without news of the identifier. */
export const FORGET_AFTER_SECONDS = 24 * 60 * 60;
const IDENTIFIER_MAX = 320;

type LockoutRow = Selectable<LockoutsTable>;

export interface LockoutState {
  locked: boolean;
  /** Seconds until the lock ends; 0 when not locked. */
  retryAfterSeconds: number;
  /** Consecutive failures counted since the last success or lock. */
  failures: number;
}

export interface FailureResult extends LockoutState {
  /** This failure was the one that locked the identifier. */
  lockedNow: boolean;
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
 * Consecutive login failures per identifier, existing or not, so that a lock
 * says nothing about whether an account exists.
 *
 * Where things live: locks (locked_until, lock_count) are rare and must
 * survive anything, so they are always written to PostgreSQL (`lockouts`),
 * in the same transaction as the `account_locked` audit row. The hot failure
 * counter lives in Redis when configured (`<prefix>lockout:<identifier>`).
 * While Redis is unreachable the counter moves to `lockouts.failures`, never
 * to process memory: N instances must not give an attacker N times the
 * attempts. A check adds both counters, so failures counted during an outage
 * still count after Redis returns.
 */
export class Lockout {
  readonly #deps: LockoutDependencies;
  readonly #fallback: FallbackReporter;

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

  async check(identifier: string): Promise<LockoutState> {
    const id = lockoutIdentifier(identifier);
    const [row, redisFailures] = await Promise.all([this.#row(id), this.#redisFailures(id)]);
    return this.#state(row, redisFailures ?? 0);
  }

  /** 423 ACCOUNT_LOCKED with Retry-After while the identifier is locked, whatever the password. */
  async assertNotLocked(identifier: string): Promise<LockoutState> {
    const state = await this.check(identifier);
    if (state.locked) throw lockedError(state.retryAfterSeconds);
    return state;
  }

  /** Counts a failed password; the failure that reaches the threshold locks. */
  async recordFailure(
    identifier: string,
    options: { userId?: number | null; context?: RequestContext } = {},
  ): Promise<FailureResult> {
    const id = lockoutIdentifier(identifier);
    const now = this.#deps.clock.now();
    let failures: number;
    const inRedis = await this.#incrementInRedis(id);
    if (inRedis === undefined) {
      failures = await this.#incrementInPostgres(id, now);
    } else {
      const row = await this.#row(id);
      failures = inRedis + this.#postgresFailures(row, now);
    }
    if (failures < this.threshold) return { locked: false, retryAfterSeconds: 0, failures, lockedNow: false };
    return this.#lock(id, now, options.userId ?? null, options.context ?? SYSTEM_CONTEXT);
  }

  /** A successful login: the count and the lock history start again. */
  async recordSuccess(identifier: string): Promise<void> {
    await this.clear(identifier);
  }

  /** Removes any lock and count; true when the identifier was locked. Used by unlock and password reset. */
  async clear(identifier: string): Promise<boolean> {
    const id = lockoutIdentifier(identifier);
    await this.#redisCall((redis) => redis.del(this.#key(id)));
    const db = this.#deps.db;
    const [deleted] = await executePrepared(
      db,
      db.deleteFrom('lockouts').where('identifier', '=', id).returning('locked_until'),
    );
    return !!deleted?.locked_until && deleted.locked_until > this.#deps.clock.now();
  }

  #key(id: string): string {
    return `lockout:${id}`;
  }

  async #row(id: string): Promise<LockoutRow | undefined> {
    const db = this.#deps.db;
    const [row] = await executePrepared(db, db.selectFrom('lockouts').selectAll().where('identifier', '=', id));
    return row;
  }

  #postgresFailures(row: LockoutRow | undefined, now: Date): number {
    if (!row) return 0;
    return now.getTime() - row.updated_at.getTime() > FORGET_AFTER_SECONDS * 1000 ? 0 : row.failures;
  }

  #state(row: LockoutRow | undefined, redisFailures: number): LockoutState {
    const now = this.#deps.clock.now();
    const lockedUntil = row?.locked_until;
    if (lockedUntil && lockedUntil > now) {
      return {
        locked: true,
        retryAfterSeconds: Math.max(1, Math.ceil((lockedUntil.getTime() - now.getTime()) / 1000)),
        failures: 0,
      };
    }
    return { locked: false, retryAfterSeconds: 0, failures: redisFailures + this.#postgresFailures(row, now) };
  }

  /** undefined when Redis is not configured or not reachable. */
  async #redisFailures(id: string): Promise<number | undefined> {
    const value = await this.#redisCall((redis) => redis.get(this.#key(id)));
    return value == null ? undefined : Number(value) || 0;
  }

  async #incrementInRedis(id: string): Promise<number | undefined> {
    const result = await this.#redisCall((redis) =>
      redis.multi().incr(this.#key(id)).expire(this.#key(id), FORGET_AFTER_SECONDS).exec(),
    );
    if (!result) return undefined;
    const [error, count] = result[0] ?? [new Error('empty reply')];
    if (error) {
      this.#fallback.report(error);
      return undefined;
    }
    return Number(count);
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

  /** Atomic in PostgreSQL: concurrent failures on several instances each count once. */
  async #incrementInPostgres(id: string, now: Date): Promise<number> {
    const forgetBefore = new Date(now.getTime() - FORGET_AFTER_SECONDS * 1000);
    const row = await this.#deps.db
      .insertInto('lockouts')
      .values({ identifier: id, failures: 1, lock_count: 0, locked_until: null, updated_at: now })
      .onConflict((oc) =>
        oc.column('identifier').doUpdateSet((eb) => ({
          failures: eb
            .case()
            .when('lockouts.updated_at', '<', forgetBefore)
            .then(1)
            .else(eb('lockouts.failures', '+', 1))
            .end(),
          updated_at: now,
        })),
      )
      .returning('failures')
      .executeTakeFirstOrThrow();
    return row.failures;
  }

  /**
   * One transaction with the row locked: if several instances cross the
   * threshold together, only the first locks (and doubles) it.
   */
  async #lock(id: string, now: Date, userId: number | null, context: RequestContext): Promise<FailureResult> {
    const { lockoutMinutes, lockoutMaxMinutes } = this.#deps.config;
    const result = await this.#deps.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('lockouts')
        .values({ identifier: id, failures: 0, lock_count: 0, locked_until: null, updated_at: now })
        .onConflict((oc) => oc.column('identifier').doNothing())
        .execute();
      const row = await trx
        .selectFrom('lockouts')
        .selectAll()
        .where('identifier', '=', id)
        .forUpdate()
        .executeTakeFirstOrThrow();
      if (row.locked_until && row.locked_until > now) return { lockedUntil: row.locked_until, lockedNow: false };
      // Each further lock doubles, unless the last one ended long ago.
      const forgotten = !row.locked_until || now.getTime() - row.locked_until.getTime() > FORGET_AFTER_SECONDS * 1000;
      const previousLocks = forgotten ? 0 : row.lock_count;
      const minutes = Math.min(lockoutMinutes * 2 ** Math.min(previousLocks, 30), lockoutMaxMinutes);
      const lockedUntil = new Date(now.getTime() + minutes * 60_000);
      await trx
        .updateTable('lockouts')
        .set({ failures: 0, lock_count: previousLocks + 1, locked_until: lockedUntil, updated_at: now })
        .where('identifier', '=', id)
        .execute();
      await recordAudit(
        trx,
        {
          action: 'account_locked',
          userId,
          details: { identifier: id, lock_count: previousLocks + 1, locked_minutes: minutes },
        },
        context,
      );
      return { lockedUntil, lockedNow: true };
    });
    await this.#redisCall((redis) => redis.del(this.#key(id)));
    if (result.lockedNow) {
      this.#deps.metrics.lockouts.inc();
      this.#deps.log.info('identifier locked after consecutive login failures');
    }
    const retryAfterSeconds = Math.max(1, Math.ceil((result.lockedUntil.getTime() - now.getTime()) / 1000));
    return { locked: true, retryAfterSeconds, failures: 0, lockedNow: result.lockedNow };
  }
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
  via: 'api' | 'cli' | 'password_reset';
}

/**
 * The one way a lockout ends early (the admin API, `gatehouse users unlock`
 * and a password reset): clears the lock and the failure count of every
 * identifier the user logs in with, and audits `account_unlocked` when one
 * of them was locked. True when something was locked.
 */
export async function unlockAccount(
  services: { lockout: Lockout; db: Db },
  user: { id: number; username: string; email: string },
  unlocker: Unlocker,
  context: RequestContext,
): Promise<boolean> {
  const cleared = await Promise.all([services.lockout.clear(user.username), services.lockout.clear(user.email)]);
  const wasLocked = cleared.some(Boolean);
  if (wasLocked) {
    await recordAudit(
      services.db,
      { action: 'account_unlocked', userId: user.id, details: { by_user_id: unlocker.byUserId, via: unlocker.via } },
      context,
    );
  }
  return wasLocked;
}
