import { AppError, type ProblemCode } from '../../domain/errors.ts';

/** A form body as parsed by @fastify/formbody: strings, or arrays for repeated names. */
export type FormBody = Record<string, unknown>;

export function formBody(body: unknown): FormBody {
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as FormBody) : {};
}

/** The field's text; a missing or repeated field reads as empty. */
export function field(body: FormBody, name: string): string {
  const value = body[name];
  return typeof value === 'string' ? value : '';
}

/** Whether the form sent the field at all (a template may leave optional fields out). */
export function sent(body: FormBody, name: string): boolean {
  return typeof body[name] === 'string';
}

/** What a form re-renders with after a failure: messages by field, and one for the form as a whole. */
export interface FormErrors {
  status: number;
  /** Field name → messages, shown beside the field and linked to it with aria-describedby. */
  fields: Record<string, string[]>;
  /** A message about the whole form (wrong credentials, an expired link, a rate limit). */
  form: string | undefined;
}

export const NO_ERRORS: FormErrors = { status: 200, fields: {}, form: undefined };

/**
 * A service's AppError as form messages. `fields` lists the form's inputs;
 * `placement` puts whole-request codes beside an input (EMAIL_TAKEN → email),
 * and `issues` (the password rules that failed) go to `passwordField`.
 * Anything that names no input of this form is a message for the form.
 */
export function formErrors(
  error: AppError,
  options: { fields: readonly string[]; placement?: Partial<Record<ProblemCode, string>>; passwordField?: string },
): FormErrors {
  const fields: Record<string, string[]> = {};
  const add = (name: string, message: string) => {
    fields[name] = [...(fields[name] ?? []), message];
  };
  let form: string | undefined;
  const o = error.options;
  for (const e of o.errors ?? []) {
    if (options.fields.includes(e.field)) add(e.field, e.message);
    else form = form ? `${form} ${e.message}` : e.message;
  }
  const placed = options.placement?.[error.code];
  if (o.issues && o.issues.length > 0 && options.passwordField) {
    for (const issue of o.issues) add(options.passwordField, issue);
  } else if (placed) {
    add(
      placed,
      o.recommendation && o.recommendation !== error.detail ? `${error.detail}. ${o.recommendation}` : error.detail,
    );
  } else if (!o.errors || o.errors.length === 0) {
    form = retryHint(error);
  }
  return { status: error.status, fields, form };
}

function retryHint(error: AppError): string {
  const seconds = error.options.retryAfter;
  if (seconds === undefined || !['ACCOUNT_LOCKED', 'RATE_LIMIT_EXCEEDED', 'SERVICE_UNAVAILABLE'].includes(error.code)) {
    return error.detail;
  }
  const wait = seconds >= 120 ? `${Math.ceil(seconds / 60)} minutes` : `${seconds} seconds`;
  return `${error.detail} Try again in ${wait}.`;
}

/** Re-throws what is not an AppError: a bug or an outage is an error page, not a form message. */
export function asAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  throw error;
}

/**
 * `redirect_to` from a link or a form: only a path on this site is followed
 * (`/account`, never `//evil.example` or `https://…`), so that a crafted
 * link cannot send someone elsewhere after they log in. Printable ASCII
 * only: anything else cannot be sent in a Location header (a browser sends
 * such a path percent-encoded anyway).
 */
export function safeRedirect(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 2048) return undefined;
  if (!/^\/[\x21-\x7e]*$/.test(value) || value.startsWith('//') || value.includes('\\')) return undefined;
  // An encoded slash or backslash at the start can turn a path into a host in some browsers.
  if (/^\/%(2f|5c)/i.test(value)) return undefined;
  return value;
}
