import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { isLinkTokenShaped } from '../domain/identifiers.ts';
import { normalizePassword } from '../domain/password-policy.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { publicLink, queueMail } from '../infra/mail.ts';
import { invalidToken, requireEmail } from '../infra/mailed-links.ts';
import { hasTotp } from '../infra/mfa.ts';
import { newOneTimeToken } from '../infra/one-time-tokens.ts';
import { type AuthContext, revokeUserSessions } from '../infra/sessions.ts';
import { sha256Hex } from '../infra/sha256.ts';
import { assertRecentlyAuthenticated } from './mfa.ts';
import { reauthenticate } from './reauthenticate.ts';

/** The confirmation link, mailed to the new address, works this long. */
const CONFIRM_TTL_MS = 24 * 3600_000;
/** The revert link, mailed to the old address once the change is made, works this long. */
const REVERT_TTL_MS = 7 * 24 * 3600_000;

/** Where the mailed links lead, under PUBLIC_URL: pages that ask for one click before they act. */
const CONFIRM_PAGE = 'account/email/confirm';
const REVERT_PAGE = 'account/email/revert';

/** The same words whether the new address is free or another account's: the answer reveals nothing. */
export const EMAIL_CHANGE_REQUESTED_MESSAGE =
  'A confirmation link was sent to the new address. Your account keeps its current address until the link is followed.';

export interface EmailChangeInput {
  new_email: string;
  password?: string | undefined;
}

/** The two uniqueness constraints a change can run into: another account took the address meanwhile. */
function takenMeanwhile(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, constraint } = error as { code?: unknown; constraint?: unknown };
  return code === '23505' && constraint === 'users_email_key';
}

async function emailTakenOnConflict<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (takenMeanwhile(error)) throw new AppError('EMAIL_TAKEN');
    throw error;
  }
}

/**
 * The signed-in user asks to move the account to another address. Step-up
 * first: the password (checked as a login attempt of this session, see
 * `reauthenticate`), and with a second factor on, or for an account without
 * a password (made by a provider's sign-in), the recent-authentication window.
 * Then a single-use link is mailed to the new address; nothing changes until
 * it is followed. When another account has the new address, that address is
 * told instead and the answer is the same: the route reveals nothing.
 */
export async function requestEmailChange(
  services: Services,
  auth: AuthContext,
  input: EmailChangeInput,
  context: RequestContext,
): Promise<{ message: string }> {
  const newEmail = requireEmail(input.new_email, 'new_email');
  const user = await services.db
    .selectFrom('users')
    .select(['id', 'email', 'username', 'first_name', 'language_code', 'password_hash', 'has_password', 'is_active'])
    .where('id', '=', auth.userId)
    .executeTakeFirst();
  if (!user) throw new AppError('TOKEN_INVALID', { detail: 'The account no longer exists' });
  if (!user.is_active) throw new AppError('ACCOUNT_DISABLED');
  if (newEmail === user.email) {
    throw new AppError('EMAIL_UNCHANGED', { detail: 'The new address is the one the account already has' });
  }
  // With a second factor on, or with no password to ask for, the session must have proved itself recently.
  if (!user.has_password || (await hasTotp(services.db, user.id))) await assertRecentlyAuthenticated(services, auth);
  if (user.has_password) {
    if (typeof input.password !== 'string' || input.password === '') {
      throw new AppError('VALIDATION_ERROR', {
        detail: 'One or more fields are invalid',
        errors: [{ field: 'password', message: 'Your current password is required', code: 'required' }],
      });
    }
    await reauthenticate(services, auth, user, normalizePassword(input.password), context, {
      via: 'change_email',
      detail: 'The password is incorrect',
    });
  }

  const now = services.clock.now();
  const base = services.config.publicUrl;
  await services.db.transaction().execute(async (trx) => {
    const owner = await trx
      .selectFrom('users')
      .select(['id', 'username', 'first_name', 'language_code'])
      .where('email', '=', newEmail)
      .executeTakeFirst();
    if (owner) {
      await queueMail(trx, {
        to: newEmail,
        template: 'email_change_taken',
        languageCode: owner.language_code,
        data: {
          name: owner.first_name ?? owner.username,
          loginLink: publicLink(base, 'login'),
          resetLink: publicLink(base, 'forgot-password'),
        },
      });
      await recordAudit(
        trx,
        { action: 'email_change_requested', userId: user.id, details: { new_email: newEmail, taken: true } },
        context,
      );
      return;
    }
    // A newer request replaces the older ones: only the last link works.
    await cancelPending(trx, user.id, now);
    const { token, hash } = newOneTimeToken();
    await trx
      .insertInto('email_changes')
      .values({
        user_id: user.id,
        old_email: user.email,
        new_email: newEmail,
        confirm_token_hash: hash,
        confirm_expires_at: new Date(now.getTime() + CONFIRM_TTL_MS),
        created_at: now,
      })
      .execute();
    await queueMail(trx, {
      to: newEmail,
      template: 'email_change_confirm',
      languageCode: user.language_code,
      data: { name: user.first_name ?? user.username, newEmail, link: publicLink(base, CONFIRM_PAGE, { token }) },
    });
    await recordAudit(
      trx,
      { action: 'email_change_requested', userId: user.id, details: { new_email: newEmail, taken: false } },
      context,
    );
  });
  services.outbox.kick();
  return { message: EMAIL_CHANGE_REQUESTED_MESSAGE };
}

/** Changes not yet confirmed are voided. */
async function cancelPending(db: Kysely<Database>, userId: number, now: Date): Promise<void> {
  await db
    .updateTable('email_changes')
    .set({ cancelled_at: now })
    .where('user_id', '=', userId)
    .where('confirmed_at', 'is', null)
    .where('cancelled_at', 'is', null)
    .execute();
}

/**
 * Links mailed to the address the account leaves die with it: e-mail
 * sign-ins are voided here (verification and reset links are bound to their
 * address and die by themselves).
 */
async function voidSignInLinks(db: Kysely<Database>, userId: number, now: Date): Promise<void> {
  await db
    .updateTable('email_sign_ins')
    .set({ used_at: now })
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .execute();
}

/**
 * Follows the link mailed to the new address: the account takes it, verified
 * (the link proved it), and the old address is mailed a notice with a link
 * that undoes the change for 7 days. The token is spent by one UPDATE, so of
 * two concurrent confirmations exactly one passes; when another account took
 * the address meanwhile, `409 EMAIL_TAKEN` (and the token stays unspent).
 */
export async function confirmEmailChange(
  services: Services,
  token: string,
  context: RequestContext,
): Promise<{ email: string; email_verified: true }> {
  if (!isLinkTokenShaped(token)) throw invalidToken();
  const now = services.clock.now();
  const base = services.config.publicUrl;
  const email = await emailTakenOnConflict(
    services.db.transaction().execute(async (trx) => {
      const revert = newOneTimeToken();
      const change = await trx
        .updateTable('email_changes')
        .set({
          confirmed_at: now,
          revert_token_hash: revert.hash,
          revert_expires_at: new Date(now.getTime() + REVERT_TTL_MS),
        })
        .where('confirm_token_hash', '=', sha256Hex(token))
        .where('confirmed_at', 'is', null)
        .where('cancelled_at', 'is', null)
        .where('confirm_expires_at', '>', now)
        .returning(['id', 'user_id', 'old_email', 'new_email'])
        .executeTakeFirst();
      if (!change) throw invalidToken();
      const taken = await trx
        .selectFrom('users')
        .select('id')
        .where('email', '=', change.new_email)
        .where('id', '!=', change.user_id)
        .executeTakeFirst();
      if (taken) throw new AppError('EMAIL_TAKEN');
      const user = await trx
        .updateTable('users')
        .set({ email: change.new_email, email_verified_at: now, updated_at: now })
        .where('id', '=', change.user_id)
        // The account moved to another address meanwhile (this link was for the one it left), or was disabled.
        .where('email', '=', change.old_email)
        .where('is_active', '=', true)
        .returning(['id', 'username', 'first_name', 'language_code'])
        .executeTakeFirst();
      if (!user) throw invalidToken();
      await voidSignInLinks(trx, user.id, now);
      await queueMail(trx, {
        to: change.old_email,
        template: 'email_change_notice',
        languageCode: user.language_code,
        data: {
          name: user.first_name ?? user.username,
          newEmail: change.new_email,
          link: publicLink(base, REVERT_PAGE, { token: revert.token }),
          resetLink: publicLink(base, 'forgot-password'),
        },
      });
      await recordAudit(
        trx,
        {
          action: 'email_changed',
          userId: user.id,
          details: { old_email: change.old_email, new_email: change.new_email },
        },
        context,
      );
      return change.new_email;
    }),
  );
  services.outbox.kick();
  return { email, email_verified: true };
}

/**
 * Follows the link mailed to the old address: the account gets it back
 * (verified), every session is signed out, and every other change of the
 * account, pending or confirmed, is voided, so that whoever made the change
 * cannot undo the undo. No bearer token: the owner may have lost access.
 */
export async function revertEmailChange(
  services: Services,
  token: string,
  context: RequestContext,
): Promise<{ email: string; email_verified: true; sessions_revoked: number }> {
  if (!isLinkTokenShaped(token)) throw invalidToken();
  const now = services.clock.now();
  return emailTakenOnConflict(
    services.db.transaction().execute(async (trx) => {
      const change = await trx
        .updateTable('email_changes')
        .set({ reverted_at: now })
        .where('revert_token_hash', '=', sha256Hex(token))
        .where('reverted_at', 'is', null)
        .where('cancelled_at', 'is', null)
        .where('revert_expires_at', '>', now)
        .returning(['id', 'user_id', 'old_email', 'new_email'])
        .executeTakeFirst();
      if (!change) throw invalidToken();
      const before = await trx
        .selectFrom('users')
        .select('email')
        .where('id', '=', change.user_id)
        .forUpdate()
        .executeTakeFirst();
      if (!before) throw invalidToken();
      const taken = await trx
        .selectFrom('users')
        .select('id')
        .where('email', '=', change.old_email)
        .where('id', '!=', change.user_id)
        .executeTakeFirst();
      if (taken) throw new AppError('EMAIL_TAKEN');
      await trx
        .updateTable('users')
        .set({ email: change.old_email, email_verified_at: now, updated_at: now })
        .where('id', '=', change.user_id)
        .execute();
      await trx
        .updateTable('email_changes')
        .set({ cancelled_at: now })
        .where('user_id', '=', change.user_id)
        .where('id', '!=', change.id)
        .where('reverted_at', 'is', null)
        .where('cancelled_at', 'is', null)
        .execute();
      await voidSignInLinks(trx, change.user_id, now);
      const revoked = await revokeUserSessions(services, change.user_id, { reason: 'email_change_reverted' }, trx);
      await recordAudit(
        trx,
        {
          action: 'email_change_reverted',
          userId: change.user_id,
          details: {
            restored_email: change.old_email,
            replaced_email: before.email,
            sessions_revoked: revoked.length,
          },
        },
        context,
      );
      return { email: change.old_email, email_verified: true as const, sessions_revoked: revoked.length };
    }),
  );
}

/** Does a mailed link still work? Looks without spending, for the page that asks before it acts. */
export async function isEmailChangeLinkLive(
  services: Services,
  kind: 'confirm' | 'revert',
  token: unknown,
): Promise<boolean> {
  if (!isLinkTokenShaped(token)) return false;
  const now = services.clock.now();
  const hash = sha256Hex(token);
  const query = services.db.selectFrom('email_changes').select('id').where('cancelled_at', 'is', null);
  const row =
    kind === 'confirm'
      ? await query
          .where('confirm_token_hash', '=', hash)
          .where('confirmed_at', 'is', null)
          .where('confirm_expires_at', '>', now)
          .executeTakeFirst()
      : await query
          .where('revert_token_hash', '=', hash)
          .where('reverted_at', 'is', null)
          .where('revert_expires_at', '>', now)
          .executeTakeFirst();
  return row !== undefined;
}

/** Does the account page ask for the password to change the address? (Not for an account without one.) */
export async function emailChangeNeedsPassword(services: Services, userId: number): Promise<boolean> {
  const row = await services.db.selectFrom('users').select('has_password').where('id', '=', userId).executeTakeFirst();
  return row?.has_password ?? true;
}
