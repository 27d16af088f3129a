import type { FastifyBaseLogger } from 'fastify';
import type { CaptchaProvider, Config } from '../config.ts';
import { AppError } from '../domain/errors.ts';
import type { AbuseMetrics } from './abuse-metrics.ts';

/** Where each provider's widget puts its token in a form; `captcha_token` is the JSON-friendly name. */
const CAPTCHA_TOKEN_FIELDS = [
  'h-captcha-response',
  'g-recaptcha-response',
  'cf-turnstile-response',
  'captcha_token',
] as const;

/** Real tokens are ~2 KB at most (Turnstile documents 2048); anything longer is not forwarded. */
const TOKEN_MAX = 4096;

/** The first non-empty token field of a JSON or form body. */
export function captchaToken(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const record = body as Record<string, unknown>;
  for (const field of CAPTCHA_TOKEN_FIELDS) {
    const value = record[field];
    if (typeof value === 'string' && value.trim() !== '') return value.trim();
  }
  return undefined;
}

export interface CaptchaVerifier {
  readonly provider: CaptchaProvider;
  readonly siteKey: string | undefined;
  /** Resolves when the provider accepted the token; throws CAPTCHA_FAILED or SERVICE_UNAVAILABLE. */
  verify(token: string | undefined, remoteIp: string | null): Promise<void>;
}

interface SiteverifyOptions {
  provider: CaptchaProvider;
  secretKey: string;
  siteKey?: string | undefined;
  verifyUrl: string;
  timeoutMs: number;
  log: FastifyBaseLogger;
  metrics: AbuseMetrics;
}

/** The reply all three providers share; each adds fields of its own (hostname, credit, score, cdata). */
interface SiteverifyReply {
  success?: unknown;
  'error-codes'?: unknown;
}

/** Error codes that mean our configuration is wrong, not the visitor's token. */
const CONFIGURATION_ERRORS = new Set([
  'missing-input-secret',
  'invalid-input-secret',
  'sitekey-secret-mismatch',
  'invalid-or-already-seen-response-with-secret',
]);

/**
 * hCaptcha, reCAPTCHA and Turnstile all verify the same way: POST a form
 * (`secret`, `response`, `remoteip`; hCaptcha also `sitekey`) to the
 * siteverify URL and read `success` and `error-codes` from the JSON reply.
 *
 * A provider that does not answer within the timeout (or answers nonsense)
 * gives 503 SERVICE_UNAVAILABLE with Retry-After rather than CAPTCHA_FAILED:
 * the visitor did nothing wrong, and solving again would not help.
 */
class SiteverifyCaptcha implements CaptchaVerifier {
  readonly provider: CaptchaProvider;
  readonly siteKey: string | undefined;
  readonly #options: SiteverifyOptions;

  constructor(options: SiteverifyOptions) {
    this.provider = options.provider;
    this.siteKey = options.siteKey;
    this.#options = options;
  }

  async verify(token: string | undefined, remoteIp: string | null): Promise<void> {
    const { provider } = this;
    if (!token) {
      this.#count({ provider, outcome: 'missing' });
      throw new AppError('CAPTCHA_FAILED', { detail: 'A CAPTCHA token is required' });
    }
    if (token.length > TOKEN_MAX) {
      this.#count({ provider, outcome: 'rejected' });
      throw new AppError('CAPTCHA_FAILED', { detail: 'The CAPTCHA token was rejected' });
    }
    const form = new URLSearchParams({ secret: this.#options.secretKey, response: token });
    if (remoteIp) form.set('remoteip', remoteIp);
    if (provider === 'hcaptcha' && this.siteKey) form.set('sitekey', this.siteKey);

    const reply = await this.#post(form);
    if (reply.success === true) {
      this.#count({ provider, outcome: 'success' });
      return;
    }
    const codes = Array.isArray(reply['error-codes']) ? reply['error-codes'].filter((c) => typeof c === 'string') : [];
    if (codes.some((c) => CONFIGURATION_ERRORS.has(c))) {
      this.#count({ provider, outcome: 'unavailable' });
      this.#options.log.error({ provider, errorCodes: codes }, 'CAPTCHA provider refused our secret key');
      throw unavailable();
    }
    this.#count({ provider, outcome: 'rejected' });
    throw new AppError('CAPTCHA_FAILED', { detail: 'The CAPTCHA token was rejected' });
  }

  #count(labels: { provider: CaptchaProvider; outcome: 'success' | 'rejected' | 'missing' | 'unavailable' }): void {
    this.#options.metrics.captchaVerifications.inc(labels);
  }

  async #post(form: URLSearchParams): Promise<SiteverifyReply> {
    const { provider } = this;
    try {
      const response = await fetch(this.#options.verifyUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
      if (!response.ok) throw new Error(`siteverify answered HTTP ${response.status}`);
      const reply: unknown = await response.json();
      if (typeof reply !== 'object' || reply === null) throw new Error('siteverify answered no JSON object');
      return reply as SiteverifyReply;
    } catch (error) {
      this.#count({ provider, outcome: 'unavailable' });
      const reason = error instanceof Error ? error.message : String(error);
      this.#options.log.warn({ provider, reason }, 'CAPTCHA provider unavailable');
      throw unavailable();
    }
  }
}

function unavailable(): AppError {
  return new AppError('SERVICE_UNAVAILABLE', {
    detail: 'CAPTCHA verification is temporarily unavailable',
    retryAfter: 5,
  });
}

export function createCaptchaVerifier(
  config: Config,
  log: FastifyBaseLogger,
  metrics: AbuseMetrics,
): CaptchaVerifier | undefined {
  if (!config.captchaProvider || !config.captchaSecretKey || !config.captchaVerifyUrl) return undefined;
  return new SiteverifyCaptcha({
    provider: config.captchaProvider,
    secretKey: config.captchaSecretKey,
    siteKey: config.captchaSiteKey,
    verifyUrl: config.captchaVerifyUrl,
    timeoutMs: config.captchaTimeoutMs,
    log,
    metrics,
  });
}

/** Registration (API and page): a token is required whenever a provider is configured. */
export async function requireCaptcha(
  captcha: CaptchaVerifier | undefined,
  body: unknown,
  remoteIp: string | null,
): Promise<void> {
  if (captcha) await captcha.verify(captchaToken(body), remoteIp);
}

/** Login asks for a CAPTCHA once an identifier has this many consecutive failures. */
export function loginNeedsCaptcha(config: Config, failures: number): boolean {
  return (
    !!config.captchaProvider && config.captchaLoginAfterFailures > 0 && failures >= config.captchaLoginAfterFailures
  );
}
