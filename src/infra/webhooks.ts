import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { type Insertable, type Kysely, sql } from 'kysely';
import type { Config } from '../config.ts';
import type { Database, WebhookDeliveriesTable } from '../db/schema.ts';
import { subscribes, WEBHOOK_ACTIONS, webhookEventOf, webhookSecretBytes } from '../domain/webhook-events.ts';

/**
 * Signed webhooks after the Standard Webhooks specification
 * (https://www.standardwebhooks.com/). Events come from sealed audit rows: a
 * dispatcher with its own cursor on `seal_seq` turns each row that is an event
 * into one `webhook_deliveries` row per receiver, in one transaction with the
 * cursor, so every committed change is sent and nothing rolled back ever is.
 * A sender posts them, one at a time per receiver and in order of commit,
 * with retries over about a day.
 */

/** Key material for webhooks, derived from SECRET_KEY with HKDF, so that it serves nothing else. */
export interface WebhookKeys {
  id: string;
  /** AES-256-GCM key of the endpoints' secrets at rest. */
  encryption: Buffer;
  /** Keys the message ids, so that they are unguessable and differ between deployments. */
  messageId: Buffer;
}

const keyCache = new WeakMap<Config, WebhookKeys>();

export function webhookKeys(config: Config): WebhookKeys {
  let keys = keyCache.get(config);
  if (!keys) {
    const derive = (label: string) => Buffer.from(hkdfSync('sha256', config.secretKey, '', label, 32));
    const encryption = derive('gatehouse webhook endpoint secret');
    const id = createHash('sha256').update(encryption).digest('base64url').slice(0, 12);
    keys = { id, encryption, messageId: derive('gatehouse webhook message id') };
    keyCache.set(config, keys);
  }
  return keys;
}

/** `<iv>.<tag>.<ciphertext>` (base64url); the endpoint's uuid is bound as associated data, so rows cannot be swapped. */
export function encryptEndpointSecret(keys: WebhookKeys, endpointUuid: string, secret: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keys.encryption, iv);
  cipher.setAAD(Buffer.from(`webhook:${endpointUuid}`));
  const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  return [iv, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url')).join('.');
}

function decryptEndpointSecret(keys: WebhookKeys, keyId: string, endpointUuid: string, stored: string): string {
  if (keyId !== keys.id) throw new Error('the endpoint secret was stored under another SECRET_KEY');
  const [iv, tag, ciphertext] = stored.split('.').map((part) => Buffer.from(part, 'base64url'));
  if (!iv || !tag || !ciphertext) throw new Error('stored endpoint secret is malformed');
  const decipher = createDecipheriv('aes-256-gcm', keys.encryption, iv);
  decipher.setAAD(Buffer.from(`webhook:${endpointUuid}`));
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
}

/** A new `whsec_` secret: 32 random bytes, base64, as Standard Webhooks libraries read them. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`. */
export function signWebhook(secret: Buffer, msgId: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', secret).update(`${msgId}.${timestamp}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/** The `webhook-id` of the event an audit row stands for: the same on every attempt, replay and instance. */
function messageIdOf(keys: WebhookKeys, auditId: number): string {
  return `msg_${createHmac('sha256', keys.messageId).update(String(auditId)).digest('base64url').slice(0, 24)}`;
}

/** Where events go: the WEBHOOK_URLS, and the endpoints superusers registered. */
interface Receiver {
  target: string;
  url: string;
  endpointId: number | null;
  events: string[];
}

async function receivers(db: Kysely<Database>, config: Config): Promise<Receiver[]> {
  const configured = config.webhookUrls.map((url) => ({ target: `config:${url}`, url, endpointId: null, events: [] }));
  const registered = await db.selectFrom('webhook_endpoints').select(['id', 'uuid', 'url', 'events']).execute();
  return [
    ...configured,
    ...registered.map((e) => ({ target: `endpoint:${e.uuid}`, url: e.url, endpointId: e.id, events: e.events })),
  ];
}

interface EventRow {
  id: number;
  action: string;
  details: unknown;
  seal_seq: number | null;
  created_at: Date;
  user_uuid: string | null;
  organization_uuid: string | null;
}

function eventRows(db: Kysely<Database>) {
  return db
    .selectFrom('audit_logs as a')
    .leftJoin('users as u', 'u.id', 'a.user_id')
    .leftJoin('organizations as o', 'o.id', 'a.organization_id')
    .select([
      'a.id',
      'a.action',
      'a.details',
      'a.seal_seq',
      'a.created_at',
      'u.uuid as user_uuid',
      'o.uuid as organization_uuid',
    ]);
}

/** The deliveries of one audit row to the receivers that want it; none when the row is no event. */
function deliveriesOf(row: EventRow, targets: Receiver[], keys: WebhookKeys): Insertable<WebhookDeliveriesTable>[] {
  const details = typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
  const event = webhookEventOf({
    action: row.action,
    details: (details ?? {}) as Record<string, unknown>,
    userUuid: row.user_uuid,
    organizationUuid: row.organization_uuid,
  });
  if (!event) return [];
  const payload = JSON.stringify({ type: event.type, timestamp: row.created_at.toISOString(), data: event.data });
  const msgId = messageIdOf(keys, row.id);
  return targets
    .filter((r) => subscribes(r.events, event.type))
    .map((r) => ({
      msg_id: msgId,
      target: r.target,
      endpoint_id: r.endpointId,
      url: r.url,
      event_type: event.type,
      payload,
      seq: Number(row.seal_seq),
    }));
}

const INSERT_CHUNK = 500;

/**
 * Turns the audit rows sealed since the cursor into deliveries, in one
 * transaction with the cursor. Returns how many audit rows it read; 0 also
 * when another instance holds the cursor.
 */
async function dispatchSealedEvents(db: Kysely<Database>, config: Config, batchSize = 500): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const cursor = await trx
      .selectFrom('webhook_cursor')
      .select('last_seq')
      .where('id', '=', 1)
      .forUpdate()
      .skipLocked()
      .executeTakeFirst();
    if (!cursor) return 0;
    const targets = await receivers(trx, config);
    if (targets.length === 0) {
      // Nobody to tell: skip to the head of the chain without reading the rows.
      await trx
        .updateTable('webhook_cursor')
        .set({ last_seq: sql`greatest(last_seq, (select last_seq from audit_chain where id = 1))` })
        .where('id', '=', 1)
        .execute();
      return 0;
    }
    const rows = await eventRows(trx)
      .where('a.seal_seq', '>', Number(cursor.last_seq))
      .orderBy('a.seal_seq')
      .limit(batchSize)
      .execute();
    if (rows.length === 0) return 0;
    const keys = webhookKeys(config);
    const values = rows.flatMap((row) => deliveriesOf(row, targets, keys));
    for (let i = 0; i < values.length; i += INSERT_CHUNK) {
      await trx
        .insertInto('webhook_deliveries')
        .values(values.slice(i, i + INSERT_CHUNK))
        .onConflict((oc) => oc.columns(['msg_id', 'target']).doNothing())
        .execute();
    }
    await trx
      .updateTable('webhook_cursor')
      .set({ last_seq: Number(rows[rows.length - 1]?.seal_seq) })
      .where('id', '=', 1)
      .execute();
    return rows.length;
  });
}

/**
 * Queues again, for every receiver there is now, the events of the audit rows
 * created since `since` that the dispatcher has already handled. Each keeps its
 * `webhook-id`, so a receiver that had it drops the copy. Returns the number of
 * deliveries queued.
 */
export async function replayEvents(db: Kysely<Database>, config: Config, since: Date): Promise<number> {
  const targets = await receivers(db, config);
  if (targets.length === 0) return 0;
  const keys = webhookKeys(config);
  const cursor = await db.selectFrom('webhook_cursor').select('last_seq').where('id', '=', 1).executeTakeFirst();
  const upTo = Number(cursor?.last_seq ?? 0);
  let after = 0;
  let queued = 0;
  for (;;) {
    const rows = await eventRows(db)
      .where('a.created_at', '>=', since)
      .where('a.action', 'in', WEBHOOK_ACTIONS)
      .where('a.seal_seq', '>', after)
      .where('a.seal_seq', '<=', upTo)
      .orderBy('a.seal_seq')
      .limit(INSERT_CHUNK)
      .execute();
    if (rows.length === 0) return queued;
    const values = rows.flatMap((row) => deliveriesOf(row, targets, keys));
    if (values.length > 0) {
      const result = await db
        .insertInto('webhook_deliveries')
        .values(values)
        .onConflict((oc) =>
          oc.columns(['msg_id', 'target']).doUpdateSet({
            status: 'pending',
            attempts: 0,
            next_attempt_at: sql`now()`,
            last_error: null,
            finished_at: null,
          }),
        )
        .executeTakeFirst();
      queued += Number(result.numInsertedOrUpdatedRows ?? 0);
    }
    after = Number(rows[rows.length - 1]?.seal_seq);
  }
}

/** Retry delays, as multiples of WEBHOOK_RETRY_BASE_MS (5 s): 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h… */
const RETRY_STEPS = [1, 6, 24, 120, 360, 720, 1440, 2880, 5760];
/** A delivery still failing this long after its event is given up. */
const GIVE_UP_AFTER_MS = 24 * 60 * 60 * 1000;
/** And after this many attempts, however short the delays (tests shorten them). */
const MAX_ATTEMPTS = 12;
const ATTEMPT_TIMEOUT_MS = 10_000;
/** Longer than any attempt: a claimed delivery stays invisible to other senders meanwhile. */
const LEASE_MS = 60_000;
const POLL_MS = 5_000;
const CLAIM_BATCH = 20;
const DELIVERY_CONCURRENCY = 4;
/** On shutdown, deliveries in flight get this long to finish. */
const STOP_TIMEOUT_MS = 5_000;

function retryDelayMs(attempts: number, baseMs: number): number {
  const step = RETRY_STEPS[Math.min(attempts, RETRY_STEPS.length) - 1] ?? 1;
  return step * baseMs;
}

interface ClaimedDelivery {
  id: number;
  msg_id: string;
  target: string;
  url: string;
  endpoint_id: number | null;
  event_type: string;
  payload: string;
  attempts: number;
  created_at: Date;
}

export interface WebhookSenderOptions {
  db: Kysely<Database>;
  config: Config;
  log: FastifyBaseLogger;
}

/**
 * Dispatches sealed events and delivers them. Several instances can run
 * against one database: a delivery is claimed by one UPDATE over `FOR UPDATE
 * SKIP LOCKED`, which moves its `next_attempt_at` past a lease, and only the
 * oldest pending delivery of each receiver is ever claimed, so each receiver
 * gets its events one at a time, in order of commit. `attempts`, bumped by the
 * claim, fences the outcome against a sender whose lease ran out.
 */
export class WebhookSender {
  readonly #db: Kysely<Database>;
  readonly #config: Config;
  readonly #log: FastifyBaseLogger;
  #timer: NodeJS.Timeout | undefined;
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(options: WebhookSenderOptions) {
    this.#db = options.db;
    this.#config = options.config;
    this.#log = options.log;
  }

  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => this.kick(), POLL_MS);
    this.#timer.unref();
    this.kick();
  }

  /** Dispatch and deliver now: after rows were sealed, or when a retry falls due. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#drain()
      .catch((error: unknown) => {
        this.#log.warn({ err: { message: describe(error) } }, 'webhook dispatch failed');
      })
      .finally(() => {
        this.#running = undefined;
      });
  }

  /** Dispatches and delivers until nothing is due; resolves when idle. */
  async drain(): Promise<void> {
    while (this.#running) await this.#running;
    await this.#drain();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const timer of this.#retryTimers) clearTimeout(timer);
    this.#retryTimers.clear();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, STOP_TIMEOUT_MS);
    });
    await Promise.race([this.#running?.catch(() => {}), deadline]);
    clearTimeout(timer);
  }

  async #drain(): Promise<void> {
    do {
      this.#again = false;
      while ((await dispatchSealedEvents(this.#db, this.#config)) > 0) {
        // More sealed rows may follow.
      }
      while (!this.#stopped && (await this.deliverDue()) > 0) {
        // A receiver's next event is due as soon as the one before it went.
      }
    } while (this.#again && !this.#stopped);
  }

  /** Claims the due head delivery of each receiver (up to a batch) and sends them; returns how many it claimed. */
  async deliverDue(): Promise<number> {
    const claimed = await this.#claim();
    let next = 0;
    const worker = async () => {
      while (next < claimed.length) await this.#deliver(claimed[next++] as ClaimedDelivery);
    };
    await Promise.all(Array.from({ length: Math.min(DELIVERY_CONCURRENCY, claimed.length) }, worker));
    return claimed.length;
  }

  #claim(): Promise<ClaimedDelivery[]> {
    return this.#db
      .updateTable('webhook_deliveries')
      .set({
        attempts: sql`attempts + 1`,
        next_attempt_at: sql`now() + ${LEASE_MS} * interval '1 millisecond'`,
      })
      .where('id', 'in', (eb) =>
        eb
          .selectFrom('webhook_deliveries as d')
          .select('d.id')
          .where('d.status', '=', 'pending')
          .where('d.next_attempt_at', '<=', sql<Date>`now()`)
          .where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('webhook_deliveries as e')
                  .select('e.id')
                  .whereRef('e.target', '=', 'd.target')
                  .where('e.status', '=', 'pending')
                  .whereRef('e.seq', '<', 'd.seq'),
              ),
            ),
          )
          .orderBy('d.seq')
          .limit(CLAIM_BATCH)
          .forUpdate()
          .skipLocked(),
      )
      .returning(['id', 'msg_id', 'target', 'url', 'endpoint_id', 'event_type', 'payload', 'attempts', 'created_at'])
      .execute();
  }

  async #secretOf(delivery: ClaimedDelivery): Promise<string | undefined> {
    if (delivery.endpoint_id === null) {
      const configured = this.#config.webhookUrls.some((url) => `config:${url}` === delivery.target);
      return configured ? this.#config.webhookSecret : undefined;
    }
    const endpoint = await this.#db
      .selectFrom('webhook_endpoints')
      .select(['uuid', 'secret_ciphertext', 'key_id'])
      .where('id', '=', delivery.endpoint_id)
      .executeTakeFirst();
    if (!endpoint) return undefined;
    return decryptEndpointSecret(webhookKeys(this.#config), endpoint.key_id, endpoint.uuid, endpoint.secret_ciphertext);
  }

  async #deliver(delivery: ClaimedDelivery): Promise<void> {
    const fenced = () =>
      this.#db
        .updateTable('webhook_deliveries')
        .where('id', '=', delivery.id)
        .where('attempts', '=', delivery.attempts)
        .where('status', '=', 'pending');
    const where = { webhook_id: delivery.msg_id, type: delivery.event_type, receiver: receiverName(delivery) };
    let secret: string | undefined;
    try {
      secret = await this.#secretOf(delivery);
    } catch (error) {
      secret = undefined;
      this.#log.error({ ...where, err: { message: describe(error) } }, 'webhook secret unreadable');
    }
    const key = secret === undefined ? undefined : webhookSecretBytes(secret);
    if (key === undefined) {
      await fenced()
        .set({ status: 'failed', last_error: 'receiver no longer configured', finished_at: sql`now()` })
        .execute();
      this.#log.warn(where, 'webhook dropped: its receiver is no longer configured');
      return;
    }
    let failure: string | undefined;
    try {
      const timestamp = Math.floor(Date.now() / 1000);
      const response = await fetch(delivery.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Gatehouse-Webhooks',
          'webhook-id': delivery.msg_id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(key, delivery.msg_id, timestamp, delivery.payload),
        },
        body: delivery.payload,
        // A redirect is an answer to fix at the receiver, not one to follow with a signed body.
        redirect: 'manual',
        signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
      });
      await response.body?.cancel().catch(() => {});
      if (response.status < 200 || response.status >= 300) failure = `HTTP ${response.status}`;
    } catch (error) {
      failure = describe(error);
    }
    if (failure === undefined) {
      await fenced().set({ status: 'delivered', last_error: null, finished_at: sql`now()` }).execute();
      this.#log.info({ ...where, attempts: delivery.attempts }, 'webhook delivered');
      return;
    }
    const delay = retryDelayMs(delivery.attempts, this.#config.webhookRetryBaseMs);
    const expired =
      delivery.attempts >= MAX_ATTEMPTS || Date.now() + delay - delivery.created_at.getTime() > GIVE_UP_AFTER_MS;
    if (expired) {
      await fenced().set({ status: 'failed', last_error: failure, finished_at: sql`now()` }).execute();
      this.#log.error({ ...where, attempts: delivery.attempts, error: failure }, 'webhook delivery failed for good');
      return;
    }
    await fenced()
      .set({ last_error: failure, next_attempt_at: sql`now() + ${delay} * interval '1 millisecond'` })
      .execute();
    this.#log.warn(
      { ...where, attempts: delivery.attempts, retry_in_ms: delay, error: failure },
      'webhook delivery failed; will retry',
    );
    if (delay < POLL_MS && !this.#stopped) {
      const timer = setTimeout(() => {
        this.#retryTimers.delete(timer);
        this.kick();
      }, delay);
      timer.unref();
      this.#retryTimers.add(timer);
    }
  }
}

/** A receiver as log lines name it: the endpoint's uuid, or the configured URL's origin (its path may hold a token). */
function receiverName(delivery: { target: string; url: string }): string {
  if (delivery.target.startsWith('endpoint:')) return delivery.target;
  try {
    return `config:${new URL(delivery.url).origin}`;
  } catch {
    return 'config';
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error.cause as { code?: unknown } | undefined)?.code;
    const text = typeof cause === 'string' ? `${error.message}: ${cause}` : error.message;
    return text.slice(0, 300);
  }
  return String(error).slice(0, 300);
}
