import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { sql } from 'kysely';
import nodemailer from 'nodemailer';
import type { Environment } from '../config.ts';
import type { Db } from '../db/index.ts';

/** One claimed outbox row, ready to go out. */
export interface OutgoingMail {
  id: number;
  to: string;
  subject: string;
  text: string;
  html: string;
  createdAt: Date;
}

/** Where mail goes: a real SMTP server, or the development sink. */
export interface MailTransport {
  readonly kind: 'smtp' | 'sink';
  deliver(mail: OutgoingMail): Promise<void>;
  close(): void;
}

export interface MailTransportOptions {
  smtpUrl: string | undefined;
  /** The sink logs each mail's link only in `development`: test and CI logs are often kept and shared. */
  environment?: Environment;
  mailFrom: string;
  publicUrl: string;
  dataDir: string;
  log: FastifyBaseLogger;
}

export function createMailTransport(options: MailTransportOptions): MailTransport {
  return options.smtpUrl ? new SmtpTransport(options.smtpUrl, options) : new DevelopmentMailSink(options);
}

/**
 * The same Message-ID on every attempt at one outbox row, so that a receiver
 * can drop the duplicate if a delivery is retried after it in fact arrived.
 */
function messageId(mail: OutgoingMail, publicUrl: string): string {
  return `<outbox-${mail.id}-${mail.createdAt.getTime()}@${new URL(publicUrl).hostname}>`;
}

function message(mail: OutgoingMail, from: string, publicUrl: string): nodemailer.SendMailOptions {
  return {
    from,
    to: mail.to,
    subject: mail.subject,
    text: mail.text,
    html: mail.html,
    messageId: messageId(mail, publicUrl),
    headers: { 'Auto-Submitted': 'auto-generated' },
  };
}

/** `SMTP_URL` through nodemailer, one connection per message: nothing stale to recover after an outage. */
export class SmtpTransport implements MailTransport {
  readonly kind = 'smtp';
  readonly #transporter: nodemailer.Transporter;
  readonly #from: string;
  readonly #publicUrl: string;

  constructor(url: string, options: Pick<MailTransportOptions, 'mailFrom' | 'publicUrl'>) {
    this.#transporter = nodemailer.createTransport({
      url,
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 30_000,
    });
    this.#from = options.mailFrom;
    this.#publicUrl = options.publicUrl;
  }

  async deliver(mail: OutgoingMail): Promise<void> {
    await this.#transporter.sendMail(message(mail, this.#from, this.#publicUrl));
  }

  close(): void {
    this.#transporter.close();
  }
}

/**
 * Without SMTP_URL (never in production): each mail is written to
 * `DATA_DIR/mail/<id>.eml` (and its text to `<id>.txt`) and logged; in `development` the log line carries
 * the link, so that the quick start can be followed by hand. That is the one
 * place a token reaches a log line.
 */
class DevelopmentMailSink implements MailTransport {
  readonly kind = 'sink';
  readonly #composer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  readonly #options: MailTransportOptions;

  constructor(options: MailTransportOptions) {
    this.#options = options;
  }

  async deliver(mail: OutgoingMail): Promise<void> {
    const { mailFrom, publicUrl, log, dataDir, environment } = this.#options;
    const info = await this.#composer.sendMail(message(mail, mailFrom, publicUrl));
    const directory = join(dataDir, 'mail');
    // Live links inside: readable by the owner only, whatever the umask (and whatever an earlier version left).
    await mkdir(directory, { recursive: true, mode: 0o700 });
    await chmod(directory, 0o700);
    const file = join(directory, `${mail.id}.eml`);
    await writeFile(file, info.message as Buffer, { mode: 0o600 });
    // The same mail as plain text, so that a link can be found with grep (the .eml is quoted-printable).
    const text = `To: ${mail.to}\nSubject: ${mail.subject}\n\n${mail.text}\n`;
    await writeFile(join(directory, `${mail.id}.txt`), text, { mode: 0o600 });
    const link = environment === 'development' ? firstLink(mail.text, publicUrl) : undefined;
    log.info(
      { mail: { id: mail.id, to: mail.to, subject: mail.subject, ...(link !== undefined && { link }) }, file },
      'development mail sink: mail written (set SMTP_URL to send real mail)',
    );
  }

  close(): void {
    this.#composer.close();
  }
}

function firstLink(text: string, publicUrl: string): string | null {
  for (const match of text.matchAll(/https?:\/\/\S+/g)) {
    if (match[0].startsWith(publicUrl)) return match[0];
  }
  return null;
}

export interface OutboxSenderOptions {
  db: Db;
  transport: MailTransport;
  log: FastifyBaseLogger;
  /** How often the outbox is polled; a kick after a commit delivers sooner. */
  pollMs: number;
  /** First retry delay; doubled on each further failure, at most one hour. */
  retryBaseMs: number;
  /** A mail that failed this many times is marked failed and no longer tried. */
  maxAttempts: number;
  batchSize?: number;
  /** How long a claimed row stays invisible to other senders; longer than any delivery takes. */
  leaseMs?: number;
  /** Strings that must never reach `last_error` or a log line (the SMTP password). */
  secrets?: string[];
}

const MAX_RETRY_DELAY_MS = 3_600_000;
const DELIVERY_CONCURRENCY = 4;
/** On shutdown, mail already due gets this long to go out before the process stops waiting. */
const FLUSH_TIMEOUT_MS = 5_000;

/**
 * Delivers `email_outbox` rows. Several instances can run against one
 * database: a row is claimed by one atomic UPDATE over `FOR UPDATE SKIP
 * LOCKED`, which pushes its `next_attempt_at` past the lease, and delivered
 * outside any transaction (PGlite has one connection; an SMTP round trip must
 * never hold it). `attempts`, bumped by the claim, fences the outcome: a
 * sender whose lease ran out cannot overwrite the next sender's result.
 */
export class OutboxSender {
  readonly #options: Required<OutboxSenderOptions>;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(options: OutboxSenderOptions) {
    this.#options = { batchSize: 20, leaseMs: 120_000, secrets: [], ...options };
  }

  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => this.kick(), this.#options.pollMs);
    this.#timer.unref();
    this.kick();
  }

  /** Deliver what is due now; call after committing a transaction that queued mail. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#drain()
      .catch((error: unknown) => {
        // The database may be briefly unreachable; the next poll tries again.
        this.#options.log.warn({ err: { message: this.#describe(error) } }, 'mail outbox poll failed');
      })
      .finally(() => {
        this.#running = undefined;
      });
  }

  /** Delivers until nothing is due; resolves when the outbox is idle. */
  async drain(): Promise<void> {
    while (this.#running) await this.#running;
    await this.#drain();
  }

  /** Stops polling, lets deliveries in flight finish and flushes what is due, within a bound. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, FLUSH_TIMEOUT_MS);
    });
    const flush = this.drain().catch(() => {});
    this.#stopped = true;
    await Promise.race([flush, deadline]);
    clearTimeout(timer);
    this.#options.transport.close();
  }

  async #drain(): Promise<void> {
    do {
      this.#again = false;
      while ((await this.deliverDue()) === this.#options.batchSize) {
        // A full batch: there may be more.
      }
    } while (this.#again && !this.#stopped);
  }

  /** Claims one batch of due mail and delivers it; returns how many rows were claimed. */
  async deliverDue(): Promise<number> {
    const claimed = await this.#claim();
    let next = 0;
    const worker = async () => {
      while (next < claimed.length) {
        const row = claimed[next++] as (typeof claimed)[number];
        await this.#deliver(row);
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELIVERY_CONCURRENCY, claimed.length) }, worker));
    return claimed.length;
  }

  #claim() {
    const { db, batchSize, leaseMs } = this.#options;
    return db
      .updateTable('email_outbox')
      .set({
        attempts: sql`attempts + 1`,
        next_attempt_at: sql`now() + ${leaseMs} * interval '1 millisecond'`,
      })
      .where('id', 'in', (eb) =>
        eb
          .selectFrom('email_outbox')
          .select('id')
          .where('status', '=', 'pending')
          .where('next_attempt_at', '<=', sql<Date>`now()`)
          .orderBy('next_attempt_at')
          .orderBy('id')
          .limit(batchSize)
          .forUpdate()
          .skipLocked(),
      )
      .returning(['id', 'to_address', 'subject', 'text_body', 'html_body', 'attempts', 'created_at'])
      .execute();
  }

  async #deliver(row: {
    id: number;
    to_address: string;
    subject: string;
    text_body: string;
    html_body: string;
    attempts: number;
    created_at: Date;
  }): Promise<void> {
    const { db, log, transport, maxAttempts } = this.#options;
    const mail: OutgoingMail = {
      id: row.id,
      to: row.to_address,
      subject: row.subject,
      text: row.text_body,
      html: row.html_body,
      createdAt: row.created_at,
    };
    const claim = (qb: ReturnType<typeof db.updateTable<'email_outbox'>>) =>
      qb.where('id', '=', row.id).where('attempts', '=', row.attempts).where('status', '=', 'pending');
    try {
      await transport.deliver(mail);
    } catch (error) {
      const lastError = this.#describe(error);
      const permanent = isPermanent(error);
      if (permanent || row.attempts >= maxAttempts) {
        await claim(db.updateTable('email_outbox')).set({ status: 'failed', last_error: lastError }).execute();
        log.error({ outbox_id: row.id, attempts: row.attempts, error: lastError }, 'mail delivery failed for good');
      } else {
        const delay = Math.min(this.#options.retryBaseMs * 2 ** (row.attempts - 1), MAX_RETRY_DELAY_MS);
        await claim(db.updateTable('email_outbox'))
          .set({ last_error: lastError, next_attempt_at: sql`now() + ${delay} * interval '1 millisecond'` })
          .execute();
        log.warn(
          { outbox_id: row.id, attempts: row.attempts, retry_in_ms: delay, error: lastError },
          'mail delivery failed; will retry',
        );
      }
      return;
    }
    const result = await claim(db.updateTable('email_outbox'))
      .set({ status: 'sent', sent_at: sql`now()`, last_error: null })
      .executeTakeFirst();
    if (result.numUpdatedRows === 0n) {
      log.warn({ outbox_id: row.id }, 'mail sent after its claim expired; it may be delivered twice');
    } else {
      log.info({ outbox_id: row.id, transport: transport.kind }, 'mail sent');
    }
  }

  /** What went wrong, short and without credentials or tokens. */
  #describe(error: unknown): string {
    const e = error as { code?: unknown; responseCode?: unknown; message?: unknown };
    const parts = [
      typeof e.code === 'string' ? e.code : null,
      typeof e.message === 'string' ? e.message : String(error),
    ];
    let text = parts.filter(Boolean).join(': ');
    for (const secret of this.#options.secrets) if (secret) text = text.replaceAll(secret, '[REDACTED]');
    text = text
      .replace(/\/\/[^/@\s]*@/g, '//[REDACTED]@')
      .replace(/([?&]token=)[^&\s]*/gi, '$1[REDACTED]')
      .replace(/(AUTH\s+\S+\s+)\S+/gi, '$1[REDACTED]');
    return text.slice(0, 500);
  }
}

/**
 * A 5xx answer to the envelope or data (mailbox unknown, message refused) will
 * not change on retry. Authentication failures are configuration to be fixed,
 * so those mails wait for the fix instead.
 */
function isPermanent(error: unknown): boolean {
  const { code, responseCode } = error as { code?: unknown; responseCode?: unknown };
  return code !== 'EAUTH' && typeof responseCode === 'number' && responseCode >= 500 && responseCode < 600;
}

/** The SMTP password, so that it can be scrubbed from errors. */
export function smtpSecrets(smtpUrl: string | undefined): string[] {
  if (!smtpUrl) return [];
  try {
    const url = new URL(smtpUrl);
    return [url.password, decodeURIComponent(url.password)].filter((s) => s.length > 0);
  } catch {
    return [];
  }
}
