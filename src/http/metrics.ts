import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../infra/metrics.ts';

/** `GET /metrics` in the Prometheus text format. Keep it off the public internet (docs/operations.md). */
export async function metricsRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        description:
          'Requests by route and status, registrations, logins by outcome, lockouts, rate limits, hashing queue, outbox backlog, breach-check failures.',
        produces: ['text/plain'],
      },
    },
    async (_request, reply) => {
      const { registry } = app.gatehouse.metrics;
      const body = await registry.metrics();
      return reply.type(registry.contentType).header('cache-control', 'no-store').send(body);
    },
  );
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
