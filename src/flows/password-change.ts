import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { checkStorable } from '../domain/account-rules.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { normalizePassword } from '../domain/password-policy.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { publicLink, queueMail } from '../infra/mail.ts';
import { hasTotp } from '../infra/mfa.ts';
import { type AuthContext, revokeUserSessions } from '../infra/sessions.ts';
import { assertRecentlyAuthenticated } from './mfa.ts';
import { reauthenticate } from './reauthenticate.ts';
import { assertAcceptablePassword } from './register.ts';

/** The current password and the ones before it, this many in all, cannot be chosen again. */
const PASSWORD_HISTORY_DEPTH = 5;

export interface ChangePasswordInput {
  current_password: string;
  new_password: string;
  confirm_password: string;
}

/** Strings PostgreSQL cannot store, then confirm_password: the checks that need no lookup. */
export function checkNewPassword(fields: Record<string, string>, newPassword: string, confirm: string): string {
  const errors = Object.entries(fields)
    .map(([field, value]) => checkStorable(value, field))
    .filter((e): e is FieldError => e !== undefined);
  if (errors.length > 0) throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  const password = normalizePassword(newPassword);
  if (normalizePassword(confirm) !== password) throw new AppError('PASSWORD_MISMATCH');
  return password;
}

/** PASSWORD_REUSED when the password matches the current hash or one of the last ones in the history. */
export async function assertNotRecentlyUsed(
  services: Services,
  user: { id: number; password_hash: string },
  password: string,
): Promise<void> {
  const history = await services.db
    .selectFrom('password_history')
    .select('password_hash')
    .where('user_id', '=', user.id)
    .orderBy('id', 'desc')
    .limit(PASSWORD_HISTORY_DEPTH)
    .execute();
  const hashes = new Set([user.password_hash, ...history.map((h) => h.password_hash)]);
  for (const hash of hashes) {
    if ((await services.hasher.verify(hash, password)).ok) {
      throw new AppError('PASSWORD_REUSED', {
        detail: `Choose a password different from your last ${PASSWORD_HISTORY_DEPTH} passwords`,
      });
    }
  }
}

/** Adds the new hash to the history and forgets the ones past the depth: old hashes are a liability. */
export async function recordPasswordHistory(db: Kysely<Database>, userId: number, passwordHash: string): Promise<void> {
  await db.insertInto('password_history').values({ user_id: userId, password_hash: passwordHash }).execute();
  const keep = db
    .selectFrom('password_history')
    .select('id')
    .where('user_id', '=', userId)
    .orderBy('id', 'desc')
    .limit(PASSWORD_HISTORY_DEPTH);
  await db.deleteFrom('password_history').where('user_id', '=', userId).where('id', 'not in', keep).execute();
}

/** Queues the "your password was changed" notice, with a way back for an owner who did not do it. */
export async function queuePasswordChangedMail(
  services: Services,
  db: Kysely<Database>,
  user: { email: string; username: string; first_name: string | null; language_code: string },
): Promise<void> {
  await queueMail(db, {
    to: user.email,
    template: 'password_changed',
    languageCode: user.language_code,
    data: { name: user.first_name ?? user.username, link: publicLink(services.config.publicUrl, 'forgot-password') },
  });
}

/**
 * The signed-in user replaces their password. The current password is checked
 * as a login attempt of this session (see `reauthenticate`): a wrong one is
 * `401 INVALID_CREDENTIALS` and counts towards the lockout, so a stolen access
 * token must not become a way to guess the password. Other sessions are
 * revoked; this one stays.
 */
export async function changePassword(
  services: Services,
  auth: AuthContext,
  input: ChangePasswordInput,
  context: RequestContext,
): Promise<void> {
  const password = checkNewPassword(
    { current_password: input.current_password, new_password: input.new_password },
    input.new_password,
    input.confirm_password,
  );
  const user = await services.db
    .selectFrom('users')
    .select(['id', 'email', 'username', 'first_name', 'language_code', 'password_hash', 'is_active'])
    .where('id', '=', auth.userId)
    .executeTakeFirst();
  if (!user) throw new AppError('TOKEN_INVALID', { detail: 'The account no longer exists' });
  if (!user.is_active) throw new AppError('ACCOUNT_DISABLED');
  // With a second factor on, the password alone is not enough: the session must have proved both recently.
  if (await hasTotp(services.db, user.id)) await assertRecentlyAuthenticated(services, auth);

  const current = normalizePassword(input.current_password);
  await reauthenticate(services, auth, user, current, context, {
    via: 'change_password',
    detail: 'The current password is incorrect',
  });
  if (password === current) {
    throw new AppError('PASSWORD_REUSED', { detail: 'The new password must differ from the current password' });
  }
  await assertAcceptablePassword(services, password, { username: user.username, email: user.email });
  await assertNotRecentlyUsed(services, user, password);
  const passwordHash = await services.hasher.hash(password);
  const now = services.clock.now();

  await services.db.transaction().execute(async (trx) => {
    const updated = await trx
      .updateTable('users')
      .set({ password_hash: passwordHash, password_changed_at: now, updated_at: now })
      .where('id', '=', user.id)
      // A concurrent change already replaced the password this request verified.
      .where('password_hash', '=', user.password_hash)
      .executeTakeFirst();
    if (updated.numUpdatedRows === 0n) {
      throw new AppError('CONFLICT', { detail: 'The password was changed meanwhile; try again' });
    }
    await recordPasswordHistory(trx, user.id, passwordHash);
    const revoked = await revokeUserSessions(
      services,
      user.id,
      { exceptSessionId: auth.sessionId, reason: 'password_change' },
      trx,
    );
    await queuePasswordChangedMail(services, trx, user);
    await recordAudit(
      trx,
      { action: 'password_change', userId: user.id, details: { sessions_revoked: revoked.length } },
      context,
    );
  });
  services.outbox.kick();
}
