import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CompatProfile } from '../domain/compat.ts';
import type { FieldError } from '../domain/errors.ts';
import { signedInUserId } from './login-user.ts';

/** What a route answering in a document's shapes is: the profile, and which of Gatehouse's routes it stands for. */
export interface CompatRoute {
  profile: CompatProfile;
  /** Gatehouse's route, without the prefix: `register`, `login`, `me`… */
  route: string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Errors (and, on an alias, successes) take this document's shapes (docs/compatibility.md). */
    compat?: CompatRoute;
  }
}

/** The problem body `sendProblem` would send; the profiles reshape it. */
export interface ProblemFields {
  status: number;
  detail: string;
  code: string;
  issues?: string[] | undefined;
  errors?: FieldError[] | undefined;
  recommendation?: string | undefined;
}

interface Shaped {
  status: number;
  body: unknown;
}

const POLICY = 'Password does not meet security requirements';

function missingFields(errors: FieldError[] | undefined): string[] {
  return (errors ?? []).filter((e) => e.code === 'required').map((e) => e.field);
}

/** The statuses a document's own validation answers with, where its words say so. */
function clientStatus(status: number, validation: number): number {
  return status === 400 || status === 409 || status === 422 ? validation : status;
}

/** `000_…` (DePIN): `/api/v1`'s statuses and members, `detail` as its clients read it, `error_code` beside `code`. */
function depinError(problem: ProblemFields & Record<string, unknown>): Shaped {
  let detail: unknown = problem.detail;
  if (problem.code === 'PASSWORD_POLICY') detail = { message: POLICY, issues: problem.issues ?? [] };
  if (problem.code === 'PASSWORD_BREACHED') {
    detail = {
      message: 'Password has been found in data breaches',
      recommendation: 'Please choose a different password that has not been compromised',
    };
  }
  return { status: problem.status, body: { ...problem, detail, error_code: problem.code } };
}

const FASTPY_MESSAGES: Record<string, string> = {
  INVALID_CREDENTIALS: 'Invalid email or password',
  TOKEN_EXPIRED: 'Token has expired',
  UNAUTHORIZED: 'Not authenticated',
};

/** `002_…` (Fastpy): `{"success": false, "error": {"message", "code"}}`, Gatehouse's statuses. */
function fastpyError(problem: ProblemFields): Shaped {
  const error: Record<string, unknown> = {
    message: FASTPY_MESSAGES[problem.code] ?? problem.detail,
    code: problem.code,
  };
  if (problem.issues) error.details = problem.issues;
  else if (problem.errors) error.details = problem.errors;
  return { status: problem.status, body: { success: false, error } };
}

/** `003_…` (simple endpoints): `{"message"}`, 400 for every refused input. */
function simpleEndpointsError(route: string, problem: ProblemFields): Shaped {
  const status = clientStatus(problem.status, 400);
  if (problem.status >= 500) {
    return {
      status: problem.status,
      body: { message: `An error occurred during ${route === 'login' ? 'login' : 'registration'}` },
    };
  }
  const required = missingFields(problem.errors);
  let message: string;
  switch (problem.code) {
    case 'VALIDATION_ERROR':
    case 'MALFORMED_REQUEST':
      if (required.length > 0) {
        message = route === 'login' ? 'Email and password are required' : 'Username, email, and password are required';
      } else message = problem.errors?.[0]?.message ?? problem.detail;
      break;
    case 'PASSWORD_POLICY':
    case 'PASSWORD_BREACHED':
      message = POLICY;
      break;
    case 'USERNAME_TAKEN':
      message = 'User name already exists';
      break;
    case 'EMAIL_TAKEN':
      message = 'Email already exists';
      break;
    case 'INVALID_CREDENTIALS':
      message = 'Invalid email or password';
      break;
    case 'TOKEN_INVALID':
    case 'TOKEN_EXPIRED':
    case 'REFRESH_TOKEN_REUSED':
    case 'UNAUTHORIZED':
      message = 'Invalid token';
      break;
    default:
      message = problem.detail;
  }
  const body: Record<string, unknown> = { message };
  if (problem.issues) body.issues = problem.issues;
  return { status, body };
}

/** FastAPI's own answer to a body its model refuses: 422 with one entry per field. */
function fastapiValidation(errors: FieldError[], renamed: Record<string, string>): Shaped {
  return {
    status: 422,
    body: {
      detail: errors.map((e) => ({
        type: e.code === 'required' ? 'missing' : 'value_error',
        loc: ['body', renamed[e.field] ?? e.field],
        msg: e.code === 'required' ? 'Field required' : e.message,
      })),
    },
  };
}

/** `004_…` (FastAPI tutorial): `{"detail": "…"}`, 400 for a taken name or a refused password, 401 for bad credentials. */
function fastapiTutorialError(problem: ProblemFields): Shaped {
  if (problem.code === 'VALIDATION_ERROR' && problem.errors && problem.errors.length > 0) {
    return fastapiValidation(problem.errors, { password: 'hashed_password' });
  }
  switch (problem.code) {
    case 'USERNAME_TAKEN':
      return { status: 400, body: { detail: 'Username already exists' } };
    case 'EMAIL_TAKEN':
      return { status: 400, body: { detail: 'Email already exists' } };
    case 'INVALID_CREDENTIALS':
      return { status: 401, body: { detail: 'Invalid credentials' } };
    case 'PASSWORD_POLICY':
    case 'PASSWORD_BREACHED': {
      const reasons = problem.issues && problem.issues.length > 0 ? `: ${problem.issues.join('; ')}` : '';
      return { status: 400, body: { detail: `${problem.detail}${reasons}` } };
    }
    default:
      return { status: problem.status, body: { detail: problem.detail } };
  }
}

/** `001_…` (piccolo_api): `{"detail": "…"}`; its register endpoint refuses every bad form with 401. */
function piccoloError(problem: ProblemFields): Shaped {
  const status = clientStatus(problem.status, 401);
  let detail = problem.detail;
  if (problem.code === 'VALIDATION_ERROR' || problem.code === 'MALFORMED_REQUEST') {
    const fields = problem.errors ?? [];
    if (missingFields(fields).length > 0) detail = 'Form is invalid. Missing one or more fields.';
    else if (fields.some((e) => e.field === 'email')) detail = 'Invalid email address.';
    else detail = fields[0]?.message ?? problem.detail;
  } else if (problem.code === 'PASSWORD_MISMATCH') detail = 'Passwords do not match.';
  else if (problem.code === 'EMAIL_TAKEN' || problem.code === 'USERNAME_TAKEN') {
    detail = 'User with email or username already exists.';
  } else if (problem.code === 'PASSWORD_POLICY' && problem.issues) detail = `${POLICY}: ${problem.issues.join('; ')}`;
  return { status, body: { detail } };
}

/** An error on a route answering in a document's shapes: the status and body that document's clients expect. */
export function compatError(compat: CompatRoute, problem: ProblemFields & Record<string, unknown>): Shaped {
  switch (compat.profile) {
    case 'depin':
      return depinError(problem);
    case 'fastpy':
      return fastpyError(problem);
    case 'simple-endpoints':
      return simpleEndpointsError(compat.route, problem);
    case 'fastapi-tutorial':
      return fastapiTutorialError(problem);
    case 'piccolo':
      return piccoloError(problem);
  }
}

/** Members of the login body that REGISTER_RETURNS_TOKENS adds to the registration body. */
const TOKEN_MEMBERS = ['access_token', 'refresh_token', 'token_type', 'expires_in', 'refresh_expires_in'];

function parsed(payload: unknown): Record<string, unknown> {
  if (typeof payload !== 'string' || payload === '') return {};
  try {
    const value: unknown = JSON.parse(payload);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** A success on an alias, in the document's shape; `undefined` leaves the answer as it is. */
export function compatSuccess(
  compat: CompatRoute,
  request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  afterRegister: string,
): string | undefined {
  const { profile, route } = compat;
  if (profile === 'fastpy') {
    if (reply.statusCode === 204) {
      reply.code(200);
      return JSON.stringify({ success: true, data: null });
    }
    if (route === 'register' && reply.statusCode === 201) {
      const body = parsed(payload);
      const { message, ...rest } = body;
      const user: Record<string, unknown> = {};
      const data: Record<string, unknown> = { user };
      for (const [key, value] of Object.entries(rest)) (TOKEN_MEMBERS.includes(key) ? data : user)[key] = value;
      return JSON.stringify({ success: true, data, message });
    }
    return `{"success":true,"data":${typeof payload === 'string' && payload !== '' ? payload : 'null'}}`;
  }
  if (profile === 'simple-endpoints' && route === 'register' && reply.statusCode === 201) {
    return JSON.stringify({ message: 'User created successfully' });
  }
  if (profile === 'fastapi-tutorial') {
    if (route === 'register' && reply.statusCode === 201) {
      return JSON.stringify({ message: 'User created', user_id: parsed(payload).id });
    }
    if (route === 'login' && reply.statusCode === 200) {
      return JSON.stringify({ message: 'Login successful', user_id: signedInUserId.get(request), ...parsed(payload) });
    }
  }
  if (profile === 'piccolo' && route === 'register') {
    // piccolo_api answers a registration with a redirect to its login page.
    reply.code(303).header('location', afterRegister).removeHeader('content-type');
    return '';
  }
  return undefined;
}
