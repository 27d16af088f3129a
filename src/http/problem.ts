import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, type FieldError, PROBLEMS, type ProblemCode, problemType } from '../domain/errors.ts';
import { compatError } from './compat-shapes.ts';
import { noSniff } from './security-headers.ts';

interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  issues?: string[];
  errors?: FieldError[];
  recommendation?: string;
  retry_after?: number;
  error?: string;
  [extension: string]: unknown;
}

interface AjvIssue {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Anything thrown → the AppError it means. Unknown errors become a bare 500. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const e = error as Partial<FastifyError> & { validation?: AjvIssue[]; validationContext?: string };
  if (Array.isArray(e.validation)) return fromValidation(e.validation, e.validationContext ?? 'body');
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('PAYLOAD_TOO_LARGE', { detail: 'Request body is too large' });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('UNSUPPORTED_MEDIA_TYPE', { detail: 'Unsupported Content-Type' });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('MALFORMED_REQUEST', { detail: 'Request body is empty' });
    case 'FST_ERR_BAD_URL':
      return new AppError('MALFORMED_REQUEST', { detail: 'Request URL could not be decoded' });
    case 'FST_ERR_MAX_PARAM_LENGTH':
      // No identifier is that long: whatever was asked for does not exist.
      return new AppError('NOT_FOUND');
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status === 404) return new AppError('NOT_FOUND');
  if (status === 413) return new AppError('PAYLOAD_TOO_LARGE', { detail: 'Request body is too large' });
  if (status === 415) return new AppError('UNSUPPORTED_MEDIA_TYPE', { detail: 'Unsupported Content-Type' });
  if (status >= 400 && status < 500) {
    // Parser errors (bad JSON, __proto__ keys) carry safe messages, but keep ours stable.
    return new AppError('MALFORMED_REQUEST', { detail: 'Request body could not be parsed' });
  }
  if (status === 503 || isUnavailable(error))
    return new AppError('SERVICE_UNAVAILABLE', { retryAfter: 5, cause: error });
  return new AppError('INTERNAL_ERROR', { cause: error });
}

/** Socket errors meaning "the server is not there (now)". */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);
/** pg's own errors for a lost or unobtainable connection carry no code, only these messages. */
const PG_CONNECTION_LOST =
  /^(Connection terminated|Client has encountered a connection error|Client was closed|timeout exceeded when trying to connect)/;

/**
 * The database cannot be reached or is restarting: SQLSTATE class 08
 * (connection exception), 53 (insufficient resources), 57P (shutdown,
 * cannot connect now), a refused or reset socket, or pg's lost-connection
 * errors. The client may retry, so 503 rather than 500.
 */
function isUnavailable(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 3) return false;
  const { code, message, errors, cause } = error as {
    code?: unknown;
    message?: unknown;
    errors?: unknown;
    cause?: unknown;
  };
  if (typeof code === 'string' && (UNREACHABLE.has(code) || /^(08|53|57P)/.test(code))) return true;
  if (typeof message === 'string' && PG_CONNECTION_LOST.test(message)) return true;
  if (Array.isArray(errors) && errors.some((e) => isUnavailable(e, depth + 1))) return true;
  return isUnavailable(cause, depth + 1);
}

/** Wrong types and non-object bodies are malformed (400); broken field rules are 422. */
function fromValidation(issues: AjvIssue[], context: string): AppError {
  const errors: FieldError[] = issues.map((issue) => {
    const path = issue.instancePath.replace(/^\//, '').replaceAll('/', '.');
    const missing = typeof issue.params.missingProperty === 'string' ? issue.params.missingProperty : undefined;
    const field = missing ? (path ? `${path}.${missing}` : missing) : path || context;
    const message = missing ? 'Field is required' : issue.message ? capitalise(issue.message) : 'Invalid value';
    return { field, message, code: issue.keyword };
  });
  const malformed = issues.some((i) => i.keyword === 'type' || (i.instancePath === '' && i.keyword !== 'required'));
  if (malformed) return new AppError('MALFORMED_REQUEST', { detail: 'Request fields have the wrong types', errors });
  return new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function problemBody(error: AppError): ProblemBody {
  const o = error.options;
  const body: ProblemBody = {
    ...o.extensions,
    type: problemType(error.code),
    title: PROBLEMS[error.code].title,
    status: error.status,
    detail: error.detail,
    code: error.code,
  };
  if (o.issues) body.issues = o.issues;
  if (o.errors) body.errors = o.errors;
  if (o.recommendation) body.recommendation = o.recommendation;
  if (o.retryAfter !== undefined) body.retry_after = o.retryAfter;
  if (o.oauthError) body.error = o.oauthError;
  return body;
}

const BEARER_CHALLENGES: Partial<Record<ProblemCode, string>> = {
  UNAUTHORIZED: 'Bearer',
  TOKEN_EXPIRED: 'Bearer error="invalid_token", error_description="The access token expired"',
  TOKEN_INVALID: 'Bearer error="invalid_token"',
  REFRESH_TOKEN_REUSED: 'Bearer error="invalid_token"',
};

/** The one place an error becomes an HTTP response. */
export function sendProblem(request: FastifyRequest, reply: FastifyReply, thrown: unknown): FastifyReply {
  const error = toAppError(thrown);
  if (error.status >= 500) {
    // The log names the underlying fault (a refused connection, a shutdown), never the client.
    const fault = error.code === 'INTERNAL_ERROR' ? thrown : (error.options.cause ?? error);
    request.log.error({ err: loggableError(fault) }, 'request failed');
  }
  const o = error.options;
  if (o.retryAfter !== undefined) reply.header('retry-after', String(o.retryAfter));
  const challenge = BEARER_CHALLENGES[error.code];
  if (challenge && !o.oauthError) reply.header('www-authenticate', challenge);
  for (const [name, value] of Object.entries(o.headers ?? {})) reply.header(name, value);
  noSniff(reply);
  const compat = request.routeOptions?.config?.compat;
  if (compat) {
    // A route answering in one of the COMPAT documents' shapes (docs/compatibility.md).
    const shaped = compatError(compat, problemBody(error) as unknown as Parameters<typeof compatError>[1]);
    return reply
      .code(shaped.status)
      .header('cache-control', 'no-store')
      .type('application/json; charset=utf-8')
      .serializer(JSON.stringify)
      .send(shaped.body);
  }
  return reply
    .code(error.status)
    .header('cache-control', 'no-store')
    .type('application/problem+json')
    .serializer(JSON.stringify)
    .send(problemBody(error));
}

/** Driver errors can carry query parameters (hashes, tokens): log only what identifies the fault. */
function loggableError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) };
  const code = (error as { code?: unknown }).code;
  return { type: error.name, message: error.message, code, stack: error.stack };
}
