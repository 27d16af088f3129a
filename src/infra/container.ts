import type { FastifyBaseLogger } from 'fastify';
import { Redis } from 'ioredis';
import { type Config, ConfigError } from '../config.ts';
import type { DatabaseHandle, Db } from '../db/index.ts';
import { overriddenParts } from '../domain/mail-overrides.ts';
import { type AbuseMetrics, createAbuseMetrics } from './abuse-metrics.ts';
import { AuditSealer } from './audit-chain.ts';
import {
  AnyBreachChecker,
  type BreachChecker,
  CommonPasswordChecker,
  NoBreachChecker,
  OfflineIndexChecker,
  PwnedPasswordsChecker,
} from './breach.ts';
import { BreachIndex } from './breach-index.ts';
import { type CaptchaVerifier, createCaptchaVerifier } from './captcha.ts';
import type { ClaimsHook } from './claims.ts';
import { type Clock, systemClock } from './clock.ts';
import { HashPool } from './hash-pool.ts';
import { Housekeeper } from './housekeeping.ts';
import { Lockout } from './lockout.ts';
import { useMailOverrides } from './mail-templates.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { createMailTransport, OutboxSender, smtpSecrets } from './outbox.ts';
import { PasswordHasher } from './passwords.ts';
import { RateLimits } from './rate-limits.ts';
import { RevocationList } from './revocations.ts';
import { TokenService } from './tokens.ts';
import { WebhookSender } from './webhooks.ts';

/** Everything a flow needs, passed explicitly: swapped by configuration, never mocked. */
export interface Services {
  config: Config;
  database: DatabaseHandle;
  db: Db;
  /** Shared counters and revocations across instances; absent on the embedded default. */
  redis: Redis | undefined;
  hashPool: HashPool;
  hasher: PasswordHasher;
  breach: BreachChecker;
  /** Per-client-IP limits (memory, or Redis with an in-process fallback). */
  rateLimits: RateLimits;
  /** Password failures per account (or name) and source, reserved before the hash (Redis; PostgreSQL: fallback, locks). */
  lockout: Lockout;
  /** Present when CAPTCHA_PROVIDER is set. */
  captcha: CaptchaVerifier | undefined;
  clock: Clock;
  log: FastifyBaseLogger;
  /** Signs and verifies JWTs; publishes the JWKS. */
  tokens: TokenService;
  /** Is a session live? Redis fast path, PostgreSQL authority. */
  revocations: RevocationList;
  /** Delivers the mail outbox; `kick()` it after committing a transaction that queued mail. */
  outbox: OutboxSender;
  /** Prometheus instruments; flows increment them, /metrics serves them. */
  metrics: Metrics;
  /** Seals new audit rows onto the hash chain in the background. */
  auditSealer: AuditSealer;
  /** Deletes expired sessions, spent tokens and old records every HOUSEKEEPING_INTERVAL_MINUTES. */
  housekeeper: Housekeeper;
  /** Permissions the host application declared (`permissions` plugin option), beside the built-in ones. */
  hostPermissions: readonly string[];
  /** The host application's extra access token claims (plugin option `claims`). */
  claimsHook: ClaimsHook | undefined;
  /** Turns sealed audit rows into signed webhook deliveries and sends them (docs/webhooks.md). */
  webhooks: WebhookSender;
  /** `ok` or `down` for each dependency /readyz reports on. */
  readiness(): Promise<Record<string, 'ok' | 'down'>>;
  close(): Promise<void>;
}

export interface ServiceOverrides {
  clock?: Clock;
  breach?: BreachChecker;
  hostPermissions?: readonly string[];
  claims?: ClaimsHook;
}

export async function createServices(
  config: Config,
  database: DatabaseHandle,
  log: FastifyBaseLogger,
  overrides: ServiceOverrides = {},
): Promise<Services> {
  // First, so that a bad BREACH_CORPUS_PATH stops start-up before anything is opened.
  const breachIndex = overrides.breach ? undefined : openBreachIndex(config);
  // Keys first: a bad JWT_PRIVATE_KEY stops start-up before any connection is opened.
  const tokens = await TokenService.create(config, overrides.clock ?? systemClock);
  const redis = config.redisUrl ? await connectRedis(config.redisUrl, config.redisKeyPrefix, log) : undefined;
  const revocations = new RevocationList(
    database.db,
    redis,
    overrides.clock ?? systemClock,
    log,
    tokens.accessLifetimeSeconds,
  );
  await revocations.start();
  const metrics = createMetrics();
  // MAIL_TEMPLATE_DIR was read and checked with the configuration; every mail rendered from now on uses it.
  const dropMailOverrides = useMailOverrides(config.mailTemplates);
  if (config.mailTemplates.size > 0) {
    const parts = overriddenParts(config.mailTemplates);
    log.info({ mail_templates: parts }, `mail templates: ${parts.length} part(s) replaced from MAIL_TEMPLATE_DIR`);
  }
  const abuseMetrics = createAbuseMetrics(metrics);
  const ownBreach = overrides.breach ? undefined : createBreachChecker(config, log, abuseMetrics, breachIndex);
  const clock = overrides.clock ?? systemClock;
  const hashPool = new HashPool(config.hashConcurrency, config.hashQueueLimit, (seconds) =>
    metrics.hashWait.observe(seconds),
  );
  metrics.gaugeOnScrape(
    'gatehouse_hash_queue_depth',
    'Password hashes waiting for a hashing slot',
    () => hashPool.queued,
  );
  metrics.gaugeOnScrape('gatehouse_hash_running', 'Password hashes running now', () => hashPool.running);
  metrics.gaugeOnScrape('gatehouse_outbox_backlog', 'Mails waiting in the outbox', () => pendingMail(database.db));
  metrics.gaugeOnScrape('gatehouse_webhook_backlog', 'Webhook deliveries waiting to be sent', () =>
    pendingWebhooks(database.db),
  );
  const webhooks = new WebhookSender({ db: database.db, config, log });
  const auditSealer = new AuditSealer(database.db, log, {
    onSealed: (count) => {
      metrics.auditRowsSealed.inc(count);
      // Sealed rows may be events: dispatch them now rather than at the next poll.
      webhooks.kick();
    },
  });
  const outbox = new OutboxSender({
    db: database.db,
    transport: createMailTransport({ ...config, log }),
    log,
    pollMs: config.outboxPollMs,
    retryBaseMs: config.outboxRetryBaseMs,
    maxAttempts: config.outboxMaxAttempts,
    secrets: smtpSecrets(config.smtpUrl),
  });
  const housekeeper = new Housekeeper({
    db: database.db,
    log,
    now: () => clock.now(),
    retention: { loginAttemptsDays: config.loginAttemptsRetentionDays, mailDays: config.mailRetentionDays },
    intervalMs: config.housekeepingIntervalMinutes * 60_000,
    onPurged: (purged) => {
      for (const [table, count] of Object.entries(purged))
        if (count > 0) metrics.housekeepingDeleted.inc({ table }, count);
    },
  });
  return {
    config,
    database,
    db: database.db,
    redis,
    hashPool,
    hasher: new PasswordHasher({ algorithm: config.passwordHasher, bcryptRounds: config.bcryptRounds, pool: hashPool }),
    breach: overrides.breach ?? (ownBreach as BreachChecker),
    rateLimits: new RateLimits(config, { redis, log, metrics: abuseMetrics }),
    lockout: new Lockout({ db: database.db, redis, config, clock, log, metrics: abuseMetrics }),
    captcha: createCaptchaVerifier(config, log, abuseMetrics),
    clock: overrides.clock ?? systemClock,
    log,
    tokens,
    revocations,
    outbox,
    metrics,
    auditSealer,
    housekeeper,
    hostPermissions: overrides.hostPermissions ?? [],
    claimsHook: overrides.claims,
    webhooks,
    readiness: async () => {
      const checks: Record<string, 'ok' | 'down'> = { database: (await database.ping()) ? 'ok' : 'down' };
      if (redis) checks.redis = await pingRedis(redis);
      return checks;
    },
    close: async () => {
      dropMailOverrides();
      revocations.stop();
      await outbox.stop();
      await auditSealer.stop();
      await webhooks.stop();
      await housekeeper.stop();
      ownBreach?.close?.();
      redis?.disconnect();
    },
  };
}

async function pendingMail(db: Db): Promise<number> {
  const row = await db
    .selectFrom('email_outbox')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('status', '=', 'pending')
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

async function pendingWebhooks(db: Db): Promise<number> {
  const row = await db
    .selectFrom('webhook_deliveries')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('status', '=', 'pending')
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

/**
 * The bundled common-password list always runs first (in memory, catches
 * leetspeak); `api` adds the Pwned Passwords range API (with the
 * BREACH_CORPUS_PATH index answering while the API cannot), `offline` with
 * BREACH_CORPUS_PATH adds the on-disk index of `gatehouse breach import`.
 * The mode in effect is logged once.
 */
function createBreachChecker(
  config: Config,
  log: FastifyBaseLogger,
  metrics: AbuseMetrics,
  index: BreachIndex | undefined,
): BreachChecker {
  if (config.breachCheck === 'off') {
    log.warn({ breach_check: 'off' }, 'breach check: off (BREACH_CHECK=off): new passwords are not checked');
    return new NoBreachChecker();
  }
  const common = new CommonPasswordChecker();
  const corpus = index
    ? `the bundled common-password list and the index at ${config.breachCorpusPath}`
    : 'the bundled common-password list';
  if (config.breachCheck === 'api') {
    const whenDown = index
      ? 'the index answers'
      : config.breachFailClosed
        ? 'new passwords are refused (503)'
        : 'new passwords are accepted after the common-password list';
    log.info(
      {
        breach_check: 'api',
        api: config.hibpApiUrl,
        fallback: index ? 'offline index' : 'none',
        fail_closed: config.breachFailClosed,
        circuit: { failures: config.hibpCircuitFailures, cooldown_seconds: config.hibpCircuitCooldownSeconds },
      },
      `breach check: Pwned Passwords range API at ${config.hibpApiUrl}, after ${corpus}; while the API is unreachable ${whenDown}`,
    );
    return new AnyBreachChecker([
      common,
      new PwnedPasswordsChecker({
        apiUrl: config.hibpApiUrl,
        timeoutMs: config.hibpTimeoutMs,
        failClosed: config.breachFailClosed,
        fallback: index ? new OfflineIndexChecker(index) : undefined,
        circuitFailures: config.hibpCircuitFailures,
        circuitCooldownMs: config.hibpCircuitCooldownSeconds * 1000,
        log,
        metrics,
      }),
    ]);
  }
  log.info({ breach_check: 'offline', fallback: 'none' }, `breach check: offline, ${corpus}`);
  return index ? new AnyBreachChecker([common, new OfflineIndexChecker(index)]) : common;
}

function openBreachIndex(config: Config): BreachIndex | undefined {
  if (config.breachCheck === 'off' || !config.breachCorpusPath) return undefined;
  try {
    return BreachIndex.open(config.breachCorpusPath);
  } catch (error) {
    throw new ConfigError('BREACH_CORPUS_PATH', error instanceof Error ? error.message : String(error));
  }
}

/** Longest a request waits for one Redis command before falling back. */
const REDIS_COMMAND_TIMEOUT_MS = 500;

/**
 * No offline queue: while Redis is unreachable a command fails at once and the
 * caller falls back (memory for limits, PostgreSQL for lockouts and
 * revocations) instead of waiting seconds for a reconnect.
 */
async function connectRedis(url: string, keyPrefix: string, log: FastifyBaseLogger): Promise<Redis> {
  const redis = new Redis(url, {
    keyPrefix,
    enableOfflineQueue: false,
    // Concurrent requests' commands (revocation checks, limits) share one write and one round trip.
    enableAutoPipelining: true,
    // Scripts defined with defineCommand (the lockout's, rate-limiter-flexible's) go on their own: an auto
    // pipeline made before a command was defined lacks it, and its callbacks then throw outside any request.
    autoPipeliningIgnoredCommands: ['gatehouseLockoutReserve', 'gatehouseLockoutRefund', 'rlflxIncr'],
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    // A Redis that keeps the connection but stops answering (paused, swapped out, a slow script) fails each
    // command after this long, and every use of Redis falls back as when it is down.
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  });
  let warned = false;
  redis.on('error', (error: Error) => {
    if (!warned)
      log.warn(
        { err: { message: error.message }, redis: redisAddress(url) },
        `redis at ${redisAddress(url)} (REDIS_URL) unavailable; using fallbacks`,
      );
    warned = true;
  });
  redis.on('ready', () => {
    if (warned) log.info('redis available again');
    warned = false;
  });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2_000);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return redis;
}

/** `host:port` of REDIS_URL, for messages: never its password. */
function redisAddress(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || 'localhost'}:${parsed.port || '6379'}`;
  } catch {
    return 'REDIS_URL';
  }
}

async function pingRedis(redis: Redis): Promise<'ok' | 'down'> {
  try {
    return (await redis.ping()) === 'PONG' ? 'ok' : 'down';
  } catch {
    return 'down';
  }
}
