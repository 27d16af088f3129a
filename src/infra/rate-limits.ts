import { isIPv6 } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import { type IRateLimiterOptions, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config, RateLimit } from '../config.ts';
import type { AbuseMetrics } from './abuse-metrics.ts';

/** The routes that carry a per-client-IP limit, each tuned by its own variable. */
const RATE_LIMIT_NAMES = [
  'register',
  'login',
  'refresh',
  'forgot_password',
  'resend_verification',
  'invitations',
  'reauthenticate',
  'email_sign_in',
  'email_sign_in_address',
] as const;
export type RateLimitName = (typeof RATE_LIMIT_NAMES)[number];

function rateLimitSettings(config: Config): Record<RateLimitName, RateLimit> {
  return {
    register: config.rateLimitRegister,
    login: config.rateLimitLogin,
    refresh: config.rateLimitRefresh,
    forgot_password: config.rateLimitForgotPassword,
    resend_verification: config.rateLimitResendVerification,
    invitations: config.rateLimitInvitations,
    reauthenticate: config.rateLimitReauthenticate,
    email_sign_in: config.rateLimitEmailSignIn,
    email_sign_in_address: config.emailSignInLimitPerAddress,
  };
}

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the window resets, or a block past the limit ends (at least 1). */
  resetSeconds: number;
  windowSeconds: number;
}

/**
 * Logs one warning per outage (not one per request) and counts every use, so
 * that a dashboard shows how much traffic ran on the fallback.
 */
export class FallbackReporter {
  readonly #use: 'rate_limit' | 'lockout';
  readonly #log: FastifyBaseLogger;
  readonly #metrics: AbuseMetrics;
  readonly #message: string;
  #warned = false;

  constructor(
    use: 'rate_limit' | 'lockout',
    message: string,
    deps: { redis: Redis | undefined; log: FastifyBaseLogger; metrics: AbuseMetrics },
  ) {
    this.#use = use;
    this.#message = message;
    this.#log = deps.log;
    this.#metrics = deps.metrics;
    deps.redis?.on('ready', () => {
      this.#warned = false;
    });
  }

  report(error?: unknown): void {
    this.#metrics.redisFallbacks.inc({ use: this.#use });
    if (this.#warned) return;
    this.#warned = true;
    const reason = error instanceof Error ? error.message : 'redis not ready';
    this.#log.warn({ use: this.#use, reason }, this.#message);
  }
}

/** The in-memory insurance limiter: it only runs when the Redis store failed, so using it is reported. */
class InProcessFallbackLimiter extends RateLimiterMemory {
  readonly #reporter: FallbackReporter;

  constructor(options: IRateLimiterOptions, reporter: FallbackReporter) {
    super(options);
    this.#reporter = reporter;
  }

  override consume(key: string | number, points?: number, options?: Record<string, unknown>): Promise<RateLimiterRes> {
    this.#reporter.report();
    return super.consume(key, points, options);
  }
}

/**
 * Per-client limits with rate-limiter-flexible: in process without Redis; in
 * Redis with it (keys `<REDIS_KEY_PREFIX>rl:<name>:<client>`, shared by every
 * instance), falling back to in-process counting while Redis is unreachable.
 */
export class RateLimits {
  readonly #limiters: Record<RateLimitName, RateLimiterMemory | RateLimiterRedis>;
  readonly #settings: Record<RateLimitName, RateLimit>;
  readonly #metrics: AbuseMetrics;

  constructor(config: Config, deps: { redis: Redis | undefined; log: FastifyBaseLogger; metrics: AbuseMetrics }) {
    const { redis } = deps;
    this.#settings = rateLimitSettings(config);
    this.#metrics = deps.metrics;
    const reporter = new FallbackReporter(
      'rate_limit',
      'redis unreachable: rate limits are counted in process until it returns',
      deps,
    );
    const entries = RATE_LIMIT_NAMES.map((name) => {
      const { points, durationSeconds, blockSeconds } = this.#settings[name];
      // blockDuration: once past the limit, every request of the client is refused that long.
      const options = { keyPrefix: `rl:${name}`, points, duration: durationSeconds, blockDuration: blockSeconds };
      const limiter = redis
        ? new RateLimiterRedis({
            ...options,
            storeClient: redis,
            // Fail over at once instead of waiting for a reconnect (PITFALLS.md).
            rejectIfRedisNotReady: true,
            insuranceLimiter: new InProcessFallbackLimiter(options, reporter),
          })
        : new RateLimiterMemory(options);
      return [name, limiter] as const;
    });
    this.#limiters = Object.fromEntries(entries) as Record<RateLimitName, RateLimiterMemory | RateLimiterRedis>;
  }

  /** Counts one request of `client` against the limit `name`. */
  async consume(name: RateLimitName, client: string): Promise<RateLimitDecision> {
    const { points, durationSeconds } = this.#settings[name];
    let res: RateLimiterRes;
    let allowed = true;
    try {
      res = await this.#limiters[name].consume(client);
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      res = error;
      allowed = false;
      this.#metrics.rateLimited.inc({ limiter: name });
    }
    const resetSeconds = Math.max(1, Math.ceil(res.msBeforeNext / 1000));
    return { allowed, limit: points, remaining: res.remainingPoints, resetSeconds, windowSeconds: durationSeconds };
  }
}

/**
 * The bucket a client address is counted in. IPv6 hosts usually own a whole
 * /64, so counting single addresses there would let one host rotate past the limit.
 */
export function rateLimitKey(ip: string | null): string {
  if (!ip) return 'unknown';
  if (!isIPv6(ip)) return ip;
  return `${expandIPv6(ip).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(ip: string): string[] {
  const address = ip.split('%')[0] as string;
  const [head = '', tail] = address.split('::') as [string, string | undefined];
  const parse = (part: string) => (part === '' ? [] : part.split(':'));
  let left = parse(head);
  let right = tail === undefined ? [] : parse(tail);
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two groups.
  const fixV4 = (groups: string[]) => {
    const last = groups.at(-1);
    if (!last?.includes('.')) return groups;
    const [a, b, c, d] = last.split('.').map(Number) as [number, number, number, number];
    return [...groups.slice(0, -1), ((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
  };
  left = tail === undefined ? fixV4(left) : left;
  right = fixV4(right);
  const missing = 8 - left.length - right.length;
  const groups = [...left, ...Array<string>(Math.max(0, missing)).fill('0'), ...right];
  return groups.map((g) => Number.parseInt(g, 16).toString(16));
}
