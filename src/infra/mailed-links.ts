import { type Kysely, sql } from 'kysely';
import type { Database } from '../db/schema.ts';
import { checkEmail } from '../domain/account-rules.ts';
import { AppError } from '../domain/errors.ts';
import type { Services } from './container.ts';
import { publicLink, queueMail } from './mail.ts';
import { countRecentTokens, issueOneTimeToken, voidOneTimeTokens } from './one-time-tokens.ts';

/** Links or notices of one kind mailed to one account per hour; further requests are answered alike and mail nothing. */
export const MAILS_PER_HOUR = 5;

/** The email address a link is asked for: valid-looking, else 422 naming the field. */
export function requireEmail(raw: string, field = 'email'): string {
  const check = checkEmail(raw, field);
  if (!check.ok) {
    throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors: [check.error] });
  }
  return check.value;
}

export const invalidToken = () =>
  new AppError('TOKEN_INVALID_OR_EXPIRED', {
    detail: 'This link is invalid, has already been used or has expired. Request a new one.',
  });

/** The account an address belongs to, as a mailed link needs it. */
export interface LinkAccount {
  id: number;
  email: string;
  username: string;
  first_name: string | null;
  language_code: string;
  is_active: boolean;
  email_verified_at: Date | null;
}

export interface LinkMail {
  purpose: 'verify_email' | 'reset_password';
  /** The page the link opens, under PUBLIC_URL. */
  path: string;
  /** The address as asked for (already checked by `requireEmail`). */
  email: string;
  /** May the account behind the address be mailed (active, not yet verified…)? */
  eligible: (account: LinkAccount) => boolean;
  now: Date;
}

/**
 * Looks up the account of the address, issues a link (voiding its older
 * ones) and queues its mail, in the caller's transaction. When nobody may be
 * mailed (no account, not eligible), or the hourly limit is reached, the same
 * statements run inside a savepoint that is rolled back: an address with an
 * account and one without take the same time to answer. Returns whether a
 * mail was queued, and the account found (for the caller's audit row).
 */
export async function queueLinkMail(
  services: Services,
  trx: Kysely<Database>,
  link: LinkMail,
): Promise<{ mailed: boolean; account: LinkAccount | undefined }> {
  const { purpose, now } = link;
  const account = await trx
    .selectFrom('users')
    .select(['id', 'email', 'username', 'first_name', 'language_code', 'is_active', 'email_verified_at'])
    .where('email', '=', link.email)
    .executeTakeFirst();
  const recipient = account && link.eligible(account) ? account : undefined;
  const since = new Date(now.getTime() - 3600_000);
  const recent = await countRecentTokens(trx, purpose, recipient?.id ?? 0, since);
  const send = recipient !== undefined && recent < MAILS_PER_HOUR;
  if (recipient && !send) {
    services.log.info({ user_id: recipient.id, purpose }, 'link not mailed: hourly limit for this address reached');
  }
  if (!send) await sql`savepoint decoy_link`.execute(trx);
  await voidOneTimeTokens(trx, purpose, recipient?.id ?? 0, now);
  const token = await issueOneTimeToken(trx, { purpose, userId: recipient?.id ?? null, email: link.email, now });
  await queueMail(trx, {
    to: recipient?.email ?? link.email,
    template: purpose,
    languageCode: recipient?.language_code ?? 'en',
    data: {
      name: recipient ? (recipient.first_name ?? recipient.username) : link.email,
      link: publicLink(services.config.publicUrl, link.path, { token }),
    },
  });
  if (!send) await sql`rollback to savepoint decoy_link`.execute(trx);
  return { mailed: send, account };
}
