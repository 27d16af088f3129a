import { sql } from 'kysely';
import { checkEmail, checkStorable } from '../domain/account-rules.ts';
import { AppError } from '../errors.ts';
import { recordAudit } from './audit.ts';
import type { Services } from './container.ts';
import { publicLink, queueMail } from './mail.ts';
import { countRecentTokens, issueOneTimeToken, spendOneTimeToken, voidOneTimeTokens } from './one-time-tokens.ts';
import type { RequestContext } from './request-context.ts';

/** The same words whether or not the address has an account: the answer reveals nothing. */
export const RESEND_VERIFICATION_MESSAGE =
  'If an account with this email address is awaiting verification, a new verification link has been sent.';

/** Links of one purpose mailed to one account per hour; further requests are answered alike and mail nothing. */
export const MAILS_PER_HOUR = 5;

/** The email address a one-time-token flow was given: valid-looking, else 422 naming the field. */
export function requireEmail(raw: string, field = 'email'): string {
  const storable = checkStorable(raw, field);
  const check = storable ? { ok: false as const, error: storable } : checkEmail(raw, field);
  if (!check.ok) {
    throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors: [check.error] });
  }
  return check.value;
}

export const invalidToken = () =>
  new AppError('TOKEN_INVALID_OR_EXPIRED', {
    detail: 'This link is invalid, has already been used or has expired. Request a new one.',
  });

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
    const user = await trx
      .selectFrom('users')
      .select(['id', 'email', 'username', 'first_name', 'language_code', 'email_verified_at', 'is_active'])
      .where('email', '=', email)
      .executeTakeFirst();
    if (!user || user.email_verified_at !== null || !user.is_active) return false;
    const since = new Date(now.getTime() - 3600_000);
    if ((await countRecentTokens(trx, 'verify_email', user.id, since)) >= MAILS_PER_HOUR) {
      services.log.info({ user_id: user.id }, 'verification mail not sent: hourly limit for this address reached');
      return false;
    }
    await voidOneTimeTokens(trx, 'verify_email', user.id, now);
    const token = await issueOneTimeToken(trx, { purpose: 'verify_email', userId: user.id, email: user.email, now });
    await queueMail(trx, {
      to: user.email,
      template: 'verify_email',
      languageCode: user.language_code,
      data: {
        name: user.first_name ?? user.username,
        link: publicLink(services.config.publicUrl, 'verify-email', { token }),
      },
    });
    return true;
  });
  if (queued) services.outbox.kick();
  return { message: RESEND_VERIFICATION_MESSAGE };
}
