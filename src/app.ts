import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import type { Config } from './config.ts';
import { AppError } from './domain/errors.ts';
import { type ClientIpResolver, clientIpResolver } from './http/client-ip.ts';
import { sendProblem } from './http/problem.ts';
import { type GatehouseOptions, gatehouse } from './plugin.ts';

/** Fields whose values are secrets, wherever they appear in a log object (names compared in lower case). */
const SECRET_FIELDS = new Set([
  'password',
  'new_password',
  'current_password',
  'confirm_password',
  'token',
  'access_token',
  'refresh_token',
  'secret',
  'authorization',
  'cookie',
  'set-cookie',
]);
const CENSOR = '[REDACTED]';
/** How far down plain objects secrets are looked for: `{ req: { headers: { authorization } } }` is 3. */
const REDACT_DEPTH = 3;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/**
 * Secrets are never written: every field named like one (`password`, `token`, `authorization`…),
 * in the logged object and in the plain objects it holds, down to REDACT_DEPTH, reads `[REDACTED]`.
 * Copy-on-write: an object with nothing to hide, like a request's line, is returned as it is after
 * one look at each key. (pino's own `redact` with `*.password` wildcards cost about 15 µs per
 * request, several times the line itself.) Class instances (a request, an Error) are left to their
 * serializers, token query parameters in URLs to `redactUrl`; child logger bindings are not seen
 * (Gatehouse binds only the request id).
 */
function redactSecrets(object: Record<string, unknown>, depth = REDACT_DEPTH): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(object)) {
    const value = object[key];
    let kept = value;
    if (SECRET_FIELDS.has(key.toLowerCase())) kept = CENSOR;
    else if (depth > 1 && isPlainObject(value)) kept = redactSecrets(value, depth - 1);
    if (kept !== value) {
      copy ??= { ...object };
      copy[key] = kept;
    }
  }
  return copy ?? object;
}

export function redactUrl(url: string): string {
  if (!url.includes('=')) return url;
  return url.replace(/([?&](?:token|code|access_token|refresh_token|password)=)[^&#]*/gi, '$1[REDACTED]');
}

type LoggerSettings = Exclude<FastifyServerOptions['logger'], boolean | undefined>;

/**
 * The logger Gatehouse writes with: LOG_LEVEL, `redactSecrets`, and LOG_FORMAT. `json` is
 * pino's own output, one object per line on stdout; `pretty` formats each line with pino-pretty in
 * this process, synchronously (a development setting). `extra` adds or replaces settings; its
 * `stream`, when given, receives the lines in either format (tests capture them so).
 */
export async function loggerOptions(
  config: Pick<Config, 'logLevel' | 'logFormat'>,
  extra: LoggerSettings = {},
): Promise<LoggerSettings> {
  const { stream, ...overrides } = extra;
  const settings: LoggerSettings = {
    level: config.logLevel,
    formatters: { log: redactSecrets },
    serializers: {
      req: (req: { method: string; url: string; ip?: string }) => ({
        method: req.method,
        url: redactUrl(req.url),
        remoteAddress: req.ip,
      }),
    },
    ...overrides,
  };
  if (config.logFormat === 'json') return stream ? { ...settings, stream } : settings;
  const { prettyFactory, isColorSupported } = await import('pino-pretty');
  const format = prettyFactory({
    // [12:00:00.123] INFO: req-1 GET /api/v1/me 200 3.1 ms 127.0.0.1
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,reqId',
    messageFormat: '{if reqId}{reqId} {end}{msg}',
    colorize: stream ? false : isColorSupported,
  });
  const destination = stream ?? process.stdout;
  return { ...settings, stream: { write: (line: string) => void destination.write(format(line)) } };
}

/**
 * One log line per request, written when the response is complete, in place of Fastify's two
 * ("incoming request" and "request completed"): method, URL (token parameters redacted), status,
 * duration in milliseconds, the client address as TRUST_PROXY resolves it, and the request id
 * (`reqId`, bound to the request's logger). In `json` these are fields; in `pretty` the message
 * reads `GET /api/v1/me 200 3.1 ms 127.0.0.1`. Pass it as Fastify's `logController`.
 */
export class RequestLog extends LogController {
  readonly #clientIp: ClientIpResolver;
  readonly #pretty: boolean;

  constructor(config: Pick<Config, 'trustProxy' | 'logFormat'>) {
    super();
    this.#clientIp = clientIpResolver(config.trustProxy);
    this.#pretty = config.logFormat === 'pretty';
  }

  override incomingRequest(): void {}

  /** A route that does not exist still gets its one line, with status 404. */
  override routeNotFound(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const method = request.method;
    const url = redactUrl(request.url);
    const status = reply.statusCode;
    const durationMs = Math.round(reply.elapsedTime * 10) / 10;
    // Set by Gatehouse's own routes; a host route or a URL no route matches resolves it here.
    const ip = request.caller?.ip ?? this.#clientIp(request.raw);
    if (this.#pretty) {
      const line = `${method} ${url} ${status} ${durationMs} ms ${ip}`;
      if (error) reply.log.error({ err: error }, line);
      else reply.log.info(line);
    } else if (error) {
      reply.log.error({ method, url, status, duration_ms: durationMs, ip, err: error }, 'request errored');
    } else {
      reply.log.info({ method, url, status, duration_ms: durationMs, ip }, 'request completed');
    }
  }
}

export interface BuildAppOptions extends Omit<GatehouseOptions, 'config'> {
  /** Logger settings added to Gatehouse's (see `loggerOptions`), e.g. a destination stream in tests; `false`: no logs. */
  logger?: FastifyServerOptions['logger'];
  loggerInstance?: FastifyServerOptions['loggerInstance'];
}

/** A Fastify instance with nothing in it but Gatehouse. */
export async function buildApp(config: Config, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const { logger, loggerInstance, ...pluginOptions } = options;
  const requestLog = new RequestLog(config);
  const app = Fastify({
    ...(loggerInstance
      ? { loggerInstance }
      : { logger: logger === false ? false : await loggerOptions(config, logger === true ? {} : logger) }),
    logController: requestLog,
    // Gatehouse decides the client IP itself from TRUST_PROXY (src/http/client-ip.ts).
    trustProxy: false,
    // `/register/` and `/api/v1/login/` answer as `/register` and `/api/v1/login`.
    routerOptions: { ignoreTrailingSlash: true },
    // While closing, a request that still arrives on an open keep-alive connection is
    // served (with `Connection: close`) rather than refused with a bare 503.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    requestTimeout: 30_000,
    // Router-level failures (bad percent-encoding, an over-long path parameter) answer problem+json too.
    // Fastify does not follow these responses to their end, so their one log line is written here.
    frameworkErrors: (error, request, reply) => {
      reply.raw.once('finish', () => requestLog.requestCompleted(null, request, reply));
      return sendProblem(request, reply, error);
    },
    // Start-up runs migrations and opens the embedded database; on a busy or small
    // machine that exceeds Fastify's default 10 s plugin timeout.
    pluginTimeout: 120_000,
  });
  app.setNotFoundHandler((request, reply) => sendProblem(request, reply, new AppError('NOT_FOUND')));
  app.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));
  await app.register(gatehouse, { ...pluginOptions, config });
  return app;
}
