import type { FastifyBaseLogger } from 'fastify';
import type { SelectQueryBuilder } from 'kysely';
import type { Db } from '../db/index.ts';
import type { Database } from '../db/schema.ts';
import { FORGET_AFTER_SECONDS } from './lockout.ts';

/** How long rows nobody can use any more are kept before they are deleted. */
export interface Retention {
  /** `login_attempts` and `registration_attempts` rows older than this many days go. */
  loginAttemptsDays: number;
  /** Delivered or abandoned `email_outbox` rows (their bodies hold links) older than this many days go. */
  mailDays: number;
}

/** Rows deleted by one pass, per table. */
export interface Purged {
  sessions: number;
  one_time_tokens: number;
  mfa_challenges: number;
  webauthn_challenges: number;
  login_attempts: number;
  registration_attempts: number;
  email_outbox: number;
  lockouts: number;
  email_sign_ins: number;
  /** The OpenID provider's expired interactions, sessions, grants, codes and tokens. */
  oidc_payloads: number;
  /** Changes of e-mail address whose links (confirmation, then undo) all expired. */
  email_changes: number;
  /** Webhook deliveries a day past success, or past being given up. */
  webhook_deliveries: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Expired sessions and spent tokens stay a day, so that a late request still gets "expired", not "unknown". */
const GRACE_MS = DAY_MS;
/** Rows per DELETE: a large backlog goes in short statements, never one long lock. */
const CHUNK = 5_000;

/**
 * Deletes rows that can no longer matter: sessions a day past their expiry
 * (no token of theirs is accepted any more), one-time tokens and second-factor
 * challenges a day past use or expiry, e-mail sign-ins and the OpenID provider's state a day past expiry, changes of e-mail address a day past their last link's expiry, login and registration attempts and sent or failed mail past their retention, and
 * lockout rows whose failures and lock history are already forgotten. The
 * audit log is never touched: its rows form a hash chain.
 */
export async function purgeExpired(db: Db, now: Date, retention: Retention): Promise<Purged> {
  const graceEnd = new Date(now.getTime() - GRACE_MS);
  const attemptsEnd = new Date(now.getTime() - retention.loginAttemptsDays * DAY_MS);
  const mailEnd = new Date(now.getTime() - retention.mailDays * DAY_MS);
  const lockoutsEnd = new Date(now.getTime() - FORGET_AFTER_SECONDS * 1000);
  return {
    sessions: await deleteInChunks(db, 'sessions', () =>
      db.selectFrom('sessions').select('id').where('expires_at', '<', graceEnd),
    ),
    one_time_tokens: await deleteInChunks(db, 'one_time_tokens', () =>
      db
        .selectFrom('one_time_tokens')
        .select('id')
        .where((w) => w.or([w('expires_at', '<', graceEnd), w('used_at', '<', graceEnd)])),
    ),
    mfa_challenges: await deleteInChunks(db, 'mfa_challenges', () =>
      db.selectFrom('mfa_challenges').select('id').where('expires_at', '<', graceEnd),
    ),
    webauthn_challenges: await deleteInChunks(db, 'webauthn_challenges', () =>
      db.selectFrom('webauthn_challenges').select('id').where('expires_at', '<', graceEnd),
    ),
    login_attempts: await deleteInChunks(db, 'login_attempts', () =>
      db.selectFrom('login_attempts').select('id').where('attempted_at', '<', attemptsEnd),
    ),
    registration_attempts: await deleteInChunks(db, 'registration_attempts', () =>
      db.selectFrom('registration_attempts').select('id').where('attempted_at', '<', attemptsEnd),
    ),
    email_outbox: await deleteInChunks(db, 'email_outbox', () =>
      db
        .selectFrom('email_outbox')
        .select('id')
        .where((w) =>
          w.or([
            w.and([w('status', '=', 'sent'), w('sent_at', '<', mailEnd)]),
            w.and([w('status', '=', 'failed'), w('created_at', '<', mailEnd)]),
          ]),
        ),
    ),
    lockouts: Number(
      (
        await db
          .deleteFrom('lockouts')
          .where('updated_at', '<', lockoutsEnd)
          .where((w) => w.or([w('locked_until', 'is', null), w('locked_until', '<', lockoutsEnd)]))
          .executeTakeFirst()
      ).numDeletedRows,
    ),
    email_sign_ins: await deleteInChunks(db, 'email_sign_ins', () =>
      db.selectFrom('email_sign_ins').select('id').where('expires_at', '<', graceEnd),
    ),
    oidc_payloads: Number(
      (await db.deleteFrom('oidc_payloads').where('expires_at', '<', graceEnd).executeTakeFirst()).numDeletedRows,
    ),
    email_changes: await deleteInChunks(db, 'email_changes', () =>
      db
        .selectFrom('email_changes')
        .select('id')
        .where('confirm_expires_at', '<', graceEnd)
        .where((w) => w.or([w('revert_expires_at', 'is', null), w('revert_expires_at', '<', graceEnd)])),
    ),
    // `gatehouse webhooks replay` queues them again from the audit log, which is kept.
    webhook_deliveries: await deleteInChunks(db, 'webhook_deliveries', () =>
      db
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('status', '!=', 'pending')
        .where('finished_at', '<', graceEnd),
    ),
  };
}

type ChunkedTable =
  | 'sessions'
  | 'one_time_tokens'
  | 'mfa_challenges'
  | 'webauthn_challenges'
  | 'login_attempts'
  | 'registration_attempts'
  | 'email_outbox'
  | 'email_sign_ins'
  | 'email_changes'
  | 'webhook_deliveries';

/** Deletes the rows whose ids `which` selects, CHUNK at a time, until none is left; returns how many went. */
async function deleteInChunks(
  db: Db,
  table: ChunkedTable,
  which: () => SelectQueryBuilder<Database, ChunkedTable, { id: number }>,
): Promise<number> {
  let total = 0;
  for (;;) {
    const result = await db.deleteFrom(table).where('id', 'in', which().limit(CHUNK)).executeTakeFirst();
    const deleted = Number(result.numDeletedRows);
    total += deleted;
    if (deleted < CHUNK) return total;
  }
}

/**
 * Runs `purgeExpired` every `intervalMs` (first run after one interval, with
 * up to a minute of jitter so that instances started together do not run
 * together). Passes are idempotent, so several instances may each run them.
 */
export class Housekeeper {
  readonly #db: Db;
  readonly #log: FastifyBaseLogger;
  readonly #now: () => Date;
  readonly #retention: Retention;
  readonly #intervalMs: number;
  readonly #onPurged: (purged: Purged) => void;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<Purged | undefined> | undefined;

  constructor(options: {
    db: Db;
    log: FastifyBaseLogger;
    now: () => Date;
    retention: Retention;
    intervalMs: number;
    onPurged?: (purged: Purged) => void;
  }) {
    this.#db = options.db;
    this.#log = options.log;
    this.#now = options.now;
    this.#retention = options.retention;
    this.#intervalMs = options.intervalMs;
    this.#onPurged = options.onPurged ?? (() => {});
  }

  /** Schedules passes; an interval of 0 turns them off. */
  start(): void {
    if (this.#timer || this.#intervalMs <= 0) return;
    const schedule = (delayMs: number) => {
      this.#timer = setTimeout(() => {
        void this.runNow().finally(() => {
          if (this.#timer) schedule(this.#intervalMs);
        });
      }, delayMs);
      this.#timer.unref();
    };
    schedule(this.#intervalMs + Math.floor(Math.random() * Math.min(60_000, this.#intervalMs)));
  }

  /** One pass; a failure is logged and the next pass tries again. Concurrent calls share the pass. */
  runNow(): Promise<Purged | undefined> {
    this.#running ??= purgeExpired(this.#db, this.#now(), this.#retention)
      .then(
        (purged) => {
          this.#onPurged(purged);
          if (Object.values(purged).some((n) => n > 0))
            this.#log.info({ purged }, 'housekeeping: expired rows deleted');
          return purged;
        },
        (error: unknown) => {
          this.#log.warn({ err: { message: (error as Error).message } }, 'housekeeping pass failed');
          return undefined;
        },
      )
      .finally(() => {
        this.#running = undefined;
      });
    return this.#running;
  }

  /** Stops scheduling and waits for a pass in progress. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
