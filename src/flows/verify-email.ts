import { sql } from 'kysely';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { invalidToken, queueLinkMail, requireEmail } from '../infra/mailed-links.ts';
import { isLiveLink, spendOneTimeToken, voidOneTimeTokens } from '../infra/one-time-tokens.ts';

/** The same words whether or not the address has an account: the answer reveals nothing. */
export const RESEND_VERIFICATION_MESSAGE =
  'If an account with this email address is awaiting verification, a new verification link has been sent.';

/**
 * Spends a verification token and marks the address verified. The token is
 * bound to the address it was mailed to: after an email change it is void.
 */
export async function verifyEmail(
  services: Services,
  token: string,
  context: RequestContext,
): Promise<{ email_verified: true }> {
  const now = services.clock.now();
  await services.db.transaction().execute(async (trx) => {
    const spent = await spendOneTimeToken(trx, 'verify_email', token, now);
    if (!spent || spent.userId === null) throw invalidToken();
    const user = await trx
      .updateTable('users')
      .set({ email_verified_at: sql<Date>`coalesce(email_verified_at, ${now})`, updated_at: now })
      .where('id', '=', spent.userId)
      .where('email', '=', spent.email ?? '')
      .returning(['id', 'email'])
      .executeTakeFirst();
    // Throwing rolls the spend back too: a token for an old address stays as dead as it was.
    if (!user) throw invalidToken();
    await voidOneTimeTokens(trx, 'verify_email', user.id, now);
    await recordAudit(trx, { action: 'email_verification', userId: user.id, details: { email: user.email } }, context);
  });
  return { email_verified: true };
}

/**
 * Mails a fresh verification link to an unverified, active account (voiding
 * the older links); for any other address it does the same lookup and mails
 * nothing. The caller answers 202 either way.
 */
export async function resendVerification(
  services: Services,
  rawEmail: string,
  _context: RequestContext,
): Promise<{ message: string }> {
  const email = requireEmail(rawEmail);
  const now = services.clock.now();
  const queued = await services.db.transaction().execute(async (trx) => {
    const { mailed } = await queueLinkMail(services, trx, {
      purpose: 'verify_email',
      path: 'verify-email',
      email,
      eligible: (user) => user.is_active && user.email_verified_at === null,
      now,
    });
    return mailed;
  });
  if (queued) services.outbox.kick();
  return { message: RESEND_VERIFICATION_MESSAGE };
}

/** Does this verification link still work? (The page asks before offering to spend it.) */
export function isVerificationLinkLive(services: Services, token: unknown): Promise<boolean> {
  return isLiveLink(services.db, 'verify_email', token, services.clock.now());
}
