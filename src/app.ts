import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Config } from './config.ts';
import { AppError } from './domain/errors.ts';
import { sendProblem } from './http/problem.ts';
import { type GatehouseOptions, gatehouse } from './plugin.ts';

/** Secrets are never written: headers that carry them, and token query parameters. */
export const LOG_REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.new_password',
  '*.current_password',
  '*.confirm_password',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.secret',
];

export function redactUrl(url: string): string {
  return url.replace(/([?&](?:token|code|access_token|refresh_token|password)=)[^&#]*/gi, '$1[REDACTED]');
}

export interface BuildAppOptions extends Omit<GatehouseOptions, 'config'> {
  /** Extra logger settings, e.g. a destination stream in tests. */
  logger?: FastifyServerOptions['logger'];
  loggerInstance?: FastifyServerOptions['loggerInstance'];
}

/** A Fastify instance with nothing in it but Gatehouse. */
export async function buildApp(config: Config, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const { logger, loggerInstance, ...pluginOptions } = options;
  const app = Fastify({
    ...(loggerInstance
      ? { loggerInstance }
      : {
          logger: logger ?? {
            level: config.logLevel,
            redact: { paths: LOG_REDACT_PATHS, censor: '[REDACTED]' },
            serializers: {
              req: (req: { method: string; url: string; ip?: string }) => ({
                method: req.method,
                url: redactUrl(req.url),
                remoteAddress: req.ip,
              }),
            },
          },
        }),
    // Gatehouse decides the client IP itself from TRUST_PROXY (src/http/client-ip.ts).
    trustProxy: false,
    // While closing, a request that still arrives on an open keep-alive connection is
    // served (with `Connection: close`) rather than refused with a bare 503.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    requestTimeout: 30_000,
    // Router-level failures (bad percent-encoding, an over-long path parameter) answer problem+json too.
    frameworkErrors: (error, request, reply) => sendProblem(request, reply, error),
    // Start-up runs migrations and opens the embedded database; on a busy or small
    // machine that exceeds Fastify's default 10 s plugin timeout.
    pluginTimeout: 120_000,
  });
  app.setNotFoundHandler((request, reply) => sendProblem(request, reply, new AppError('NOT_FOUND')));
  app.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));
  await app.register(gatehouse, { ...pluginOptions, config });
  return app;
}
