import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.ts';
import type { Metrics } from '../infra/metrics.ts';
import { sendProblem } from './problem.ts';
import { noSniff } from './security-headers.ts';

interface MetricsOptions {
  metrics: Metrics;
  /** METRICS_TOKEN: when set, a scrape must send `Authorization: Bearer <token>`. */
  token: string | undefined;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** The bearer token matches METRICS_TOKEN; digests of equal length are compared in constant time. */
function tokenPresented(request: FastifyRequest, token: string): boolean {
  const header = request.headers.authorization;
  const presented = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header)?.[1] : undefined;
  return presented !== undefined && timingSafeEqual(digest(presented), digest(token));
}

/**
 * `GET /metrics` in the Prometheus text format: on the application port only
 * with METRICS_TOKEN, or on a port of its own (METRICS_PORT, see `metricsServer`).
 */
export async function metricsRoutes(app: FastifyInstance, options: MetricsOptions): Promise<void> {
  const { metrics, token } = options;
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        description:
          'Requests by route and status, registrations, logins by outcome, lockouts, rate limits, hashing queue, outbox backlog, breach-check failures. ' +
          'Needs `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set.',
        produces: ['text/plain'],
      },
    },
    async (request, reply) => {
      if (token !== undefined && !tokenPresented(request, token)) {
        throw new AppError('UNAUTHORIZED', { detail: 'Send METRICS_TOKEN as the bearer token' });
      }
      const body = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).header('cache-control', 'no-store').send(body);
    },
  );
}

/** A server with `/metrics` and nothing else, for METRICS_PORT: the scrape stays off the application port. */
export async function metricsServer(options: MetricsOptions): Promise<FastifyInstance> {
  const server = Fastify({ logger: false, forceCloseConnections: true });
  server.addHook('onRequest', async (_request, reply) => noSniff(reply));
  server.setNotFoundHandler((request, reply) => sendProblem(request, reply, new AppError('NOT_FOUND')));
  server.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));
  await server.register(metricsRoutes, options);
  return server;
}

/**
 * Counts and times every answer of the scope it is added to, labelled by the
 * route template (never the raw URL, whose ids would explode cardinality).
 */
export function observeRequests(scope: FastifyInstance, metrics: Metrics): void {
  scope.addHook('onResponse', async (request, reply) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status: String(reply.statusCode),
    };
    metrics.httpRequests.inc(labels);
    metrics.httpRequestDuration.observe(labels, reply.elapsedTime / 1000);
  });
}
