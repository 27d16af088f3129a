import type { Kysely } from 'kysely';
import QRCode from 'qrcode';
import type { Database, User } from '../db/schema.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { normalizePassword } from '../domain/password-policy.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { type LockoutSource, lockoutSubject, type Reservation } from '../infra/lockout.ts';
import { publicLink, queueMail } from '../infra/mail.ts';
import { type MfaStatus, mfaStatus } from '../infra/mfa.ts';
import {
  BACKUP_CODE_COUNT,
  backupCodeHash,
  base32,
  decryptSecret,
  encryptSecret,
  matchingSteps,
  mfaKeys,
  newBackupCode,
  newTotpSecret,
  normalizeBackupCode,
  otpauthUrl,
} from '../infra/mfa-crypto.ts';
import type { AuthContext } from '../infra/sessions.ts';
import { recordLoginFailure } from './login.ts';
import { reauthenticate } from './reauthenticate.ts';

/** A code as the user typed it: from the authenticator app, or a backup code. */
export type SecondFactor = { kind: 'totp'; code: string } | { kind: 'backup_code'; code: string };

/** RFC 8176 method a factor adds to `amr`. */
export type FactorMethod = 'otp' | 'backup_code';

const CODE_MAX = 64;

/**
 * A `code` field: six digits (spaces allowed) are a TOTP code, anything shaped
 * like `xxxx-xxxx` a backup code; anything else is 422 on that field.
 */
export function parseFactor(
  value: unknown,
  field: string,
  accept: 'any' | 'totp' | 'backup_code' = 'any',
): SecondFactor {
  const fail = (message: string, code: string): never => {
    throw new AppError('VALIDATION_ERROR', {
      detail: 'One or more fields are invalid',
      errors: [{ field, message, code }],
    });
  };
  if (value === undefined || value === null || value === '') return fail('Field is required', 'required');
  if (typeof value !== 'string') return fail('Must be a string', 'type');
  if (value.length > CODE_MAX) return fail(`Must be at most ${CODE_MAX} characters`, 'maxLength');
  const digits = value.replace(/\s/g, '');
  if (accept !== 'backup_code' && /^\d{6}$/.test(digits)) return { kind: 'totp', code: digits };
  const backup = accept === 'totp' ? undefined : normalizeBackupCode(value);
  if (backup) return { kind: 'backup_code', code: backup };
  return fail(
    accept === 'totp'
      ? 'Enter the 6-digit code from your authenticator app'
      : 'Enter the 6-digit code from your authenticator app, or a backup code',
    'invalid_format',
  );
}

/**
 * 403 REAUTHENTICATION_REQUIRED unless the session proved who it is within
 * REAUTHENTICATION_WINDOW_SECONDS: its login, or POST /reauthenticate.
 */
export async function assertRecentlyAuthenticated(services: Services, auth: AuthContext): Promise<void> {
  const row = await services.db
    .selectFrom('sessions')
    .select('auth_time')
    .where('id', '=', auth.sessionId)
    .executeTakeFirst();
  const windowMs = services.config.reauthenticationWindowSeconds * 1000;
  if (row && services.clock.now().getTime() - row.auth_time.getTime() <= windowMs) return;
  throw new AppError('REAUTHENTICATION_REQUIRED', {
    detail: `Confirm your password (and a code, when a second factor is on) with POST /api/v1/reauthenticate, then try again within ${services.config.reauthenticationWindowSeconds} seconds`,
  });
}

/**
 * Accepts a TOTP code once: the step it matches is stored with
 * `UPDATE … WHERE last_step < step`, so of two requests with one code exactly
 * one passes, and a code older than the last accepted one never does.
 */
async function acceptTotp(services: Services, userId: number, code: string): Promise<boolean> {
  const row = await services.db
    .selectFrom('mfa_totp')
    .select(['secret_ciphertext', 'key_id'])
    .where('user_id', '=', userId)
    .where('confirmed_at', 'is not', null)
    .executeTakeFirst();
  if (!row) return false;
  const ring = mfaKeys(services.config);
  const secret = decryptSecret(ring, row.key_id, userId, row.secret_ciphertext);
  for (const step of matchingSteps(secret, code, services.clock.now())) {
    const rotated = row.key_id !== ring.current.id;
    const accepted = await services.db
      .updateTable('mfa_totp')
      .set(
        rotated
          ? {
              last_step: step,
              key_id: ring.current.id,
              secret_ciphertext: encryptSecret(ring.current, userId, secret),
            }
          : { last_step: step },
      )
      .where('user_id', '=', userId)
      .where('confirmed_at', 'is not', null)
      .where('last_step', '<', step)
      .returning('user_id')
      .executeTakeFirst();
    if (accepted) return true;
  }
  return false;
}

/** Spends a backup code: one DELETE, so a code is good once however many requests race. */
async function spendBackupCode(services: Services, userId: number, code: string): Promise<boolean> {
  const hashes = mfaKeys(services.config).all.map((key) => backupCodeHash(key, userId, code));
  const row = await services.db
    .deleteFrom('mfa_backup_codes')
    .where('user_id', '=', userId)
    .where('code_hash', 'in', hashes)
    .returning('id')
    .executeTakeFirst();
  return row !== undefined;
}

type FactorUser = Pick<User, 'id' | 'username' | 'email' | 'first_name' | 'language_code'>;

/**
 * Checks a second-factor code as a login attempt: reserved in the account's
 * lockout (subject `user:<id>`) before it is looked at, so wrong codes count
 * toward LOCKOUT_THRESHOLD like wrong passwords; a wrong one is recorded in
 * `login_attempts` and audited as `mfa_challenge_failed`, then answers
 * 401 INVALID_MFA_CODE. A backup code used is audited and mailed.
 */
export async function checkSecondFactor(
  services: Services,
  user: FactorUser,
  factor: SecondFactor,
  source: LockoutSource,
  context: RequestContext,
  via: string,
  identifier: string = user.username,
): Promise<FactorMethod> {
  let reservation: Reservation;
  try {
    reservation = await services.lockout.reserve(lockoutSubject(user, identifier), source);
  } catch (error) {
    if (error instanceof AppError && error.code === 'ACCOUNT_LOCKED') {
      await recordLoginFailure(services, identifier, user, 'account_locked', context, via);
    }
    throw error;
  }
  let ok: boolean;
  try {
    ok =
      factor.kind === 'totp'
        ? await acceptTotp(services, user.id, factor.code)
        : await spendBackupCode(services, user.id, factor.code);
  } catch (error) {
    await services.lockout.cancelled(reservation);
    throw error;
  }
  if (!ok) {
    await recordLoginFailure(services, identifier, user, 'invalid_mfa_code', context, via);
    await recordAudit(
      services.db,
      { action: 'mfa_challenge_failed', userId: user.id, details: { method: factor.kind, via } },
      context,
    );
    await services.lockout.failed(reservation, { userId: user.id, context });
    throw new AppError('INVALID_MFA_CODE', { detail: 'The code is wrong, expired, or already used' });
  }
  await services.lockout.succeeded(reservation);
  if (factor.kind === 'backup_code') await backupCodeUsed(services, user, context, via);
  return factor.kind === 'totp' ? 'otp' : 'backup_code';
}

async function backupCodeUsed(services: Services, user: FactorUser, context: RequestContext, via: string) {
  const { backup_codes_left } = await mfaStatus(services.db, user.id);
  await services.db.transaction().execute(async (trx) => {
    await recordAudit(
      trx,
      { action: 'mfa_backup_code_used', userId: user.id, details: { remaining: backup_codes_left, via } },
      context,
    );
    await queueMail(trx, {
      to: user.email,
      template: 'mfa_backup_code_used',
      languageCode: user.language_code,
      data: { ...mailLinks(services, user), remaining: backup_codes_left },
    });
  });
  services.outbox.kick();
}

function mailLinks(services: Services, user: FactorUser) {
  return {
    name: user.first_name ?? user.username,
    link: publicLink(services.config.publicUrl, 'account'),
    resetLink: publicLink(services.config.publicUrl, 'forgot-password'),
  };
}

async function accountOf(services: Services, auth: AuthContext) {
  const user = await services.db
    .selectFrom('users')
    .select(['id', 'uuid', 'email', 'username', 'first_name', 'language_code', 'password_hash', 'is_active'])
    .where('id', '=', auth.userId)
    .executeTakeFirst();
  if (!user) throw new AppError('TOKEN_INVALID', { detail: 'The account no longer exists' });
  if (!user.is_active) throw new AppError('ACCOUNT_DISABLED');
  return user;
}

/** Pending enrolments older than this must be started again. */
const SETUP_VALID_MS = 15 * 60_000;

/** `POST /mfa/totp/setup`. */
export interface TotpSetup {
  secret: string;
  otpauth_url: string;
  qr_svg: string;
}

/**
 * Starts enrolment: a new secret, stored encrypted and unconfirmed (nothing
 * changes at login until `confirmTotp`). Asking again replaces a pending
 * secret (the page, with `reusePending`, shows the pending one again while it
 * is fresh, so that a reload does not change the QR code already scanned);
 * with TOTP already on it is 409 (turn it off first).
 */
export async function startTotpSetup(
  services: Services,
  auth: AuthContext,
  options: { reusePending?: boolean } = {},
): Promise<TotpSetup> {
  await assertRecentlyAuthenticated(services, auth);
  const user = await accountOf(services, auth);
  const now = services.clock.now();
  const ring = mfaKeys(services.config);
  let secret: Buffer | undefined;
  if (options.reusePending) {
    const pending = await services.db
      .selectFrom('mfa_totp')
      .select(['secret_ciphertext', 'key_id', 'created_at'])
      .where('user_id', '=', user.id)
      .where('confirmed_at', 'is', null)
      .executeTakeFirst();
    if (pending && now.getTime() - pending.created_at.getTime() <= SETUP_VALID_MS / 2) {
      secret = decryptSecret(ring, pending.key_id, user.id, pending.secret_ciphertext);
    }
  }
  if (!secret) {
    secret = newTotpSecret();
    const ciphertext = encryptSecret(ring.current, user.id, secret);
    const row = await services.db
      .insertInto('mfa_totp')
      .values({ user_id: user.id, secret_ciphertext: ciphertext, key_id: ring.current.id, created_at: now })
      .onConflict((oc) =>
        oc
          .column('user_id')
          .doUpdateSet({ secret_ciphertext: ciphertext, key_id: ring.current.id, last_step: 0, created_at: now })
          .where('mfa_totp.confirmed_at', 'is', null),
      )
      .returning('user_id')
      .executeTakeFirst();
    if (!row) {
      throw new AppError('CONFLICT', {
        detail: 'An authenticator app is already on; turn it off before adding another',
      });
    }
  }
  const url = otpauthUrl(new URL(services.config.publicUrl).host, user.email, secret);
  const qr = await QRCode.toString(url, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  return { secret: base32(secret), otpauth_url: url, qr_svg: qr };
}

/**
 * Finishes enrolment with a first code: TOTP is on, and the 10 backup codes
 * are returned, the only time they are shown.
 */
export async function confirmTotp(
  services: Services,
  auth: AuthContext,
  code: unknown,
  context: RequestContext,
): Promise<{ backup_codes: string[] }> {
  const factor = parseFactor(code, 'code', 'totp');
  const user = await accountOf(services, auth);
  const pending = await services.db
    .selectFrom('mfa_totp')
    .select(['secret_ciphertext', 'key_id', 'confirmed_at', 'created_at'])
    .where('user_id', '=', user.id)
    .executeTakeFirst();
  if (pending?.confirmed_at) throw new AppError('CONFLICT', { detail: 'The authenticator app is already on' });
  const now = services.clock.now();
  if (!pending || now.getTime() - pending.created_at.getTime() > SETUP_VALID_MS) {
    throw new AppError('CONFLICT', { detail: 'Start the setup first (POST /api/v1/mfa/totp/setup)' });
  }
  const secret = decryptSecret(mfaKeys(services.config), pending.key_id, user.id, pending.secret_ciphertext);
  const [step] = matchingSteps(secret, factor.code, now);
  if (step === undefined) {
    throw new AppError('INVALID_MFA_CODE', { detail: 'The code does not match; check the app and the clock' });
  }
  const codes = await services.db.transaction().execute(async (trx) => {
    const confirmed = await trx
      .updateTable('mfa_totp')
      .set({ confirmed_at: now, last_step: step })
      .where('user_id', '=', user.id)
      .where('confirmed_at', 'is', null)
      .where('secret_ciphertext', '=', pending.secret_ciphertext)
      .returning('user_id')
      .executeTakeFirst();
    if (!confirmed) throw new AppError('CONFLICT', { detail: 'The setup changed meanwhile; start it again' });
    const issued = await replaceBackupCodes(services, trx, user.id);
    await recordAudit(trx, { action: 'mfa_enabled', userId: user.id, details: { method: 'totp' } }, context);
    await queueMail(trx, {
      to: user.email,
      template: 'mfa_enabled',
      languageCode: user.language_code,
      data: mailLinks(services, user),
    });
    return issued;
  });
  services.outbox.kick();
  return { backup_codes: codes };
}

async function replaceBackupCodes(services: Services, trx: Kysely<Database>, userId: number): Promise<string[]> {
  const key = mfaKeys(services.config).current;
  const codes = new Set<string>();
  while (codes.size < BACKUP_CODE_COUNT) codes.add(newBackupCode());
  await trx.deleteFrom('mfa_backup_codes').where('user_id', '=', userId).execute();
  await trx
    .insertInto('mfa_backup_codes')
    .values(
      [...codes].map((code) => ({
        user_id: userId,
        key_id: key.id,
        code_hash: backupCodeHash(key, userId, normalizeBackupCode(code) as string),
      })),
    )
    .execute();
  return [...codes];
}

function requireTotpOn(status: MfaStatus): void {
  if (!status.totp) throw new AppError('CONFLICT', { detail: 'No authenticator app is on for this account' });
}

/** `DELETE /mfa/totp`: the password and a code (TOTP or backup), within the recent-authentication window. */
export async function disableTotp(
  services: Services,
  auth: AuthContext,
  input: { password?: unknown; code?: unknown },
  context: RequestContext,
): Promise<void> {
  const password = requiredPassword(input.password);
  const factor = parseFactor(input.code, 'code');
  await assertRecentlyAuthenticated(services, auth);
  const user = await accountOf(services, auth);
  requireTotpOn(await mfaStatus(services.db, user.id));
  await reauthenticate(services, auth, user, normalizePassword(password), context, {
    via: 'disable_mfa',
    detail: 'The password is incorrect',
    secondFactorFollows: true,
  });
  await checkSecondFactor(services, user, factor, `session:${auth.sessionUuid}`, context, 'disable_mfa');
  await removeSecondFactor(services, user, context, { action: 'mfa_disabled', details: { by: 'user' } });
}

/** Turns the second factor off and says so: audit row and mail, in one transaction. */
async function removeSecondFactor(
  services: Services,
  user: FactorUser,
  context: RequestContext,
  audit: { action: 'mfa_disabled' | 'mfa_reset_by_admin'; details: Record<string, unknown> },
): Promise<boolean> {
  const removed = await services.db.transaction().execute(async (trx) => {
    const row = await trx.deleteFrom('mfa_totp').where('user_id', '=', user.id).returning('confirmed_at').execute();
    await trx.deleteFrom('mfa_backup_codes').where('user_id', '=', user.id).execute();
    if (!row.some((r) => r.confirmed_at !== null)) return false;
    await recordAudit(trx, { action: audit.action, userId: user.id, details: audit.details }, context);
    await queueMail(trx, {
      to: user.email,
      template: 'mfa_disabled',
      languageCode: user.language_code,
      data: { ...mailLinks(services, user), byAdmin: audit.action === 'mfa_reset_by_admin' },
    });
    return true;
  });
  services.outbox.kick();
  return removed;
}

/** `POST /mfa/backup-codes`: a code proves the factor; a fresh set of 10 replaces the old one. */
export async function regenerateBackupCodes(
  services: Services,
  auth: AuthContext,
  input: { code?: unknown },
  context: RequestContext,
): Promise<{ backup_codes: string[] }> {
  const factor = parseFactor(input.code, 'code');
  await assertRecentlyAuthenticated(services, auth);
  const user = await accountOf(services, auth);
  requireTotpOn(await mfaStatus(services.db, user.id));
  await checkSecondFactor(services, user, factor, `session:${auth.sessionUuid}`, context, 'backup_codes');
  const codes = await services.db.transaction().execute(async (trx) => {
    const issued = await replaceBackupCodes(services, trx, user.id);
    await recordAudit(trx, { action: 'mfa_backup_codes_regenerated', userId: user.id }, context);
    return issued;
  });
  return { backup_codes: codes };
}

function requiredPassword(value: unknown): string {
  const errors: FieldError[] = [];
  if (value === undefined || value === null || value === '') {
    errors.push({ field: 'password', message: 'Field is required', code: 'required' });
  } else if (typeof value !== 'string') {
    errors.push({ field: 'password', message: 'Must be a string', code: 'type' });
  } else if (value.length > 1024 || !value.isWellFormed()) {
    errors.push({ field: 'password', message: 'Password is not valid', code: 'invalid_format' });
  }
  if (errors.length > 0) throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  return value as string;
}

/**
 * `POST /reauthenticate`: the password, and a code when a second factor is
 * on, checked as login attempts of this session; the session is then
 * recently authenticated for REAUTHENTICATION_WINDOW_SECONDS.
 */
export async function reauthenticateSession(
  services: Services,
  auth: AuthContext,
  input: { password?: unknown; code?: unknown },
  context: RequestContext,
): Promise<{ auth_time: string; expires_at: string }> {
  const password = requiredPassword(input.password);
  const user = await accountOf(services, auth);
  const status = await mfaStatus(services.db, user.id);
  const factor = status.totp ? parseFactor(input.code, 'code') : undefined;
  await reauthenticate(services, auth, user, normalizePassword(password), context, {
    via: 'reauthenticate',
    detail: 'The password is incorrect',
    secondFactorFollows: factor !== undefined,
  });
  const amr = ['pwd'];
  if (factor)
    amr.push(await checkSecondFactor(services, user, factor, `session:${auth.sessionUuid}`, context, 'reauthenticate'));
  const now = services.clock.now();
  await services.db.transaction().execute(async (trx) => {
    await trx
      .updateTable('sessions')
      .set({ auth_time: now, amr: amr.join(',') })
      .where('id', '=', auth.sessionId)
      .execute();
    await recordAudit(
      trx,
      { action: 'reauthenticated', userId: user.id, details: { session_uuid: auth.sessionUuid, amr } },
      context,
    );
  });
  const until = new Date(now.getTime() + services.config.reauthenticationWindowSeconds * 1000);
  return { auth_time: now.toISOString(), expires_at: until.toISOString() };
}

/** `POST /admin/users/{uuid}/mfa/reset`, `gatehouse users mfa-reset`: false when none was on. */
export async function resetMfaAsAdmin(
  services: Services,
  target: FactorUser,
  actor: { userId: number | null; via: 'api' | 'cli' | 'host' },
  context: RequestContext,
): Promise<boolean> {
  return removeSecondFactor(services, target, context, {
    action: 'mfa_reset_by_admin',
    details: { by_user_id: actor.userId, via: actor.via },
  });
}
