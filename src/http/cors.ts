import type { FastifyCorsOptions } from '@fastify/cors';

/**
 * CORS for the JSON API, from CORS_ORIGINS (exact origins such as
 * `https://app.example.com`, or `*`). Credentials (the refresh cookie) are
 * allowed only for listed origins, never for `*`. Nothing is sent when the
 * list is empty: browsers then keep other origins out.
 */
export function corsOptions(origins: string[]): FastifyCorsOptions {
  const allowAll = origins.includes('*');
  const allowed = new Set(origins.map((o) => o.replace(/\/+$/, '')));
  return {
    origin: allowAll ? '*' : (origin, callback) => callback(null, origin !== undefined && allowed.has(origin)),
    credentials: !allowAll,
    methods: ['GET', 'POST', 'PATCH', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type'],
    exposedHeaders: ['Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'WWW-Authenticate'],
    maxAge: 600,
  };
}
