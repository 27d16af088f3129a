import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../domain/errors.ts';
import { type RateLimitName, rateLimitKey } from '../infra/rate-limits.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Count this route against a named per-client-IP limit: `config: { rateLimit: 'login' }`. */
    rateLimit?: RateLimitName;
  }
}

/**
 * A hook that counts the request against `name` before its body is even
 * parsed, sets the RateLimit-* headers (IETF draft) on every answer, and
 * refuses past the limit with 429 RATE_LIMIT_EXCEEDED and Retry-After.
 */
function rateLimited(name: RateLimitName): onRequestHookHandler {
  return async function rateLimitHook(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    await enforceRateLimit(request, reply, name);
  };
}

/** Counts the request against `name` now: for a route where only some requests are limited (a form's action). */
export async function enforceRateLimit(
  request: FastifyRequest,
  reply: FastifyReply,
  name: RateLimitName,
): Promise<void> {
  const decision = await request.server.gatehouse.rateLimits.consume(name, rateLimitKey(request.caller.ip));
  const headers = {
    'ratelimit-limit': String(decision.limit),
    'ratelimit-remaining': String(decision.remaining),
    'ratelimit-reset': String(decision.resetSeconds),
    'ratelimit-policy': `${decision.limit};w=${decision.windowSeconds}`,
  };
  if (!decision.allowed) throw new AppError('RATE_LIMIT_EXCEEDED', { retryAfter: decision.resetSeconds, headers });
  reply.headers(headers);
}

/**
 * Routes opt in with `config: { rateLimit: '<name>' }`; registered once in
 * the Gatehouse scope, it applies to the JSON API and the HTML pages alike,
 * so both count against the same per-IP budget.
 */
export const rateLimitRoutes = fp(
  async (app: FastifyInstance) => {
    app.addHook('onRoute', (route) => {
      const name = route.config?.rateLimit;
      if (!name) return;
      const existing = route.onRequest ? [route.onRequest].flat() : [];
      route.onRequest = [rateLimited(name), ...existing];
    });
  },
  { name: 'gatehouse-rate-limit' },
);
