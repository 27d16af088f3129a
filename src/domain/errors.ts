/** Every error the API can answer with, by stable code. */
export const PROBLEMS = {
  MALFORMED_REQUEST: {
    status: 400,
    title: 'Malformed request',
    fix: 'Send a well-formed JSON or form body whose fields have the documented types.',
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    title: 'Payload too large',
    fix: 'Send a smaller body; auth routes accept at most 16 KiB.',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    title: 'Unsupported media type',
    fix: 'Send application/json (or application/x-www-form-urlencoded or multipart/form-data where the route accepts forms).',
  },
  VALIDATION_ERROR: {
    status: 422,
    title: 'Validation failed',
    fix: 'Correct each field listed in `errors` and send the request again.',
  },
  PASSWORD_POLICY: {
    status: 422,
    title: 'Password does not meet security requirements',
    fix: 'Choose a password that satisfies every rule listed in `issues`.',
  },
  PASSWORD_BREACHED: {
    status: 422,
    title: 'Password has appeared in a data breach',
    fix: 'Please choose a different password that has not been compromised.',
  },
  PASSWORD_MISMATCH: {
    status: 422,
    title: 'Passwords do not match',
    fix: 'Make confirm_password equal to the new password.',
  },
  PASSWORD_REUSED: {
    status: 422,
    title: 'Password was used recently',
    fix: 'Choose a password you have not used for this account recently.',
  },
  CAPTCHA_FAILED: {
    status: 422,
    title: 'CAPTCHA verification failed',
    fix: 'Solve the CAPTCHA again and send its fresh token.',
  },
  TOKEN_INVALID_OR_EXPIRED: {
    status: 422,
    title: 'Token is invalid or has expired',
    fix: 'Request a new link; each link works once and expires.',
  },
  EMAIL_TAKEN: {
    status: 409,
    title: 'Email address is already registered',
    fix: 'Log in, or reset the password of that account.',
  },
  USERNAME_TAKEN: { status: 409, title: 'Username is already taken', fix: 'Choose another username.' },
  CONFLICT: {
    status: 409,
    title: 'Conflict',
    fix: 'The resource is in a state that does not allow this change; see `detail`.',
  },
  INVALID_CREDENTIALS: {
    status: 401,
    title: 'Invalid username or password',
    fix: 'Check the username (or email) and password.',
  },
  UNAUTHORIZED: { status: 401, title: 'Authentication required', fix: 'Send `Authorization: Bearer <access token>`.' },
  TOKEN_EXPIRED: {
    status: 401,
    title: 'Token has expired',
    fix: 'Obtain a new access token with the refresh token, or log in again.',
  },
  TOKEN_INVALID: { status: 401, title: 'Token is invalid', fix: 'Log in again to obtain a valid token.' },
  REFRESH_TOKEN_REUSED: {
    status: 401,
    title: 'Refresh token was reused',
    fix: 'The session was revoked for safety; log in again.',
  },
  EMAIL_NOT_VERIFIED: {
    status: 403,
    title: 'Email address is not verified',
    fix: 'Follow the link in the verification email, or ask for a new one.',
  },
  MFA_REQUIRED: {
    status: 403,
    title: 'Second factor required',
    fix: 'Send the `mfa_token` with a code from the authenticator app (or a backup code) to POST /api/v1/login/mfa within 5 minutes.',
  },
  MFA_REQUIRED_BY_ORGANIZATION: {
    status: 403,
    title: 'This organization requires a second factor',
    fix: 'Turn on an authenticator app for your account (the account page, or POST /api/v1/mfa/totp/setup), then try again.',
  },
  REAUTHENTICATION_REQUIRED: {
    status: 403,
    title: 'Recent authentication required',
    fix: 'Confirm your password (and a second-factor code when one is on) with POST /api/v1/reauthenticate, then repeat the request within the window.',
  },
  INVALID_MFA_CODE: {
    status: 401,
    title: 'Invalid authentication code',
    fix: 'Enter the current code from the authenticator app, or an unused backup code. Each code works once.',
  },
  EMAIL_SIGN_IN_INVALID: {
    status: 401,
    title: 'Sign-in link or code is invalid or has expired',
    fix: 'Ask for a new sign-in mail (POST /api/v1/login/email); each link or code works once, for 15 minutes, and a code dies after 5 wrong tries.',
  },
  SSO_STATE_INVALID: {
    status: 400,
    title: 'Sign-in with the provider is invalid or has expired',
    fix: 'Start the sign-in again from the same browser (GET /api/v1/sso/{provider}/start); each one works once, for 10 minutes.',
  },
  SSO_FAILED: {
    status: 401,
    title: 'The identity provider did not sign you in',
    fix: 'Start the sign-in again; if it keeps failing, the provider refused it or its answer did not verify (token, signature, audience, issuer, nonce or expiry).',
  },
  SSO_ACCOUNT_EXISTS: {
    status: 409,
    title: 'An account with this e-mail address exists',
    fix: 'Sign in to that account with its password or passkey, then link the provider from your account page.',
  },
  SSO_DOMAIN_NOT_ALLOWED: {
    status: 403,
    title: 'This e-mail domain may not sign in with this provider',
    fix: 'Sign in with an address of an allowed domain (SSO_<NAME>_ALLOWED_DOMAINS).',
  },
  SSO_UNAVAILABLE: {
    status: 502,
    title: 'The identity provider is unavailable',
    fix: 'Try again in a moment, or sign in another way.',
  },
  REDIRECT_NOT_ALLOWED: {
    status: 400,
    title: 'Redirect target is not allowed',
    fix: 'Use a path of this site, or a URL whose origin is PUBLIC_URL or one of CORS_ORIGINS.',
  },
  ACCOUNT_DISABLED: { status: 403, title: 'Account is disabled', fix: 'Contact an administrator.' },
  FORBIDDEN: { status: 403, title: 'Forbidden', fix: 'Your role does not allow this action.' },
  CSRF_INVALID: { status: 403, title: 'Invalid CSRF token', fix: 'Reload the form and submit it again.' },
  NOT_FOUND: { status: 404, title: 'Not found', fix: 'Check the path and identifier.' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed', fix: 'Use a method the route supports.' },
  ACCOUNT_LOCKED: {
    status: 423,
    title: 'Account temporarily locked',
    fix: 'Wait for `retry_after` seconds, or reset the password.',
  },
  RATE_LIMIT_EXCEEDED: {
    status: 429,
    title: 'Too many requests',
    fix: 'Wait for `retry_after` seconds before trying again.',
  },
  PASSKEY_INVALID: {
    status: 401,
    title: 'Passkey not accepted',
    fix: 'Use a passkey registered to this account, on this site, for the challenge you were given; ask for new options and try again.',
  },
  PASSKEY_COUNTER_REGRESSION: {
    status: 401,
    title: 'Passkey signature counter went back',
    fix: 'The authenticator may have been cloned: sign in another way, remove this passkey and add it again.',
  },
  CHALLENGE_INVALID: {
    status: 401,
    title: 'Challenge is unknown, used or expired',
    fix: 'Ask for new options (each challenge works once, for 5 minutes) and try again.',
  },
  EMAIL_UNCHANGED: {
    status: 422,
    title: 'The new e-mail address is the current one',
    fix: 'Enter an address other than the one the account already has.',
  },
  ROLE_EXISTS: {
    status: 409,
    title: 'Role already exists',
    fix: "Choose another name: `admin`, `user`, `viewer` and the organization's custom roles are taken.",
  },
  ROLE_BUILT_IN: {
    status: 403,
    title: 'Built-in roles cannot be changed',
    fix: 'Create a custom role with the permissions you need and give it to the members instead.',
  },
  ROLE_IN_USE: {
    status: 409,
    title: 'Role is in use',
    fix: 'Give its members another role and revoke its pending invitations, then delete it.',
  },
  CANNOT_DELETE_SELF: {
    status: 409,
    title: 'Superusers cannot delete their own account here',
    fix: 'Delete your own account with DELETE /api/v1/me, or ask another superuser to delete it.',
  },
  LAST_SUPERUSER: {
    status: 409,
    title: 'The last superuser cannot lose the superuser flag',
    fix: 'Make another active user a superuser first (PATCH /api/v1/admin/users/{uuid} with is_superuser: true).',
  },
  INTERNAL_ERROR: { status: 500, title: 'Internal server error', fix: 'Try again later; the error was logged.' },
  SERVICE_UNAVAILABLE: {
    status: 503,
    title: 'Service temporarily unavailable',
    fix: 'Wait for `retry_after` seconds and try again.',
  },
  CLAIMS_HOOK_FAILED: {
    status: 503,
    title: 'Token claims could not be computed',
    fix: "The host application's claims hook failed or timed out: no token was issued and nothing changed; try again.",
  },
} as const satisfies Record<string, { status: number; title: string; fix: string }>;

export type ProblemCode = keyof typeof PROBLEMS;

/** Default `detail` where API.md fixes the wording. */
const DETAILS: Partial<Record<ProblemCode, string>> = {
  EMAIL_TAKEN: 'Email address is already registered',
  USERNAME_TAKEN: 'Username is already taken',
  INVALID_CREDENTIALS: 'Invalid username or password',
  RATE_LIMIT_EXCEEDED: 'Rate limit exceeded. Please try again later.',
  PASSWORD_POLICY: 'Password does not meet security requirements',
  PASSWORD_BREACHED: 'This password has appeared in a data breach and cannot be used',
  PASSWORD_MISMATCH: 'Passwords do not match',
};

export interface FieldError {
  field: string;
  message: string;
  code: string;
}

export interface AppErrorOptions {
  detail?: string;
  issues?: string[];
  errors?: FieldError[];
  recommendation?: string;
  retryAfter?: number;
  /** RFC 6749 `error` on the token endpoints. */
  oauthError?: 'invalid_request' | 'invalid_grant' | 'unsupported_grant_type' | 'invalid_client' | 'mfa_required';
  /** Further members of the problem body (RFC 9457 §3.2 extensions), e.g. `mfa_token`. */
  extensions?: Record<string, unknown>;
  headers?: Record<string, string>;
  cause?: unknown;
}

/** A failure with a stable code; turned into problem+json in exactly one place. */
export class AppError extends Error {
  readonly code: ProblemCode;
  readonly status: number;
  readonly detail: string;
  readonly options: AppErrorOptions;

  constructor(code: ProblemCode, options: AppErrorOptions = {}) {
    const detail = options.detail ?? DETAILS[code] ?? PROBLEMS[code].title;
    super(detail, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = PROBLEMS[code].status;
    this.detail = detail;
    this.options = options;
  }
}

export function problemType(code: ProblemCode): string {
  return `/problems/${code.toLowerCase().replaceAll('_', '-')}`;
}
