import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { type Binder, CachedStatement } from '../db/prepared.ts';
import type { User } from '../db/schema.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { isEmailIdentifier, normalizeIdentifier } from '../domain/identifiers.ts';
import { normalizePassword } from '../domain/password-policy.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { isStorableText } from '../domain/text.ts';
import { auditRow, recordAudit } from '../infra/audit.ts';
import { loginNeedsCaptcha } from '../infra/captcha.ts';
import { hostClaims, metadataOf, orgClaimsOf, productClaims } from '../infra/claims.ts';
import type { Services } from '../infra/container.ts';
import { type LockoutRow, type LockoutSource, lockoutSubject, type Reservation } from '../infra/lockout.ts';
import { totpConfirmed } from '../infra/mfa.ts';
import {
  type IssuedSession,
  NEW_SESSION_COLUMNS,
  type NewSessionRow,
  newSession,
  type SessionKind,
  startedSession,
} from '../infra/sessions.ts';
import { sha256Hex } from '../infra/sha256.ts';

export interface LoginInput {
  /** Username or email, as typed. */
  identifier: string;
  password: string;
  /** Required once the source has CAPTCHA_LOGIN_AFTER_FAILURES consecutive failures (with a provider set). */
  captchaToken?: string | undefined;
  /** The browser's verified device cookie, if it sent one. */
  device?: TrustedDevice | undefined;
}

/** A device cookie whose signature and expiry were checked: the device and the users who signed in on it. */
export interface TrustedDevice {
  id: string;
  userIds: number[];
}

/** Why an attempt failed, as stored in `login_attempts.failure_reason` and the audit row. */
type LoginFailureReason =
  | 'unknown_user'
  | 'invalid_password'
  | 'account_disabled'
  | 'email_not_verified'
  | 'account_locked'
  | 'captcha_failed'
  | 'invalid_mfa_code'
  | 'invalid_email_sign_in'
  | 'passkey_invalid';

const IDENTIFIER_MAX = 320;
const PASSWORD_MAX = 1024;

function validateLogin(input: LoginInput): { identifier: string; password: string } {
  const errors: FieldError[] = [];
  const identifier = normalizeIdentifier(input.identifier);
  if (identifier === '') errors.push({ field: 'username', message: 'Username or email is required', code: 'required' });
  else if (identifier.length > IDENTIFIER_MAX || !isStorableText(identifier)) {
    errors.push({ field: 'username', message: 'Username or email is not valid', code: 'invalid_format' });
  }
  if (input.password === '') errors.push({ field: 'password', message: 'Password is required', code: 'required' });
  else if (input.password.length > PASSWORD_MAX || !input.password.isWellFormed()) {
    errors.push({ field: 'password', message: 'Password is not valid', code: 'invalid_format' });
  }
  if (errors.length > 0) {
    throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  }
  return { identifier, password: normalizePassword(input.password) };
}

/**
 * The lockout source of a login: the device, when its cookie names this
 * account (a cookie issued to someone else earns nothing here); otherwise
 * untrusted.
 */
export function loginSource(user: User | undefined, device: TrustedDevice | undefined): LockoutSource {
  return user && device?.userIds.includes(user.id) ? `device:${device.id}` : 'untrusted';
}

/** What a password login reads before it hashes: the account, its second factor, its lockout row. */
interface LoginRead {
  user: (User & { has_totp: boolean }) | undefined;
  /** The lockout row of the attempt's subject and source (lockoutSubject, loginSource), read alongside. */
  lockoutRow: { row: LockoutRow | undefined } | undefined;
}

/**
 * One statement for a known and an unknown name alike (the two paths cost the
 * same): the user the identifier names, whether a confirmed authenticator
 * guards the account, and the `lockouts` row the reservation checks for a
 * lock. The statement names the subject and source it computed, and the row is
 * used only if they are the ones lockoutSubject and loginSource give.
 */
async function readLogin(
  services: Services,
  identifier: string,
  device: TrustedDevice | undefined,
): Promise<LoginRead> {
  const column = isEmailIdentifier(identifier) ? 'email' : 'username';
  const deviceSource: LockoutSource = device ? `device:${device.id}` : 'untrusted';
  const [row] = await loginReadStatement.execute(services.db, column, {
    identifier,
    nameSubject: lockoutSubject(undefined, identifier),
    deviceUserIds: device?.userIds ?? [],
    deviceSource,
  });
  if (!row) throw new Error('the login read returned no row');
  const {
    lockout_subject,
    lockout_source,
    lockout_failures,
    lockout_lock_count,
    lockout_locked_until,
    lockout_updated_at,
    ...columns
  } = row;
  const user = columns.id === null ? undefined : (columns as User & { has_totp: boolean });
  const matches = lockout_subject === lockoutSubject(user, identifier) && lockout_source === loginSource(user, device);
  const lockoutRow =
    lockout_failures === null || lockout_lock_count === null || lockout_updated_at === null
      ? undefined
      : {
          failures: lockout_failures,
          lock_count: lockout_lock_count,
          locked_until: lockout_locked_until,
          updated_at: lockout_updated_at,
        };
  return { user, lockoutRow: matches ? { row: lockoutRow } : undefined };
}

interface LoginReadValues extends Record<string, unknown> {
  identifier: string;
  /** The subject of a name without an account. */
  nameSubject: string;
  /** The users the browser's device cookie was issued to, and that device's source. */
  deviceUserIds: number[];
  deviceSource: LockoutSource;
}

/** readLogin's statement, compiled once per column the identifier is looked up in. */
const loginReadStatement = new CachedStatement((db, bind: Binder<LoginReadValues>, column: 'email' | 'username') => {
  // lockoutSubject and loginSource, in SQL.
  const subject = sql<string>`coalesce('user:' || users.id, ${bind('nameSubject')})`;
  const source = sql<string>`case when users.id = any(${bind('deviceUserIds')}::bigint[]) then ${bind('deviceSource')} else 'untrusted' end`;
  return db
    .selectFrom(sql<{ one: number }>`(select 1 as one)`.as('one'))
    .leftJoin('users', (join) => join.on(`users.${column}`, '=', bind('identifier')))
    .leftJoin('lockouts', (join) => join.on('lockouts.identifier', '=', subject).on('lockouts.source', '=', source))
    .selectAll('users')
    .select([
      totpConfirmed(sql.ref('users.id')).as('has_totp'),
      subject.as('lockout_subject'),
      source.as('lockout_source'),
      'lockouts.failures as lockout_failures',
      'lockouts.lock_count as lockout_lock_count',
      'lockouts.locked_until as lockout_locked_until',
      'lockouts.updated_at as lockout_updated_at',
    ]);
});

/**
 * Password login: one path for every outcome. An unknown user costs one hash
 * like a wrong password, and both answer with the same body; the account's
 * state (disabled, unverified) is revealed only to the right password.
 *
 * The failure is reserved in the lockout before the hash: concurrent guesses
 * cannot all pass a check made before any of them was counted.
 */
export async function loginWithPassword(
  services: Services,
  input: LoginInput,
  context: RequestContext,
  options: { kind: SessionKind } = { kind: 'api' },
): Promise<LoggedIn> {
  const { identifier, password } = validateLogin(input);

  // Overloaded: shed now, before any database work (503 with Retry-After).
  services.hashPool.assertCapacity();
  const { user, lockoutRow } = await readLogin(services, identifier, input.device);
  const subject = lockoutSubject(user, identifier);
  const source = loginSource(user, input.device);
  let reservation: Reservation;
  try {
    if (services.captcha && services.config.captchaLoginAfterFailures > 0) {
      const state = await services.lockout.check(subject, source);
      if (!state.locked && loginNeedsCaptcha(services.config, state.failures)) {
        await services.captcha.verify(input.captchaToken, context.ip);
      }
    }
    // A locked source is refused even with the right password, before any hashing.
    reservation = await services.lockout.reserve(subject, source, lockoutRow);
  } catch (error) {
    // Refused before the password was looked at: still an attempt on the record.
    if (error instanceof AppError && (error.code === 'ACCOUNT_LOCKED' || error.code === 'CAPTCHA_FAILED')) {
      if (error.code === 'ACCOUNT_LOCKED') services.metrics.logins.inc({ outcome: 'locked' });
      const reason = error.code === 'ACCOUNT_LOCKED' ? 'account_locked' : 'captcha_failed';
      await recordLoginFailure(services, identifier, user, reason, context);
    }
    throw error;
  }

  let failure: LoginFailureReason | undefined;
  let needsRehash = false;
  try {
    if (!user) {
      await services.hasher.verifyDummy(password);
      failure = 'unknown_user';
    } else {
      const verification = await services.hasher.verify(user.password_hash, password);
      needsRehash = verification.needsRehash;
      if (!verification.ok) failure = 'invalid_password';
      else if (!user.is_active) failure = 'account_disabled';
      else if (services.config.requireEmailVerification && user.email_verified_at === null) {
        failure = 'email_not_verified';
      }
    }
  } catch (error) {
    // The hashing queue shed it: no password was checked, so nothing is counted.
    await services.lockout.cancelled(reservation);
    throw error;
  }

  if (failure || !user) {
    const reason = failure ?? 'unknown_user';
    await recordLoginFailure(services, identifier, user, reason, context);
    // Only a wrong password counts; disabled and unverified accounts were given the right one.
    if (reason === 'unknown_user' || reason === 'invalid_password') {
      await services.lockout.failed(reservation, { userId: user?.id ?? null, context });
    } else {
      await services.lockout.succeeded(reservation);
    }
    const error = loginError(reason);
    services.metrics.logins.inc({ outcome: error.code.toLowerCase() });
    throw error;
  }
  const hashUpgraded = needsRehash && (await upgradeHash(services, user, password));
  if (user.has_totp) {
    // The password alone proves nothing yet: its reservation is given back, not reset, so
    // that a right password cannot clear the wrong codes counted against the account.
    await services.lockout.cancelled(reservation);
    services.metrics.logins.inc({ outcome: 'mfa_required' });
    throw await mfaChallenge(services, user, identifier, source, options.kind);
  }
  let issued: IssuedSession;
  try {
    issued = await recordLoginSuccess(services, identifier, user, context, {
      kind: options.kind,
      amr: ['pwd'],
      hashUpgraded,
    });
  } catch (error) {
    // No session (the claims hook failed): the right password is neither a failure nor a success.
    await services.lockout.cancelled(reservation);
    throw error;
  }
  await services.lockout.succeeded(reservation);
  services.metrics.logins.inc({ outcome: 'success' });
  return { ...issued, userId: user.id };
}

/** A started session, and whose it is (the device cookie names the user). */
export interface LoggedIn extends IssuedSession {
  userId: number;
}

function loginError(reason: LoginFailureReason): AppError {
  switch (reason) {
    case 'account_disabled':
      return new AppError('ACCOUNT_DISABLED');
    case 'email_not_verified':
      return new AppError('EMAIL_NOT_VERIFIED');
    default:
      // Identical for unknown user and wrong password: same code, detail, status.
      return new AppError('INVALID_CREDENTIALS');
  }
}

/** After a failure: the attempt and audit rows (the caller settles the lockout reservation). */
export async function recordLoginFailure(
  services: Services,
  identifier: string,
  user: Pick<User, 'id'> | undefined,
  reason: LoginFailureReason,
  context: RequestContext,
  via?: string,
): Promise<void> {
  await services.db.transaction().execute(async (trx) => {
    await trx
      .insertInto('login_attempts')
      .values({
        identifier,
        user_id: user?.id ?? null,
        ip_address: context.ip,
        user_agent: context.userAgent,
        success: false,
        failure_reason: reason,
        attempted_at: services.clock.now(),
      })
      .execute();
    await recordAudit(
      trx,
      {
        action: 'login_failure',
        userId: user?.id ?? null,
        details: via ? { identifier, reason, via } : { identifier, reason },
      },
      context,
    );
  });
}

/** Rehashes a password verified under outdated parameters; true when the new hash was stored. */
async function upgradeHash(services: Services, user: User, password: string): Promise<boolean> {
  const upgraded = await services.hasher.hash(password);
  // Only if unchanged since it was read: a concurrent password change wins.
  const row = await services.db
    .updateTable('users')
    .set({ password_hash: upgraded })
    .where('id', '=', user.id)
    .where('password_hash', '=', user.password_hash)
    .returning('id')
    .executeTakeFirst();
  return row !== undefined;
}

/** The `mfa_token` lives this long. */
const MFA_TOKEN_SECONDS = 5 * 60;

/**
 * The right password of an account with a second factor: no session yet, only
 * a challenge, `403 MFA_REQUIRED` with its `mfa_token` (random, stored as
 * SHA-256, single use, MFA_TOKEN_SECONDS), bound to this attempt's user,
 * lockout source and session kind. `firstFactor` is what this step proved
 * (`pwd`, or `email` for e-mail sign-in): the finished login's `amr` starts with it.
 */
export async function mfaChallenge(
  services: Services,
  user: User,
  identifier: string,
  source: LockoutSource,
  kind: SessionKind,
  firstFactor: 'pwd' | 'email' | 'fed' = 'pwd',
): Promise<AppError> {
  const token = randomBytes(32).toString('base64url');
  const now = services.clock.now();
  const passkey = await services.db
    .selectFrom('passkeys')
    .select('id')
    .where('user_id', '=', user.id)
    .executeTakeFirst();
  await services.db
    .insertInto('mfa_challenges')
    .values({
      token_hash: sha256Hex(token),
      user_id: user.id,
      identifier,
      source,
      kind,
      first_factor: firstFactor,
      created_at: now,
      expires_at: new Date(now.getTime() + MFA_TOKEN_SECONDS * 1000),
    })
    .execute();
  return new AppError('MFA_REQUIRED', {
    detail: 'Enter a code from your authenticator app, or a backup code',
    oauthError: 'mfa_required',
    extensions: {
      mfa_token: token,
      methods: passkey ? ['totp', 'backup_code', 'webauthn'] : ['totp', 'backup_code'],
      expires_in: MFA_TOKEN_SECONDS,
    },
  });
}

/**
 * After a success: the session, `last_login_at`, the attempt and audit rows
 * in one statement. `amr` says how the user proved who they are (RFC 8176).
 * Lockout reset belongs here.
 */
export async function recordLoginSuccess(
  services: Services,
  identifier: string,
  user: User,
  context: RequestContext,
  options: { kind: SessionKind; amr: string[]; hashUpgraded: boolean; method?: 'email' | 'webauthn' | 'sso' },
): Promise<IssuedSession> {
  const { kind, amr, hashUpgraded, method } = options;
  const now = services.clock.now();
  const session = newSession(services, user, context, { kind, amr });
  // Before anything is written: a failing hook leaves no session behind.
  const host = await hostClaims(services, {
    user: { id: user.id, uuid: user.uuid, email: user.email },
    session: { uuid: session.uuid, amr, auth_time: Math.floor(session.issuedAt.getTime() / 1000) },
  });
  const shape: SuccessShape = `${services.config.accessTokenOrgClaims ? 'orgs' : ''}|${method ?? ''}`;
  const [row] = await successStatement.execute(services.db, shape, {
    userId: user.id,
    identifier,
    ip: context.ip,
    userAgent: context.userAgent,
    now,
    kind,
    hashUpgraded,
    amr,
    ...(method && { method }),
    ...sessionValues(session.row),
  });
  if (!row) throw new Error('session insert returned no row');
  const claims = { ...host, ...productClaims(services.config, { ...row, ...metadataOf(user) }) };
  return startedSession(services, user, session, row.id, claims);
}

type SuccessShape = `${'orgs' | ''}|${'email' | 'webauthn' | 'sso' | ''}`;

type SessionValues = { [K in keyof NewSessionRow as `session_${K}`]: NewSessionRow[K] };

interface SuccessValues extends SessionValues, Record<string, unknown> {
  userId: number;
  identifier: string;
  ip: string | null;
  userAgent: string | null;
  now: Date;
  kind: SessionKind;
  hashUpgraded: boolean;
  amr: string[];
  method?: string;
}

function sessionValues(row: NewSessionRow): SessionValues {
  return Object.fromEntries(NEW_SESSION_COLUMNS.map((column) => [`session_${column}`, row[column]])) as SessionValues;
}

/**
 * The writes of recordLoginSuccess in one statement, so one round trip: last_login_at, the attempt, the audit
 * row and the session, all or nothing. Compiled once per shape: whether the organizations claim comes from
 * this same statement, and how the user signed in (`method`, in the audit row).
 */
const successStatement = new CachedStatement((db, bind: Binder<SuccessValues>, shape: SuccessShape) => {
  const [orgs, method] = shape.split('|');
  const now = bind('now');
  const userId = bind('userId');
  const context = { ip: bind('ip'), userAgent: bind('userAgent') };
  const details = {
    session_uuid: bind('session_uuid'),
    kind: bind('kind'),
    hash_upgraded: bind('hashUpgraded'),
    amr: bind('amr'),
    ...(method && { method: bind('method') }),
  };
  return db
    .with('touched', (qc) =>
      qc.updateTable('users').set({ last_login_at: now }).where('id', '=', userId).returning('id'),
    )
    .with('attempt', (qc) =>
      qc
        .insertInto('login_attempts')
        .values({
          identifier: bind('identifier'),
          user_id: userId,
          ip_address: context.ip,
          user_agent: context.userAgent,
          success: true,
          failure_reason: null,
          attempted_at: now,
        })
        .returning('id'),
    )
    .with('audit', (qc) =>
      qc
        .insertInto('audit_logs')
        .values(auditRow({ action: 'login_success', userId, details }, context))
        .returning('id'),
    )
    .insertInto('sessions')
    .values(
      Object.fromEntries(NEW_SESSION_COLUMNS.map((column) => [column, bind(`session_${column}`)])) as NewSessionRow,
    )
    .returning('id')
    .$if(orgs === 'orgs', (q) => q.returning(orgClaimsOf(userId).as('org_claims')));
});
