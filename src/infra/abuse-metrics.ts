import { Counter } from 'prom-client';
import type { Metrics } from './metrics.ts';

/**
 * The instruments of abuse protection: the shared ones from `Metrics`
 * (429s, locks, breach-check failures) and a few of its own, registered on
 * the same per-app registry so that `/metrics` shows them all.
 */
export interface AbuseMetrics {
  rateLimited: Metrics['rateLimited'];
  lockouts: Metrics['lockouts'];
  breachCheckFailures: Metrics['breachCheckFailures'];
  /** use: rate_limit (in-process fallback), lockout (PostgreSQL fallback). */
  redisFallbacks: Counter<'use'>;
  /** outcome: success, rejected, missing, unavailable. */
  captchaVerifications: Counter<'provider' | 'outcome'>;
  /** outcome: ok, error. Cached prefixes send no request. */
  breachApiRequests: Counter<'outcome'>;
}

export function createAbuseMetrics(metrics: Metrics): AbuseMetrics {
  const registers = [metrics.registry];
  return {
    rateLimited: metrics.rateLimited,
    lockouts: metrics.lockouts,
    breachCheckFailures: metrics.breachCheckFailures,
    redisFallbacks: new Counter({
      name: 'gatehouse_redis_fallback_total',
      help: 'Operations served by a fallback store because Redis was unreachable, by use (rate_limit, lockout)',
      labelNames: ['use'],
      registers,
    }),
    captchaVerifications: new Counter({
      name: 'gatehouse_captcha_verifications_total',
      help: 'CAPTCHA checks by provider and outcome (success, rejected, missing, unavailable)',
      labelNames: ['provider', 'outcome'],
      registers,
    }),
    breachApiRequests: new Counter({
      name: 'gatehouse_breach_api_requests_total',
      help: 'Range requests sent to the Pwned Passwords API, by outcome (ok, error)',
      labelNames: ['outcome'],
      registers,
    }),
  };
}
