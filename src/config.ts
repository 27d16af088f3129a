import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { checkEmail } from './domain/account-rules.ts';
import { type CompatProfile, parseCompat } from './domain/compat.ts';
import {
  buildMailOverrides,
  MAIL_OVERRIDE_MAX_BYTES,
  type MailOverrides,
  NO_MAIL_OVERRIDES,
} from './domain/mail-overrides.ts';
import { type PagesConfig, parsePageStyles, parseRedirectTarget, parseUserDefaults } from './domain/page-options.ts';
import {
  DEFAULT_MIN_PASSWORD_LENGTH,
  MAX_PASSWORD_LENGTH,
  PASSWORD_MIN_LENGTH_FLOOR,
  type PasswordHasherName,
  type PasswordPolicyPreset,
} from './domain/password-policy.ts';
import { WEBHOOK_SECRET_RULE, webhookSecretBytes, webhookUrlProblem } from './domain/webhook-events.ts';

export type Environment = 'development' | 'test' | 'production';
export type JwtAlgorithm = 'HS256' | 'EdDSA' | 'ES256' | 'RS256';
type BreachCheckMode = 'offline' | 'api' | 'off';
export type CaptchaProvider = 'hcaptcha' | 'recaptcha' | 'turnstile';
type LogFormat = 'json' | 'pretty';
type EmailSignInMode = 'link' | 'code' | 'both' | 'off';

export interface RateLimit {
  points: number;
  durationSeconds: number;
  /** Past the limit the client is refused this long (`,block=24h`); 0: until the window resets. */
  blockSeconds: number;
}

/** DATABASE_POOL_SIZE's default: connections each instance keeps to a PostgreSQL server. */
export const DEFAULT_POOL_SIZE = 20;

export interface Config {
  port: number;
  host: string;
  publicUrl: string;
  environment: Environment;
  dataDir: string;
  databaseUrl: string | undefined;
  /** Connections each instance keeps to a PostgreSQL server (not PGlite, which has one). */
  databasePoolSize: number;
  redisUrl: string | undefined;
  /** Prefix of every Redis key, so that several deployments can share one Redis. */
  redisKeyPrefix: string;
  secretKey: string;
  algorithm: JwtAlgorithm;
  jwtIssuer: string;
  jwtAudience: string;
  /** PEM (PKCS#8) private key that signs tokens with EdDSA/ES256/RS256; otherwise a key ring is generated. */
  jwtPrivateKey: string | undefined;
  /** Key ring for EdDSA/ES256/RS256 (generated and rotated keys). Default `<DATA_DIR>/jwt-keys`. */
  jwtKeysDir: string | undefined;
  accessTokenExpireMinutes: number;
  refreshTokenExpireDays: number;
  /** A session ends this many days after its login however often it is refreshed. */
  sessionMaxAgeDays: number;
  refreshReuseIntervalSeconds: number;
  refreshTokenCookie: boolean;
  passwordHasher: PasswordHasherName;
  bcryptRounds: number;
  hashConcurrency: number;
  hashQueueLimit: number;
  passwordPolicy: PasswordPolicyPreset;
  /** Fewest characters a password may have: at least 8; default 12 (`strict`) or 15 (`nist`). */
  passwordMinLength: number;
  breachCheck: BreachCheckMode;
  breachFailClosed: boolean;
  hibpApiUrl: string;
  breachCorpusPath: string | undefined;
  smtpUrl: string | undefined;
  mailFrom: string;
  /** The address an invitation mail tells its recipient to forward it to when it is abuse. */
  abuseContact: string;
  requireEmailVerification: boolean;
  registrationEnumerationSafe: boolean;
  /** false: a registration may leave out `username`, which is then made from the email address. */
  usernameRequired: boolean;
  /** true: registration also signs in, adding the login body's tokens to its answer. */
  registerReturnsTokens: boolean;
  /** Mail outbox: poll interval, first retry delay (doubling), attempts before a mail is marked failed. */
  outboxPollMs: number;
  outboxRetryBaseMs: number;
  outboxMaxAttempts: number;
  /** Minutes between passes that delete expired sessions, spent tokens and old records (0: never). */
  housekeepingIntervalMinutes: number;
  loginAttemptsRetentionDays: number;
  /** Days a delivered or failed mail (whose body holds links) is kept. */
  mailRetentionDays: number;
  rateLimitRegister: RateLimit;
  rateLimitLogin: RateLimit;
  rateLimitRefresh: RateLimit;
  rateLimitForgotPassword: RateLimit;
  rateLimitResendVerification: RateLimit;
  rateLimitInvitations: RateLimit;
  /** Password checks of signed-in users (change password, delete account), per client IP. */
  rateLimitReauthenticate: RateLimit;
  /** Invitations one address receives per window, from all organizations together (counted in PostgreSQL). */
  invitationLimitPerAddress: RateLimit;
  /** Invitations one organization sends per window (counted in PostgreSQL). */
  invitationLimitPerOrganization: RateLimit;
  /** Seconds after a login or POST /reauthenticate during which the session counts as recently authenticated. */
  reauthenticationWindowSeconds: number;
  /** Key material of the second factor (TOTP secrets, backup-code hashes); default: derived from SECRET_KEY. */
  mfaEncryptionKey: string | undefined;
  /** Keys replaced by a rotation, still read until their secrets and codes are rewritten. */
  mfaEncryptionKeysPrevious: string[];
  /** WebAuthn relying-party id: PUBLIC_URL's host unless WEBAUTHN_RP_ID says otherwise. */
  webauthnRpId: string;
  /** Origins a passkey ceremony may come from: PUBLIC_URL's origin unless WEBAUTHN_ORIGINS lists others. */
  webauthnOrigins: string[];
  lockoutThreshold: number;
  lockoutMinutes: number;
  /** Cap of the doubling lock duration. */
  lockoutMaxMinutes: number;
  captchaProvider: CaptchaProvider | undefined;
  captchaSiteKey: string | undefined;
  captchaSecretKey: string | undefined;
  captchaVerifyUrl: string | undefined;
  captchaTimeoutMs: number;
  /** Login asks for a CAPTCHA after this many consecutive failures of one identifier; 0 = never. */
  captchaLoginAfterFailures: number;
  hibpTimeoutMs: number;
  /** Consecutive range API failures or timeouts after which the API is skipped for the cool-down. */
  hibpCircuitFailures: number;
  hibpCircuitCooldownSeconds: number;
  trustProxy: boolean | string[];
  corsOrigins: string[];
  logLevel: string;
  /** `json`: one JSON object per line; `pretty`: one readable line per event. Default `pretty` in development only. */
  logFormat: LogFormat;
  /** Bearer token `/metrics` asks for; without it (and without `metricsPort`) `/metrics` is not served. */
  metricsToken: string | undefined;
  /** A port of its own for `/metrics`, on `metricsHost`; the application port then never serves it. */
  metricsPort: number | undefined;
  metricsHost: string;
  /** The HTML pages (PAGES_*). */
  pages: PagesConfig;
  /** COMPAT: the documents whose clients are answered in their own paths and shapes (docs/compatibility.md). */
  compat: CompatProfile[];
  /** EMAIL_SIGN_IN: sign-in by a mailed link, a mailed 6-digit code, both, or off (the routes answer 404). */
  emailSignIn: EmailSignInMode;
  /** Sign-in mails asked for per client IP. */
  rateLimitEmailSignIn: RateLimit;
  /** Sign-in mails asked for one address per window, whatever the IP. */
  emailSignInLimitPerAddress: RateLimit;
  /** OIDC_PROVIDER: Gatehouse as an OpenID Connect provider for products (docs/oidc.md). */
  oidcProvider: boolean;
  /** SSO_PROVIDERS and their SSO_<NAME>_* settings: sign-in with other identity providers (docs/sso.md). */
  ssoProviders: SsoProvider[];
  /** ACCESS_TOKEN_ORG_CLAIMS: access tokens carry `orgs`, the role per organization uuid (docs/auth.md). */
  accessTokenOrgClaims: boolean;
  /** ACCESS_TOKEN_METADATA_CLAIMS: access tokens carry `user_metadata` and `app_metadata`. */
  accessTokenMetadataClaims: boolean;
  /** Receivers of signed webhooks besides the registered endpoints (WEBHOOK_URLS), signed with `webhookSecret`. */
  webhookUrls: string[];
  webhookSecret: string | undefined;
  /** First webhook retry delay; later ones are multiples of it (5 s → 30 s, 2 min … 8 h). */
  webhookRetryBaseMs: number;
  /** Settings worth an operator's attention that do not stop start-up; each is logged as a warning at start. */
  warnings: string[];
  /** MAIL_TEMPLATE_DIR: mail template parts that replace the built-in ones, read and checked at start (docs/email.md). */
  mailTemplates: MailOverrides;
}

/** One identity provider people may sign in with (SSO_PROVIDERS, SSO_<NAME>_*). */
export interface SsoProvider {
  /** Lower-case word: the path segment (`/api/v1/sso/<name>/…`) and, upper-cased, the variables' infix. */
  name: string;
  /** `oidc`: an OpenID Connect issuer found through discovery; `github`: GitHub's OAuth 2.0 and REST API. */
  kind: 'oidc' | 'github';
  label: string;
  clientId: string;
  clientSecret: string | undefined;
  /** The OpenID Connect issuer (kind `oidc`). */
  issuer: string | undefined;
  scopes: string[];
  /** E-mail domains allowed to sign in (empty: any). */
  allowedDomains: string[];
  /** Its verified e-mail addresses may be linked to an existing account with the same verified address. */
  trusted: boolean;
  /** GitHub's web and API bases (kind `github`). */
  githubUrl: string;
  githubApiUrl: string;
}

const SSO_PRESETS: Record<string, { label: string; kind: 'oidc' | 'github'; scopes: string[] }> = {
  google: { label: 'Continue with Google', kind: 'oidc', scopes: ['openid', 'email', 'profile'] },
  microsoft: { label: 'Continue with Microsoft', kind: 'oidc', scopes: ['openid', 'email', 'profile'] },
  github: { label: 'Continue with GitHub', kind: 'github', scopes: ['read:user', 'user:email'] },
};

function ssoProviders(read: Reader, environment: string): SsoProvider[] {
  const names = read.list('SSO_PROVIDERS').map((n) => n.toLowerCase());
  const seen = new Set<string>();
  return names.map((name) => {
    if (!/^[a-z][a-z0-9]{0,31}$/.test(name)) {
      throw new ConfigError(
        'SSO_PROVIDERS',
        `"${name}" is not a provider name: lower-case letters and digits, starting with a letter`,
      );
    }
    if (seen.has(name)) throw new ConfigError('SSO_PROVIDERS', `"${name}" is listed twice`);
    seen.add(name);
    const prefix = `SSO_${name.toUpperCase()}_`;
    const preset = SSO_PRESETS[name];
    const kind = preset?.kind ?? 'oidc';
    const clientId = read.optional(`${prefix}CLIENT_ID`);
    if (!clientId)
      throw new ConfigError(`${prefix}CLIENT_ID`, `is required for the provider "${name}" in SSO_PROVIDERS`);
    const clientSecret = read.optional(`${prefix}CLIENT_SECRET`);
    if (kind === 'github' && !clientSecret) {
      throw new ConfigError(`${prefix}CLIENT_SECRET`, 'is required for GitHub (its OAuth apps always have a secret)');
    }
    let issuer: string | undefined;
    if (name === 'google') issuer = read.url(`${prefix}ISSUER`, 'https://accounts.google.com');
    else if (name === 'microsoft') {
      const tenant = read.optional('SSO_MICROSOFT_TENANT');
      if (!tenant && !read.optional(`${prefix}ISSUER`)) {
        throw new ConfigError(
          'SSO_MICROSOFT_TENANT',
          'is required for Microsoft: your Entra tenant id (a GUID) or domain; the multi-tenant "common" issuer cannot be verified',
        );
      }
      issuer = read.url(`${prefix}ISSUER`, `https://login.microsoftonline.com/${tenant}/v2.0`);
    } else if (kind === 'oidc') {
      if (!read.optional(`${prefix}ISSUER`)) {
        throw new ConfigError(
          `${prefix}ISSUER`,
          `is required for the OpenID Connect provider "${name}" (its issuer URL)`,
        );
      }
      issuer = read.url(`${prefix}ISSUER`, '');
    }
    const githubUrl =
      kind === 'github' ? read.url(`${prefix}URL`, 'https://github.com').replace(/\/+$/, '') : 'https://github.com';
    const githubApiUrl =
      kind === 'github'
        ? read.url(`${prefix}API_URL`, 'https://api.github.com').replace(/\/+$/, '')
        : 'https://api.github.com';
    if (environment === 'production') {
      for (const [variable, url] of [
        [`${prefix}ISSUER`, issuer],
        ...(kind === 'github'
          ? [[`${prefix}URL`, githubUrl] as const, [`${prefix}API_URL`, githubApiUrl] as const]
          : []),
      ] as const) {
        if (url?.startsWith('http:')) throw new ConfigError(variable, 'must be https in production');
      }
    }
    const scopes = read
      .optional(`${prefix}SCOPES`)
      ?.split(/[\s,]+/)
      .filter(Boolean) ??
      preset?.scopes ?? ['openid', 'email', 'profile'];
    if (kind === 'oidc' && !scopes.includes('openid')) scopes.unshift('openid');
    return {
      name,
      kind,
      label: read.string(`${prefix}LABEL`, preset?.label ?? `Continue with ${name[0]?.toUpperCase()}${name.slice(1)}`),
      clientId,
      clientSecret,
      issuer,
      scopes,
      allowedDomains: read.list(`${prefix}ALLOWED_DOMAINS`).map((d) => d.toLowerCase().replace(/^@/, '')),
      trusted: read.boolean(`${prefix}TRUSTED`, false),
      githubUrl,
      githubApiUrl,
    };
  });
}

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

type Env = Record<string, string | undefined>;

/** Reads `.env` (when present) beneath the real environment, which wins. */
export function readEnvironment(path = '.env'): Env {
  const env: Env = { ...process.env };
  if (existsSync(path)) {
    for (const [k, v] of Object.entries(parseEnv(readFileSync(path, 'utf8')))) env[k] ??= v;
  }
  return env;
}

const DEFAULT_CAPTCHA_VERIFY_URLS: Record<CaptchaProvider, string> = {
  hcaptcha: 'https://api.hcaptcha.com/siteverify',
  recaptcha: 'https://www.google.com/recaptcha/api/siteverify',
  turnstile: 'https://challenges.cloudflare.com/turnstile/v0/siteverify',
};

/** `http://<host>:<port>` as a browser on this machine reaches it: a wildcard address means localhost. */
export function listenUrl(host: string, port: number): string {
  if (host === '' || host === '0.0.0.0' || host === '::') return `http://localhost:${port}`;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** WEBHOOK_URLS with the WEBHOOK_SECRET that signs for them, and the retry pace. */
function webhookSettings(
  read: Reader,
  environment: Environment,
): Pick<Config, 'webhookUrls' | 'webhookSecret' | 'webhookRetryBaseMs'> {
  const webhookUrls = [...new Set(read.list('WEBHOOK_URLS'))];
  for (const url of webhookUrls) {
    const problem = webhookUrlProblem(url, environment === 'production');
    if (problem) throw new ConfigError('WEBHOOK_URLS', `"${url}": ${problem}`);
  }
  const webhookSecret = read.optional('WEBHOOK_SECRET');
  if (webhookUrls.length > 0 && webhookSecret === undefined) {
    throw new ConfigError('WEBHOOK_SECRET', `is required when WEBHOOK_URLS is set: ${WEBHOOK_SECRET_RULE}`);
  }
  if (webhookSecret !== undefined && !webhookSecretBytes(webhookSecret)) {
    throw new ConfigError('WEBHOOK_SECRET', `must be ${WEBHOOK_SECRET_RULE} (e.g. whsec_$(openssl rand -base64 32))`);
  }
  return {
    webhookUrls,
    webhookSecret,
    webhookRetryBaseMs: read.integer('WEBHOOK_RETRY_BASE_MS', 5_000, 10, 3_600_000),
  };
}

/** WEBAUTHN_ORIGINS: each entry a bare origin (`https://host[:port]`), else PUBLIC_URL's origin. */
function webauthnOrigins(read: Reader, publicUrl: string): string[] {
  const listed = read.list('WEBAUTHN_ORIGINS');
  for (const entry of listed) {
    let origin: string | undefined;
    try {
      origin = new URL(entry).origin;
    } catch {
      origin = undefined;
    }
    if (origin !== entry.replace(/\/+$/, '')) {
      throw new ConfigError(
        'WEBAUTHN_ORIGINS',
        `must be a comma-separated list of origins such as https://auth.example.com, got "${entry}"`,
      );
    }
  }
  return listed.length > 0 ? listed.map((o) => o.replace(/\/+$/, '')) : [new URL(publicUrl).origin];
}

/** Environment → one validated Config. Throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = readEnvironment()): Config {
  const read = new Reader(env);
  const environment = read.oneOf('ENVIRONMENT', ['development', 'test', 'production'], 'development');
  const dataDir = read.string('DATA_DIR', './data');
  const port = read.integer('PORT', 8000, 0, 65535);
  const host = read.string('HOST', '0.0.0.0');
  if (environment === 'production' && !env.PUBLIC_URL) {
    throw new ConfigError(
      'PUBLIC_URL',
      'is required when ENVIRONMENT=production: the address people reach Gatehouse at (e.g. https://auth.example.com), used in mailed links and as the token issuer',
    );
  }
  const publicUrl = read.url('PUBLIC_URL', listenUrl(host, port)).replace(/\/+$/, '');
  const captchaProvider = read.optionalOneOf('CAPTCHA_PROVIDER', ['hcaptcha', 'recaptcha', 'turnstile']);
  const warnings: string[] = [];
  const passwordPolicy = read.oneOf('PASSWORD_POLICY', ['strict', 'nist'], 'strict');
  const smtpUrl = read.optional('SMTP_URL');
  const mailFrom = read.string('MAIL_FROM', 'Gatehouse <no-reply@localhost>');
  if (smtpUrl && !/^smtps?:\/\//.test(smtpUrl))
    throw new ConfigError('SMTP_URL', 'must start with smtp:// or smtps://');

  const config: Config = {
    port,
    host,
    publicUrl,
    environment,
    dataDir,
    databaseUrl: withPassword(read, 'DATABASE_URL', 'DATABASE_PASSWORD', /^postgres(ql)?:$/, warnings),
    databasePoolSize: read.integer('DATABASE_POOL_SIZE', DEFAULT_POOL_SIZE, 1, 1000),
    redisUrl: withPassword(read, 'REDIS_URL', 'REDIS_PASSWORD', /^rediss?:$/, warnings),
    redisKeyPrefix: read.string('REDIS_KEY_PREFIX', 'gatehouse:'),
    secretKey: read.optional('SECRET_KEY') ?? '',
    algorithm: read.oneOf('ALGORITHM', ['HS256', 'EdDSA', 'ES256', 'RS256'], 'HS256'),
    jwtIssuer: read.string('JWT_ISSUER', publicUrl),
    jwtAudience: read.string('JWT_AUDIENCE', 'gatehouse'),
    jwtPrivateKey: read.optional('JWT_PRIVATE_KEY'),
    jwtKeysDir: read.optional('JWT_KEYS_DIR'),
    accessTokenExpireMinutes: read.integer('ACCESS_TOKEN_EXPIRE_MINUTES', 30, 1, 24 * 60),
    refreshTokenExpireDays: read.integer('REFRESH_TOKEN_EXPIRE_DAYS', 7, 1, 365),
    sessionMaxAgeDays: read.integer('SESSION_MAX_AGE_DAYS', 30, 1, 3650),
    refreshReuseIntervalSeconds: read.integer('REFRESH_REUSE_INTERVAL_SECONDS', 10, 0, 300),
    refreshTokenCookie: read.boolean('REFRESH_TOKEN_COOKIE', false),
    passwordHasher: read.oneOf('PASSWORD_HASHER', ['argon2id', 'bcrypt'], 'argon2id'),
    bcryptRounds: read.integer('BCRYPT_ROUNDS', 14, 4, 31),
    hashConcurrency: read.integer('HASH_CONCURRENCY', availableParallelism(), 1, 256),
    hashQueueLimit: read.integer('HASH_QUEUE_LIMIT', 200, 0, 100_000),
    passwordPolicy,
    passwordMinLength: read.integer(
      'PASSWORD_MIN_LENGTH',
      DEFAULT_MIN_PASSWORD_LENGTH[passwordPolicy],
      PASSWORD_MIN_LENGTH_FLOOR,
      MAX_PASSWORD_LENGTH,
    ),
    breachCheck: read.oneOf('BREACH_CHECK', ['offline', 'api', 'off'], 'offline'),
    breachFailClosed: read.boolean('BREACH_FAIL_CLOSED', false),
    hibpApiUrl: read.url('HIBP_API_URL', 'https://api.pwnedpasswords.com').replace(/\/+$/, ''),
    breachCorpusPath: read.optional('BREACH_CORPUS_PATH'),
    smtpUrl,
    mailFrom,
    abuseContact: read.parsed('ABUSE_CONTACT', parseAbuseContact) ?? mailAddress(mailFrom),
    requireEmailVerification: read.boolean('REQUIRE_EMAIL_VERIFICATION', true),
    registrationEnumerationSafe: read.boolean('REGISTRATION_ENUMERATION_SAFE', false),
    usernameRequired: read.boolean('USERNAME_REQUIRED', true),
    registerReturnsTokens: read.boolean('REGISTER_RETURNS_TOKENS', false),
    outboxPollMs: read.integer('OUTBOX_POLL_MS', 5_000, 10, 3_600_000),
    outboxRetryBaseMs: read.integer('OUTBOX_RETRY_BASE_MS', 30_000, 10, 3_600_000),
    outboxMaxAttempts: read.integer('OUTBOX_MAX_ATTEMPTS', 10, 1, 100),
    housekeepingIntervalMinutes: read.integer('HOUSEKEEPING_INTERVAL_MINUTES', 60, 0, 7 * 24 * 60),
    loginAttemptsRetentionDays: read.integer('LOGIN_ATTEMPTS_RETENTION_DAYS', 90, 1, 3650),
    mailRetentionDays: read.integer('MAIL_RETENTION_DAYS', 7, 1, 3650),
    rateLimitRegister: read.rateLimit('RATE_LIMIT_REGISTER', '5/1h', { block: true }),
    rateLimitLogin: read.rateLimit('RATE_LIMIT_LOGIN', '10/15m', { block: true }),
    rateLimitRefresh: read.rateLimit('RATE_LIMIT_REFRESH', '60/1m', { block: true }),
    rateLimitForgotPassword: read.rateLimit('RATE_LIMIT_FORGOT_PASSWORD', '5/1h', { block: true }),
    rateLimitResendVerification: read.rateLimit('RATE_LIMIT_RESEND_VERIFICATION', '5/1h', { block: true }),
    rateLimitInvitations: read.rateLimit('RATE_LIMIT_INVITATIONS', '50/1h', { block: true }),
    rateLimitReauthenticate: read.rateLimit('RATE_LIMIT_REAUTHENTICATE', '10/15m', { block: true }),
    invitationLimitPerAddress: read.rateLimit('INVITATION_LIMIT_PER_ADDRESS', '3/24h'),
    invitationLimitPerOrganization: read.rateLimit('INVITATION_LIMIT_PER_ORGANIZATION', '50/24h'),
    reauthenticationWindowSeconds: read.integer('REAUTHENTICATION_WINDOW_SECONDS', 300, 10, 86_400),
    mfaEncryptionKey: read.optional('MFA_ENCRYPTION_KEY'),
    mfaEncryptionKeysPrevious: read.list('MFA_ENCRYPTION_KEY_PREVIOUS'),
    webauthnRpId: read.string('WEBAUTHN_RP_ID', new URL(publicUrl).hostname),
    webauthnOrigins: webauthnOrigins(read, publicUrl),
    lockoutThreshold: read.integer('LOCKOUT_THRESHOLD', 5, 1, 1000),
    lockoutMinutes: read.integer('LOCKOUT_MINUTES', 15, 1, 7 * 24 * 60),
    lockoutMaxMinutes: read.integer('LOCKOUT_MAX_MINUTES', 24 * 60, 1, 365 * 24 * 60),
    captchaProvider,
    captchaSiteKey: read.optional('CAPTCHA_SITE_KEY'),
    captchaSecretKey: read.optional('CAPTCHA_SECRET_KEY'),
    captchaVerifyUrl: captchaProvider
      ? read.url('CAPTCHA_VERIFY_URL', DEFAULT_CAPTCHA_VERIFY_URLS[captchaProvider])
      : read.optional('CAPTCHA_VERIFY_URL'),
    captchaTimeoutMs: read.integer('CAPTCHA_TIMEOUT_MS', 5_000, 100, 60_000),
    captchaLoginAfterFailures: read.integer('CAPTCHA_LOGIN_AFTER_FAILURES', 3, 0, 1000),
    hibpTimeoutMs: read.integer('HIBP_TIMEOUT_MS', 2_000, 100, 60_000),
    hibpCircuitFailures: read.integer('HIBP_CIRCUIT_FAILURES', 3, 1, 1000),
    hibpCircuitCooldownSeconds: read.integer('HIBP_CIRCUIT_COOLDOWN_SECONDS', 30, 1, 86_400),
    trustProxy: read.trustProxy('TRUST_PROXY'),
    corsOrigins: read.list('CORS_ORIGINS'),
    compat: read.parsed('COMPAT', parseCompat) ?? [],
    logLevel: read.oneOf(
      'LOG_LEVEL',
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      read.boolean('DEBUG', false) ? 'debug' : 'info',
    ),
    logFormat: read.oneOf('LOG_FORMAT', ['json', 'pretty'], environment === 'development' ? 'pretty' : 'json'),
    metricsToken: read.optional('METRICS_TOKEN'),
    metricsPort: read.optionalInteger('METRICS_PORT', 0, 65535),
    metricsHost: read.string('METRICS_HOST', '127.0.0.1'),
    pages: {
      enabled: read.boolean('PAGES', true),
      redirectTo: {
        register: read.parsed('PAGES_REDIRECT_AFTER_REGISTER', parseRedirectTarget),
        login: read.parsed('PAGES_REDIRECT_AFTER_LOGIN', parseRedirectTarget),
        logout: read.parsed('PAGES_REDIRECT_AFTER_LOGOUT', parseRedirectTarget),
      },
      templateDir: read.optional('PAGES_TEMPLATE_DIR'),
      styles: read.json('PAGES_STYLES', parsePageStyles) ?? {},
      readOnly: read.boolean('PAGES_READ_ONLY', false),
      userDefaults: read.json('PAGES_USER_DEFAULTS', parseUserDefaults) ?? {},
    },
    emailSignIn: read.oneOf('EMAIL_SIGN_IN', ['link', 'code', 'both', 'off'], 'off'),
    rateLimitEmailSignIn: read.rateLimit('RATE_LIMIT_EMAIL_SIGN_IN', '5/15m', { block: true }),
    emailSignInLimitPerAddress: read.rateLimit('EMAIL_SIGN_IN_LIMIT_PER_ADDRESS', '3/15m'),
    oidcProvider: read.boolean('OIDC_PROVIDER', false),
    ssoProviders: ssoProviders(read, environment),
    accessTokenOrgClaims: read.boolean('ACCESS_TOKEN_ORG_CLAIMS', false),
    accessTokenMetadataClaims: read.boolean('ACCESS_TOKEN_METADATA_CLAIMS', false),
    ...webhookSettings(read, environment),
    warnings,
    mailTemplates: mailTemplateOverrides(read.optional('MAIL_TEMPLATE_DIR')),
  };

  // A short token can be guessed over the network; 16 bytes is the least worth comparing.
  if (config.metricsToken !== undefined && Buffer.byteLength(config.metricsToken) < 16) {
    throw new ConfigError('METRICS_TOKEN', 'must be at least 16 bytes (e.g. openssl rand -hex 32)');
  }
  if (config.oidcProvider && !config.pages.enabled) {
    throw new ConfigError(
      'OIDC_PROVIDER',
      'needs the pages (PAGES=true): people sign in and consent on them; set PAGES=true or OIDC_PROVIDER=false',
    );
  }
  if (config.registerReturnsTokens && config.requireEmailVerification) {
    throw new ConfigError(
      'REGISTER_RETURNS_TOKENS',
      'cannot be true while REQUIRE_EMAIL_VERIFICATION=true (the default): a new account may not sign in before it is verified; set REQUIRE_EMAIL_VERIFICATION=false or REGISTER_RETURNS_TOKENS=false',
    );
  }
  if (config.registerReturnsTokens && config.registrationEnumerationSafe) {
    throw new ConfigError(
      'REGISTER_RETURNS_TOKENS',
      'cannot be true while REGISTRATION_ENUMERATION_SAFE=true: every registration answers the same 202, without tokens',
    );
  }
  for (const [name, keys] of [
    ['MFA_ENCRYPTION_KEY', config.mfaEncryptionKey === undefined ? [] : [config.mfaEncryptionKey]],
    ['MFA_ENCRYPTION_KEY_PREVIOUS', config.mfaEncryptionKeysPrevious],
  ] as const) {
    if (keys.some((key) => Buffer.byteLength(key) < 32)) {
      throw new ConfigError(name, 'must be at least 32 bytes (e.g. openssl rand -base64 32)');
    }
  }
  if (captchaProvider && !config.captchaSecretKey) {
    throw new ConfigError('CAPTCHA_SECRET_KEY', `is required when CAPTCHA_PROVIDER=${captchaProvider}`);
  }
  if (environment === 'production') {
    if (Buffer.byteLength(config.secretKey) < 32) {
      throw new ConfigError('SECRET_KEY', 'must be set to at least 32 bytes when ENVIRONMENT=production');
    }
    if (!config.smtpUrl) {
      warnings.push(
        'SMTP_URL is not set while ENVIRONMENT=production: NO MAIL IS SENT. Verification, password-reset and ' +
          'invitation mails are only logged (subject and recipient) and written to DATA_DIR/mail. ' +
          'Set SMTP_URL=smtp://user:password@mail.example.com:587 (or smtps://…:465) to deliver them.',
      );
    }
    if (read.boolean('DEBUG', false)) {
      warnings.push(
        read.optional('LOG_LEVEL')
          ? `DEBUG=true is ignored while LOG_LEVEL is set (LOG_LEVEL=${config.logLevel})`
          : 'DEBUG=true while ENVIRONMENT=production: logging at debug level (set DEBUG=false or LOG_LEVEL=info)',
      );
    }
  } else if (config.secretKey === '') {
    config.secretKey = developmentSecret(dataDir);
  } else if (Buffer.byteLength(config.secretKey) < 32) {
    throw new ConfigError('SECRET_KEY', 'must be at least 32 bytes');
  }
  return config;
}

/**
 * `DATABASE_URL` with `DATABASE_PASSWORD` (or `REDIS_URL` with `REDIS_PASSWORD`) put in as its
 * password when the URL has none. A password the URL already has wins; the separate one is then
 * named in a warning, as it is when there is no such URL to put it in.
 */
function withPassword(
  read: Reader,
  urlName: string,
  passwordName: string,
  protocol: RegExp,
  warnings: string[],
): string | undefined {
  const raw = read.optional(urlName);
  const password = read.optional(passwordName);
  if (password === undefined) return raw;
  let url: URL | undefined;
  try {
    url = raw === undefined ? undefined : new URL(raw);
  } catch {
    throw new ConfigError(urlName, 'is not a valid URL');
  }
  if (!url || !protocol.test(url.protocol)) {
    warnings.push(`${passwordName} is ignored: it applies only to a ${urlName} naming a server`);
    return raw;
  }
  if (url.password !== '') {
    warnings.push(`${passwordName} is ignored: ${urlName} carries a password of its own`);
    return raw;
  }
  url.password = encodeURIComponent(password);
  return url.toString();
}

/** Every file of MAIL_TEMPLATE_DIR, read once here: a bad name or placeholder stops start-up, not a mail. */
function mailTemplateOverrides(dir: string | undefined): MailOverrides {
  if (dir === undefined) return NO_MAIL_OVERRIDES;
  const path = resolve(dir);
  const fail = (message: string) => new ConfigError('MAIL_TEMPLATE_DIR', `${path}: ${message}`);
  let names: string[];
  try {
    names = readdirSync(path).filter((name) => !name.startsWith('.'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw fail(
      code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'is not a directory' : `cannot be read (${code})`,
    );
  }
  const files = names.sort().map((name) => {
    const file = join(path, name);
    const stat = statSync(file);
    if (!stat.isFile()) throw fail(`"${name}" is not a file`);
    if (stat.size > MAIL_OVERRIDE_MAX_BYTES) throw fail(`"${name}" is larger than ${MAIL_OVERRIDE_MAX_BYTES} bytes`);
    const bytes = readFileSync(file);
    const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
    try {
      return { name, content: utf8.decode(bytes) };
    } catch {
      throw fail(`"${name}" is not UTF-8 text`);
    }
  });
  try {
    return buildMailOverrides(files);
  } catch (error) {
    throw fail((error as Error).message);
  }
}

/** The address of a From header: `Name <a@example.com>` → `a@example.com`. */
function mailAddress(from: string): string {
  return /<([^<>]+)>\s*$/.exec(from)?.[1]?.trim() ?? from.trim();
}

/** ABUSE_CONTACT: one e-mail address, as mail shows it. */
function parseAbuseContact(raw: string): string {
  const check = checkEmail(raw);
  if (!check.ok) throw new Error(`must be an e-mail address such as abuse@example.com, got "${raw}"`);
  return check.value;
}

/** Outside production a missing SECRET_KEY is generated once and kept in the data directory. */
function developmentSecret(dataDir: string): string {
  const path = join(dataDir, 'secret_key');
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(path, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  return secret;
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

class Reader {
  readonly #env: Env;
  constructor(env: Env) {
    this.#env = env;
  }

  optional(name: string): string | undefined {
    const value = this.#env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  }

  string(name: string, fallback: string): string {
    return this.optional(name) ?? fallback;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    return this.optionalInteger(name, min, max) ?? fallback;
  }

  optionalInteger(name: string, min: number, max: number): number | undefined {
    const raw = this.optional(name);
    if (raw === undefined) return undefined;
    if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
    const value = Number(raw);
    if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const raw = this.optional(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['true', '1', 'yes', 'on'].includes(raw)) return true;
    if (['false', '0', 'no', 'off'].includes(raw)) return false;
    throw new ConfigError(name, `must be true or false, got "${raw}"`);
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    return this.optionalOneOf(name, allowed) ?? fallback;
  }

  optionalOneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const raw = this.optional(name);
    if (raw === undefined) return undefined;
    const match = allowed.find((a) => a.toLowerCase() === raw.toLowerCase());
    if (!match) throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${raw}"`);
    return match;
  }

  url(name: string, fallback: string): string {
    const raw = this.optional(name) ?? fallback;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new ConfigError(name, `must be an absolute http(s) URL, got "${raw}"`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new ConfigError(name, `must be an http(s) URL, got "${raw}"`);
    }
    return raw;
  }

  /** A value checked by `parse`, whose message becomes the ConfigError's. */
  parsed<T>(name: string, parse: (raw: string) => T): T | undefined {
    const raw = this.optional(name);
    if (raw === undefined) return undefined;
    try {
      return parse(raw);
    } catch (error) {
      throw new ConfigError(name, error instanceof Error ? error.message : String(error));
    }
  }

  /** A JSON value checked by `parse`. */
  json<T>(name: string, parse: (value: unknown) => T): T | undefined {
    return this.parsed(name, (raw) => {
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch {
        throw new Error('must be valid JSON');
      }
      return parse(value);
    });
  }

  list(name: string): string[] {
    const raw = this.optional(name);
    return raw === undefined
      ? []
      : raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
  }

  /**
   * `COUNT/WINDOW`, e.g. `5/1h`, `10/15m`, `100/30s`; with `block`, optionally followed by
   * `,block=DURATION` (`20/1h,block=24h`): past the limit the client is refused for DURATION.
   */
  rateLimit(name: string, fallback: string, options: { block?: boolean } = {}): RateLimit {
    const raw = this.optional(name) ?? fallback;
    const syntax = options.block
      ? 'COUNT/WINDOW[,block=DURATION] such as 5/1h or 20/1h,block=24h'
      : 'COUNT/WINDOW such as 5/1h or 10/15m';
    const m = /^(\d+)\s*\/\s*(\d*)\s*([smhd])(?:\s*,\s*block\s*=\s*(\d+)\s*([smhd]))?$/.exec(raw);
    if (!m || (!options.block && m[4] !== undefined))
      throw new ConfigError(name, `must look like ${syntax}, got "${raw}"`);
    const points = Number(m[1]);
    const durationSeconds = Number(m[2] || '1') * (DURATION_UNITS[m[3] as string] as number);
    if (points < 1 || durationSeconds < 1)
      throw new ConfigError(name, `must allow at least 1 request in at least 1s, got "${raw}"`);
    const blockSeconds = m[4] === undefined ? 0 : Number(m[4]) * (DURATION_UNITS[m[5] as string] as number);
    return { points, durationSeconds, blockSeconds };
  }

  trustProxy(name: string): boolean | string[] {
    const raw = this.optional(name);
    if (raw === undefined || raw.toLowerCase() === 'false') return false;
    if (raw.toLowerCase() === 'true') return true;
    const entries = raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const entry of entries) {
      if (!/^(loopback|linklocal|uniquelocal|[0-9a-fA-F:.]+(\/\d{1,3})?)$/.test(entry)) {
        throw new ConfigError(
          name,
          `must be true, false, or a comma-separated list of addresses/CIDRs, got "${entry}"`,
        );
      }
    }
    return entries;
  }
}
