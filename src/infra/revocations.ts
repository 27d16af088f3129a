import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { Db } from '../db/index.ts';
import { isUuid } from '../domain/identifiers.ts';
import type { Clock } from './clock.ts';
import { CLOCK_TOLERANCE_SECONDS } from './tokens.ts';

/** The ids behind a session's public uuid, its owner's among them; they never change, so any instance may cache them. */
export interface SessionIds {
  id: number;
  userId: number;
  userUuid: string;
}

export interface Revocation {
  uuid: string;
  revokedAt: Date;
}

const REVOKED_PREFIX = 'revoked-session:';
/** Present while Redis holds every revocation of the last access-token lifetime. */
const SYNCED_KEY = 'revocations:synced';
const SYNC_INTERVAL_MS = 5_000;
const SYNC_OVERLAP_MS = 60_000;
const REDIS_TIMEOUT_MS = 250;

/**
 * Answers "is this session still live?" for every access token.
 *
 * PostgreSQL (`sessions.revoked_at`) is the authority. With Redis, a revoked
 * session is also written there (for as long as its access tokens can live),
 * and a check is one EXISTS plus an in-process id cache: no database read.
 * Redis is trusted only while it is known to hold every recent revocation:
 * from start-up and after any disconnect or failed command, checks go to
 * PostgreSQL until a sync has copied the recent revocations from PostgreSQL
 * into Redis again. A revocation that could not reach Redis is retried on the
 * next sync, and every instance re-syncs from PostgreSQL every few seconds, so
 * a revocation made while Redis was away is never forgotten when it returns.
 */
export class RevocationList {
  readonly #db: Db;
  readonly #redis: Redis | undefined;
  readonly #clock: Clock;
  readonly #log: FastifyBaseLogger;
  readonly #windowMs: number;
  readonly #ids = new LRUCache<string, SessionIds>({ max: 100_000 });
  #trusted = false;
  /** Bumped whenever Redis may have missed something; a sync that raced with it does not restore trust. */
  #epoch = 0;
  #watermark: Date | undefined;
  #pending: Revocation[] = [];
  #syncing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(db: Db, redis: Redis | undefined, clock: Clock, log: FastifyBaseLogger, accessLifetimeSeconds: number) {
    this.#db = db;
    this.#redis = redis;
    this.#clock = clock;
    this.#log = log;
    this.#windowMs = (accessLifetimeSeconds + CLOCK_TOLERANCE_SECONDS) * 1000 + SYNC_OVERLAP_MS;
  }

  /** Subscribes to Redis' connection state and makes the first sync. */
  async start(): Promise<void> {
    const redis = this.#redis;
    if (!redis) return;
    for (const event of ['close', 'end', 'error']) redis.on(event, () => this.#distrust());
    redis.on('ready', () => void this.sync());
    this.#timer = setInterval(() => void this.sync(), SYNC_INTERVAL_MS);
    this.#timer.unref();
    await this.sync();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** True while checks are answered by Redis alone. */
  get redisTrusted(): boolean {
    return this.#trusted;
  }

  remember(uuid: string, ids: SessionIds): void {
    this.#ids.set(uuid, ids);
  }

  /**
   * The session's ids when it is live and `ownerUuid` (a token's `sub`) owns it;
   * undefined when revoked, unknown or someone else's. Never answers "live" on doubt.
   */
  async liveSession(uuid: string, ownerUuid: string): Promise<SessionIds | undefined> {
    const ids = await this.#liveSession(uuid);
    return ids?.userUuid === ownerUuid ? ids : undefined;
  }

  async #liveSession(uuid: string): Promise<SessionIds | undefined> {
    if (!isUuid(uuid)) return undefined;
    if (this.#trusted && this.#redis) {
      try {
        const revoked = await withTimeout(this.#redis.exists(REVOKED_PREFIX + uuid), REDIS_TIMEOUT_MS);
        // "Revoked" is confirmed by PostgreSQL: a revocation published from a transaction that then rolled back
        // must not lock the session out. Only revoked tokens pay for the read.
        if (!revoked) {
          const cached = this.#ids.get(uuid);
          if (cached) return cached;
        }
      } catch {
        this.#distrust();
      }
    }
    const row = await this.#db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select(['sessions.id', 'sessions.user_id', 'sessions.revoked_at', 'users.uuid as user_uuid'])
      .where('sessions.uuid', '=', uuid)
      .executeTakeFirst();
    if (!row) return undefined;
    const ids = { id: row.id, userId: row.user_id, userUuid: row.user_uuid };
    this.#ids.set(uuid, ids);
    return row.revoked_at === null ? ids : undefined;
  }

  /** Call after the revocation is written to PostgreSQL. */
  async published(revocations: Revocation[]): Promise<void> {
    if (!this.#redis || revocations.length === 0) return;
    try {
      await withTimeout(this.#write(revocations), REDIS_TIMEOUT_MS * 4);
    } catch {
      this.#pending.push(...revocations);
      this.#distrust();
    }
  }

  /** Copies recent revocations from PostgreSQL into Redis; then Redis is trusted again. */
  sync(): Promise<void> {
    this.#syncing ??= this.#syncOnce().finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  async #syncOnce(): Promise<void> {
    const redis = this.#redis;
    if (redis?.status !== 'ready') return;
    const epoch = this.#epoch;
    const startedAt = this.#clock.now();
    try {
      const synced = await withTimeout(redis.exists(SYNCED_KEY), REDIS_TIMEOUT_MS);
      const full = !this.#trusted || !synced || !this.#watermark;
      const since = full
        ? new Date(startedAt.getTime() - this.#windowMs)
        : new Date((this.#watermark as Date).getTime() - SYNC_OVERLAP_MS);
      const pending = this.#pending;
      this.#pending = [];
      const rows = await this.#db
        .selectFrom('sessions')
        .select(['uuid', 'revoked_at'])
        .where('revoked_at', '>', since)
        .execute();
      const revocations = [...pending, ...rows.map((r) => ({ uuid: r.uuid, revokedAt: r.revoked_at as Date }))];
      try {
        await withTimeout(this.#write(revocations, true), REDIS_TIMEOUT_MS * 8);
      } catch (error) {
        this.#pending.push(...pending);
        throw error;
      }
      this.#watermark = startedAt;
      if (epoch === this.#epoch && !this.#trusted) {
        this.#trusted = true;
        this.#log.info({ revocations: revocations.length }, 'session revocations synced to redis');
      }
    } catch (error) {
      this.#distrust();
      this.#log.warn({ err: { message: (error as Error).message } }, 'session revocation sync failed');
    }
  }

  async #write(revocations: Revocation[], markSynced = false): Promise<void> {
    const redis = this.#redis as Redis;
    const pipeline = redis.pipeline();
    const now = this.#clock.now().getTime();
    for (const r of revocations) {
      const ttl = r.revokedAt.getTime() + this.#windowMs - now;
      if (ttl > 0) pipeline.set(REVOKED_PREFIX + r.uuid, '1', 'PX', ttl);
    }
    if (markSynced) pipeline.set(SYNCED_KEY, '1');
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error);
    if (!results || failed) throw failed?.[0] ?? new Error('redis pipeline was not executed');
  }

  #distrust(): void {
    this.#epoch += 1;
    this.#trusted = false;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis timed out')), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
