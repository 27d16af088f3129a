import { createHash } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { type Kysely, sql } from 'kysely';
import type { Database } from '../db/schema.ts';

/**
 * Tamper evidence for `audit_logs`. Flows insert rows unsealed inside their own
 * transactions; a background sealer later links each row to the one sealed
 * before it: hash = SHA-256(canonical row ‖ prev_hash). The chain follows
 * sealing order (`seal_seq`), so rows that commit out of id order never wait
 * and never break it, and the request path takes no lock at all.
 */

export const GENESIS_HASH = '0'.repeat(64);
const CANONICAL_VERSION = 1;
/** A row sealed after one created more than this much later was written after the fact. */
const BACKDATE_TOLERANCE_MS = 5 * 60_000;

export interface ChainRow {
  id: number;
  action: string;
  user_id: number | null;
  organization_id: number | null;
  ip_address: string | null;
  user_agent: string | null;
  details: unknown;
  /** `created_at` at microsecond precision, UTC, as PostgreSQL renders it. */
  created_at: string;
}

interface SealedRow extends ChainRow {
  seal_seq: number;
  prev_hash: string | null;
  hash: string | null;
}

/** JSON with object keys sorted, so that equal values always give equal bytes. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export function chainHash(row: ChainRow, prevHash: string): string {
  const canonical = canonicalJson([
    CANONICAL_VERSION,
    row.id,
    row.action,
    row.user_id,
    row.organization_id,
    row.ip_address,
    row.user_agent,
    row.details,
    row.created_at,
    prevHash,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

function parseDetails(details: unknown): unknown {
  // pg and PGlite both parse jsonb, but a driver that hands back text must hash the same.
  return typeof details === 'string' ? JSON.parse(details) : details;
}

const createdAtText = sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

function chainColumns(db: Kysely<Database>) {
  return db
    .selectFrom('audit_logs')
    .select([
      'id',
      'action',
      'user_id',
      'organization_id',
      'ip_address',
      'user_agent',
      'details',
      createdAtText.as('created_at'),
    ]);
}

/**
 * Seals up to `batchSize` unsealed rows, in id order, onto the chain. Returns
 * how many it sealed; 0 also when another sealer (any instance) holds the head.
 */
export async function sealBatch(db: Kysely<Database>, batchSize = 200): Promise<number> {
  return db.transaction().execute(async (trx) => {
    // One head row, locked without waiting: concurrent sealers never interleave, never block.
    const head = await trx
      .selectFrom('audit_chain')
      .select(['last_seq', 'last_hash'])
      .where('id', '=', 1)
      .forUpdate()
      .skipLocked()
      .executeTakeFirst();
    if (!head) return 0;
    const rows = await chainColumns(trx).where('seal_seq', 'is', null).orderBy('id').limit(batchSize).execute();
    if (rows.length === 0) return 0;
    let seq = Number(head.last_seq);
    let prev = head.last_hash;
    const links = rows.map((row) => {
      seq += 1;
      const hash = chainHash({ ...row, details: parseDetails(row.details) }, prev);
      const link = sql`(${row.id}::bigint, ${seq}::bigint, ${prev}, ${hash})`;
      prev = hash;
      return link;
    });
    // One statement per batch: a round trip per row would make sealing the bottleneck.
    await sql`update audit_logs as a set seal_seq = v.seq, prev_hash = v.prev, hash = v.hash
      from (values ${sql.join(links)}) as v(id, seq, prev, hash) where a.id = v.id`.execute(trx);
    await trx
      .updateTable('audit_chain')
      .set({ last_seq: seq, last_hash: prev, sealed_at: sql`now()` })
      .where('id', '=', 1)
      .execute();
    return rows.length;
  });
}

/** Seals until nothing is left (or another sealer holds the head). */
export async function sealAll(db: Kysely<Database>, batchSize = 200): Promise<number> {
  let total = 0;
  for (;;) {
    const sealed = await sealBatch(db, batchSize);
    total += sealed;
    if (sealed < batchSize) return total;
  }
}

/** Runs `sealAll` every few seconds in the background; one final pass on stop. */
export class AuditSealer {
  readonly #db: Kysely<Database>;
  readonly #log: FastifyBaseLogger;
  readonly #intervalMs: number;
  readonly #onSealed: (count: number) => void;
  readonly #kickDelayMs: number;
  #timer: NodeJS.Timeout | undefined;
  #kickTimer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(
    db: Kysely<Database>,
    log: FastifyBaseLogger,
    options: { intervalMs?: number; kickDelayMs?: number; onSealed?: (count: number) => void } = {},
  ) {
    this.#db = db;
    this.#log = log;
    this.#intervalMs = options.intervalMs ?? 2_000;
    this.#kickDelayMs = options.kickDelayMs ?? 200;
    this.#onSealed = options.onSealed ?? (() => {});
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.sealNow(), this.#intervalMs);
    this.#timer.unref();
  }

  /**
   * After a request that may have written audit rows: seal within `kickDelayMs`
   * rather than at the next tick, so that the window in which a fresh row is
   * unsealed stays short. Kicks within that delay, or during a pass, coalesce
   * into one pass: under load a pass seals a batch, not one row per request.
   */
  kick(): void {
    if (this.#stopped || this.#kickTimer) return;
    this.#kickTimer = setTimeout(() => {
      this.#kickTimer = undefined;
      if (this.#running) this.#again = true;
      else void this.sealNow();
    }, this.#kickDelayMs);
    this.#kickTimer.unref();
  }

  /** One sealing pass; concurrent calls share the pass in progress. */
  sealNow(): Promise<void> {
    this.#running ??= sealAll(this.#db)
      .then((count) => {
        if (count > 0) this.#onSealed(count);
      })
      .catch((error: unknown) => {
        this.#log.warn(
          { err: { message: error instanceof Error ? error.message : String(error) } },
          'audit sealing failed',
        );
      })
      .finally(() => {
        this.#running = undefined;
        if (this.#again && !this.#stopped) {
          this.#again = false;
          void this.sealNow();
        }
      });
    return this.#running;
  }

  /** Stops the timer and seals what the last requests wrote. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#kickTimer);
    this.#timer = undefined;
    this.#kickTimer = undefined;
    await this.#running;
    await this.sealNow();
  }
}

type ChainProblemKind = 'altered' | 'inserted' | 'deleted';

interface ChainProblem {
  kind: ChainProblemKind;
  /** The row at fault, or (for `deleted`) the first row after the gap; null when the gap is at the end. */
  id: number | null;
  sealSeq: number | null;
  message: string;
}

export interface ChainVerification {
  ok: boolean;
  /** Sealed rows checked. */
  checked: number;
  /** Rows not sealed yet (the sealer runs every few seconds). */
  unsealed: number;
  head: { seq: number; hash: string };
  problem?: ChainProblem;
}

interface Link {
  id: number;
  seq: number;
  hash: string;
  prevHash: string;
  createdAt: number;
}

export interface VerifyOptions {
  pageSize?: number;
  onStart?: (total: number) => void;
  onProgress?: (checked: number) => void;
}

/**
 * Walks the chain in sealing order and reports the first row that was altered,
 * inserted or deleted. One read-only snapshot, so a sealer running meanwhile
 * cannot make fresh rows look inserted; pages keep memory flat on a long log.
 */
export function verifyAuditChain(db: Kysely<Database>, options: VerifyOptions = {}): Promise<ChainVerification> {
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute((trx) => verifySnapshot(trx, options));
}

async function verifySnapshot(db: Kysely<Database>, options: VerifyOptions): Promise<ChainVerification> {
  const pageSize = options.pageSize ?? 1_000;
  const headRow = await db
    .selectFrom('audit_chain')
    .select(['last_seq', 'last_hash'])
    .where('id', '=', 1)
    .executeTakeFirst();
  const head = { seq: Number(headRow?.last_seq ?? 0), hash: headRow?.last_hash ?? GENESIS_HASH };
  const counts = await db
    .selectFrom('audit_logs')
    .select((eb) => [eb.fn.count<number>('seal_seq').as('sealed'), eb.fn.countAll<number>().as('total')])
    .executeTakeFirstOrThrow();
  const unsealed = Number(counts.total) - Number(counts.sealed);
  options.onStart?.(Number(counts.sealed));

  let checked = 0;
  // The two links before the current row: enough to tell an inserted row from a gap.
  let previous: Link = { id: 0, seq: 0, hash: GENESIS_HASH, prevHash: '', createdAt: Number.NEGATIVE_INFINITY };
  let beforePrevious: Link | undefined;
  const fail = (problem: ChainProblem): ChainVerification => ({ ok: false, checked, unsealed, head, problem });

  for (;;) {
    const page = (await chainColumns(db)
      .select(['seal_seq', 'prev_hash', 'hash'])
      .where('seal_seq', '>', previous.seq)
      .orderBy('seal_seq')
      .limit(pageSize)
      .execute()) as SealedRow[];
    for (const row of page) {
      const seq = Number(row.seal_seq);
      const where = `row id ${row.id} (seal ${seq})`;
      if (row.hash === null || row.prev_hash === null) {
        return fail({ kind: 'altered', id: row.id, sealSeq: seq, message: `${where} has lost its hash` });
      }
      if (seq > head.seq) {
        return fail({
          kind: 'inserted',
          id: row.id,
          sealSeq: seq,
          message: `${where} lies beyond the chain head (seal ${head.seq}): it was inserted`,
        });
      }
      if (chainHash({ ...row, details: parseDetails(row.details) }, row.prev_hash) !== row.hash) {
        return fail({
          kind: 'altered',
          id: row.id,
          sealSeq: seq,
          message: `${where} was altered: its contents no longer match its hash`,
        });
      }
      if (row.prev_hash !== previous.hash || seq !== previous.seq + 1) {
        if (beforePrevious && row.prev_hash === beforePrevious.hash && previous.prevHash === beforePrevious.hash) {
          return fail({
            kind: 'inserted',
            id: previous.id,
            sealSeq: previous.seq,
            message: `row id ${previous.id} (seal ${previous.seq}) was inserted: the row after it links past it`,
          });
        }
        if (seq !== previous.seq + 1 || previous.seq === 0) {
          return fail({
            kind: 'deleted',
            id: row.id,
            sealSeq: seq,
            message:
              previous.seq === 0
                ? `row(s) were deleted before ${where}, the first row of the chain`
                : `row(s) were deleted between row id ${previous.id} (seal ${previous.seq}) and ${where}`,
          });
        }
        // Numbering is intact but the link is not: the previous row was rewritten with a fresh hash
        // (or rows after it were deleted and the rest renumbered, which looks the same).
        return fail({
          kind: 'altered',
          id: previous.id,
          sealSeq: previous.seq,
          message: `row id ${previous.id} (seal ${previous.seq}) was altered and re-hashed, or rows after it were deleted and renumbered: ${where} records a different hash for it`,
        });
      }
      const createdAt = Date.parse(row.created_at);
      if (createdAt < previous.createdAt - BACKDATE_TOLERANCE_MS) {
        return fail({
          kind: 'inserted',
          id: row.id,
          sealSeq: seq,
          message: `${where} was inserted after the fact: created ${row.created_at}, long before row id ${previous.id} sealed ahead of it`,
        });
      }
      beforePrevious = previous;
      previous = {
        id: row.id,
        seq,
        hash: row.hash,
        prevHash: row.prev_hash,
        createdAt: Math.max(createdAt, previous.createdAt),
      };
      checked += 1;
    }
    options.onProgress?.(checked);
    if (page.length < pageSize) break;
  }

  if (previous.seq !== head.seq || previous.hash !== head.hash) {
    return fail({
      kind: 'deleted',
      id: null,
      sealSeq: null,
      message:
        previous.seq < head.seq
          ? `row(s) were deleted at the end of the chain: the last row is seal ${previous.seq}, the head records seal ${head.seq}`
          : `the chain head does not match the last row (seal ${previous.seq}): the head was altered`,
    });
  }
  return { ok: true, checked, unsealed, head };
}
