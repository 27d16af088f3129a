import { createHash } from 'node:crypto';
import { dictionary } from '@zxcvbn-ts/language-common';
import type { FastifyBaseLogger } from 'fastify';
import { LRUCache } from 'lru-cache';
import { AppError } from '../domain/errors.ts';
import type { AbuseMetrics } from './abuse-metrics.ts';
import type { BreachIndex } from './breach-index.ts';

/** Answers whether a password is known from breaches or common-password lists. */
export interface BreachChecker {
  isBreached(password: string): Promise<boolean>;
  /** Releases files or sockets the checker holds. */
  close?(): void;
}

/** Leetspeak folded back, so `P@ssw0rd` is found as `password`. */
const LEET: Record<string, string> = {
  '@': 'a',
  '4': 'a',
  '3': 'e',
  '1': 'i',
  '!': 'i',
  '0': 'o',
  $: 's',
  '5': 's',
  '7': 't',
};

/**
 * The default offline checker: the ~49 000 most common passwords from real
 * breach corpora, as shipped by `@zxcvbn-ts/language-common`. Case and common
 * substitutions are folded before lookup.
 */
export class CommonPasswordChecker implements BreachChecker {
  readonly #passwords: ReadonlySet<string>;

  constructor(passwords: Iterable<string> = dictionary['passwords-common']) {
    this.#passwords = new Set(passwords);
  }

  async isBreached(password: string): Promise<boolean> {
    const lower = password.toLowerCase();
    if (this.#passwords.has(lower)) return true;
    const folded = lower.replace(/[@43!10$57]/g, (c) => LEET[c] ?? c);
    return this.#passwords.has(folded);
  }
}

/** `BREACH_CHECK=off`: for deployments that check elsewhere. */
export class NoBreachChecker implements BreachChecker {
  async isBreached(): Promise<boolean> {
    return false;
  }
}

/** Checks each in turn; breached as soon as one says so. The cheap in-memory list goes first. */
export class AnyBreachChecker implements BreachChecker {
  readonly #checkers: BreachChecker[];

  constructor(checkers: BreachChecker[]) {
    this.#checkers = checkers;
  }

  async isBreached(password: string): Promise<boolean> {
    for (const checker of this.#checkers) if (await checker.isBreached(password)) return true;
    return false;
  }

  close(): void {
    for (const checker of this.#checkers) checker.close?.();
  }
}

/** `BREACH_CHECK=offline` with `BREACH_CORPUS_PATH`: the on-disk index of `gatehouse breach import`. */
export class OfflineIndexChecker implements BreachChecker {
  readonly index: BreachIndex;

  constructor(index: BreachIndex) {
    this.index = index;
  }

  isBreached(password: string): Promise<boolean> {
    return this.index.contains(password);
  }

  close(): void {
    this.index.close();
  }
}

export interface PwnedPasswordsOptions {
  /** Base URL; the checker requests `{apiUrl}/range/{first 5 hex of SHA-1}`. */
  apiUrl: string;
  timeoutMs?: number;
  /** Refuse (503) instead of accepting a password the API could not check (and no `fallback` could). */
  failClosed: boolean;
  /** Asked instead of the API while the API is unreachable (the offline index of BREACH_CORPUS_PATH). */
  fallback?: BreachChecker | undefined;
  /** Consecutive failures or timeouts that open the circuit: the API is then skipped for `circuitCooldownMs`. */
  circuitFailures?: number;
  circuitCooldownMs?: number;
  /** Milliseconds since the epoch; the circuit's clock. */
  now?: () => number;
  log: FastifyBaseLogger;
  metrics: AbuseMetrics;
  userAgent?: string;
  /** Cached range bodies, in bytes of suffixes kept (35 per breached suffix). */
  cacheBytes?: number;
  cacheTtlMs?: number;
}

const SUFFIX_LENGTH = 35;
const RANGE_LINE = /^([0-9A-Fa-f]{35}):(\d+)$/;
const WARN_INTERVAL_MS = 60_000;

/**
 * `BREACH_CHECK=api`: the Pwned Passwords k-anonymity range API. Only the
 * first 5 hex digits of the password's SHA-1 leave the process; the answer
 * lists every known suffix with that prefix. `Add-Padding: true` makes every
 * answer about the same size (the padding lines have count 0 and are
 * ignored), so the response length does not hint at the prefix either.
 * Prefix answers are kept in an LRU cache; concurrent lookups of one prefix
 * share one request.
 *
 * A circuit breaker keeps an unreachable API from costing each request a
 * timeout: after `circuitFailures` consecutive failures the API is not asked
 * for `circuitCooldownMs`; then one request tries it, and its outcome closes
 * the circuit or opens it again. While the API cannot answer, `fallback` (the
 * offline index) answers; without one, `failClosed` decides.
 */
export class PwnedPasswordsChecker implements BreachChecker {
  readonly #options: Required<Omit<PwnedPasswordsOptions, 'fallback'>> & { fallback: BreachChecker | undefined };
  /** Prefix → its breached suffixes, sorted, concatenated (35 characters each). */
  readonly #ranges: LRUCache<string, string>;
  #lastWarning = 0;
  #failures = 0;
  /** While set, the circuit is open until this time; after it, one trial request is let through. */
  #openUntil: number | undefined;
  #trialInFlight = false;

  constructor(options: PwnedPasswordsOptions) {
    this.#options = {
      timeoutMs: 2_000,
      userAgent: 'Gatehouse-password-check/0.1',
      cacheBytes: 32 * 1024 * 1024,
      cacheTtlMs: 6 * 60 * 60 * 1000,
      circuitFailures: 3,
      circuitCooldownMs: 30_000,
      now: Date.now,
      ...options,
      fallback: options.fallback,
      apiUrl: options.apiUrl.replace(/\/+$/, ''),
    };
    this.#ranges = new LRUCache<string, string>({
      maxSize: this.#options.cacheBytes,
      // An empty range still takes a slot.
      sizeCalculation: (suffixes) => Math.max(1, suffixes.length),
      ttl: this.#options.cacheTtlMs,
      fetchMethod: (prefix, _stale, { signal }) => this.#fetchRange(prefix, signal),
    });
  }

  /** `closed`: the API is asked; `open`: it is skipped; `half-open`: the next request tries it. */
  get circuit(): 'closed' | 'open' | 'half-open' {
    if (this.#openUntil === undefined) return 'closed';
    return this.#options.now() < this.#openUntil ? 'open' : 'half-open';
  }

  async isBreached(password: string): Promise<boolean> {
    const hash = createHash('sha1').update(password, 'utf8').digest('hex').toUpperCase();
    const prefix = hash.slice(0, 5);
    const cached = this.#ranges.get(prefix);
    if (cached !== undefined) return containsSuffix(cached, hash.slice(5));
    const circuit = this.circuit;
    if (circuit === 'open' || (circuit === 'half-open' && this.#trialInFlight)) {
      return this.#unavailable(new Error('circuit open'), password);
    }
    const trial = circuit === 'half-open';
    if (trial) this.#trialInFlight = true;
    let suffixes: string | undefined;
    try {
      suffixes = await this.#ranges.fetch(prefix);
      if (suffixes === undefined) throw new Error('no range');
    } catch (error) {
      this.#failed(error);
      return this.#unavailable(error, password);
    } finally {
      if (trial) this.#trialInFlight = false;
    }
    this.#succeeded();
    return containsSuffix(suffixes, hash.slice(5));
  }

  close(): void {
    this.#options.fallback?.close?.();
  }

  #failed(error: unknown): void {
    this.#failures += 1;
    const { circuitFailures, circuitCooldownMs, now, log, fallback } = this.#options;
    if (this.#openUntil !== undefined || this.#failures >= circuitFailures) {
      const reopening = this.#openUntil !== undefined;
      this.#openUntil = now() + circuitCooldownMs;
      log.warn(
        {
          reason: error instanceof Error ? error.message : String(error),
          failures: this.#failures,
          cooldown_ms: circuitCooldownMs,
          fallback: fallback ? 'offline index' : 'none',
        },
        `breach API ${reopening ? 'still unavailable' : 'unavailable'}: not asked for ${circuitCooldownMs / 1000} s` +
          (fallback ? ', the offline index answers meanwhile' : ''),
      );
    }
  }

  #succeeded(): void {
    if (this.#openUntil !== undefined) this.#options.log.info('breach API answers again: asking it again');
    this.#failures = 0;
    this.#openUntil = undefined;
  }

  async #fetchRange(prefix: string, cacheSignal: AbortSignal): Promise<string> {
    try {
      const response = await fetch(`${this.#options.apiUrl}/range/${prefix}`, {
        headers: { 'add-padding': 'true', 'user-agent': this.#options.userAgent, accept: 'text/plain' },
        signal: AbortSignal.any([cacheSignal, AbortSignal.timeout(this.#options.timeoutMs)]),
      });
      if (!response.ok) throw new Error(`range API answered HTTP ${response.status}`);
      const suffixes = parseRange(await response.text());
      this.#options.metrics.breachApiRequests.inc({ outcome: 'ok' });
      return suffixes;
    } catch (error) {
      this.#options.metrics.breachApiRequests.inc({ outcome: 'error' });
      throw error;
    }
  }

  async #unavailable(error: unknown, password: string): Promise<boolean> {
    const { failClosed, log, metrics, fallback } = this.#options;
    metrics.breachCheckFailures.inc();
    if (fallback) return fallback.isBreached(password);
    const now = Date.now();
    if (now - this.#lastWarning >= WARN_INTERVAL_MS) {
      this.#lastWarning = now;
      const reason = error instanceof Error ? error.message : String(error);
      log.warn(
        { reason, policy: failClosed ? 'fail_closed' : 'fail_open' },
        failClosed
          ? 'breach API unavailable: refusing new passwords until it answers'
          : 'breach API unavailable: accepting new passwords without the breach check',
      );
    }
    if (failClosed) {
      throw new AppError('SERVICE_UNAVAILABLE', {
        detail: 'The password breach check is temporarily unavailable',
        retryAfter: 30,
      });
    }
    return false;
  }
}

/** `SUFFIX:COUNT` lines (CRLF) → the suffixes with a count above 0, sorted and concatenated. */
export function parseRange(body: string): string {
  const suffixes: string[] = [];
  for (const raw of body.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const m = RANGE_LINE.exec(line);
    if (!m) throw new Error('range API answered a line that is not SUFFIX:COUNT');
    if (Number(m[2]) > 0) suffixes.push((m[1] as string).toUpperCase());
  }
  return suffixes.sort().join('');
}

function containsSuffix(suffixes: string, suffix: string): boolean {
  let low = 0;
  let high = suffixes.length / SUFFIX_LENGTH - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    const candidate = suffixes.slice(mid * SUFFIX_LENGTH, (mid + 1) * SUFFIX_LENGTH);
    if (candidate === suffix) return true;
    if (candidate < suffix) low = mid + 1;
    else high = mid - 1;
  }
  return false;
}
