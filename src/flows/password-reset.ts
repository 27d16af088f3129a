import { sql } from 'kysely';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { unlockAccount } from '../infra/lockout.ts';
import { invalidToken, queueLinkMail, requireEmail } from '../infra/mailed-links.ts';
import { findLiveToken, isLiveLink, spendOneTimeToken, voidOneTimeTokens } from '../infra/one-time-tokens.ts';
import { revokeUserSessions } from '../infra/sessions.ts';
import {
  assertNotRecentlyUsed,
  checkNewPassword,
  queuePasswordChangedMail,
  recordPasswordHistory,
} from './password-change.ts';
import { assertAcceptablePassword } from './register.ts';

/** The same words whether or not the address has an account: the answer reveals nothing. */
export const FORGOT_PASSWORD_MESSAGE =
  'If an account exists for this email address, a link to reset its password has been sent.';

export interface ResetPasswordInput {
  token: string;
  new_password: string;
  confirm_password: string;
}

/**
 * Queues a reset link for an active account, voiding the older links. An
 * unknown address takes the same path (one lookup, one transaction with its
 * audit row) and mails nothing; nothing is sent inline, so neither answer
 * waits on SMTP.
 */
export async function requestPasswordReset(
  services: Services,
  rawEmail: string,
  context: RequestContext,
): Promise<{ message: string }> {
  const email = requireEmail(rawEmail);
  const now = services.clock.now();
  const queued = await services.db.transaction().execute(async (trx) => {
    const { mailed, account } = await queueLinkMail(services, trx, {
      purpose: 'reset_password',
      path: 'reset-password',
      email,
      eligible: (user) => user.is_active,
      now,
    });
    await recordAudit(
      trx,
      { action: 'password_reset_request', userId: account?.id ?? null, details: { email, mailed } },
      context,
    );
    return mailed;
  });
  if (queued) services.outbox.kick();
  return { message: FORGOT_PASSWORD_MESSAGE };
}

/**
 * Sets a new password with a reset token. The token is checked before the
 * expensive work and spent inside the transaction, so two requests racing
 * with one token cannot both succeed. A reset revokes every session, clears
 * the lockout of the account (every source), and marks the address verified
 * (following the mailed link proved it).
 */
export async function resetPassword(
  services: Services,
  input: ResetPasswordInput,
  context: RequestContext,
): Promise<void> {
  const password = checkNewPassword(
    { token: input.token, new_password: input.new_password },
    input.new_password,
    input.confirm_password,
  );
  const now = services.clock.now();
  const live = await findLiveToken(services.db, 'reset_password', input.token, now);
  const user =
    live?.userId != null
      ? await services.db
          .selectFrom('users')
          .select(['id', 'email', 'username', 'first_name', 'language_code', 'password_hash', 'is_active'])
          .where('id', '=', live.userId)
          .executeTakeFirst()
      : undefined;
  // Bound to the address it was mailed to, and to an account that may still sign in.
  if (!live || !user || user.email !== live.email || !user.is_active) throw invalidToken();

  await assertAcceptablePassword(services, password, { username: user.username, email: user.email });
  await assertNotRecentlyUsed(services, user, password);
  const passwordHash = await services.hasher.hash(password);

  await services.db.transaction().execute(async (trx) => {
    const spent = await spendOneTimeToken(trx, 'reset_password', input.token, now);
    if (!spent || spent.userId !== user.id) throw invalidToken();
    await trx
      .updateTable('users')
      .set({
        password_hash: passwordHash,
        has_password: true,
        password_changed_at: now,
        email_verified_at: sql<Date>`coalesce(email_verified_at, ${now})`,
        updated_at: now,
      })
      .where('id', '=', user.id)
      .execute();
    await recordPasswordHistory(trx, user.id, passwordHash);
    await voidOneTimeTokens(trx, 'reset_password', user.id, now);
    const revoked = await revokeUserSessions(services, user.id, { reason: 'password_reset' }, trx);
    // The reset proves who holds the address: a provider identity that never proved it (linked while it
    // was unverified at the provider) may be someone else's way in, and goes.
    const dropped = await trx
      .deleteFrom('user_identities')
      .where('user_id', '=', user.id)
      .where('email_verified', '=', false)
      .returning('provider')
      .execute();
    for (const identity of dropped) {
      await recordAudit(
        trx,
        {
          action: 'identity_unlinked',
          userId: user.id,
          details: { provider: identity.provider, reason: 'unverified_at_password_reset' },
        },
        context,
      );
    }
    await queuePasswordChangedMail(services, trx, user);
    await recordAudit(
      trx,
      { action: 'password_reset', userId: user.id, details: { sessions_revoked: revoked.length } },
      context,
    );
  });
  services.outbox.kick();
  // The lockout store is its own (Redis or PostgreSQL, outside this transaction); the reset stands either way.
  await unlockAccount(services, user, { byUserId: null, via: 'password_reset' }, context).catch((error: unknown) => {
    services.log.error({ err: { message: (error as Error).message }, user_id: user.id }, 'lockout not cleared');
  });
}

/** Does this reset link still work? (The page asks before showing its form; only the post spends it.) */
export function isResetLinkLive(services: Services, token: unknown): Promise<boolean> {
  return isLiveLink(services.db, 'reset_password', token, services.clock.now());
}
