import { randomBytes } from 'node:crypto';
import type { ExpressionBuilder, Kysely } from 'kysely';
import type { Database, OneTimeTokenPurpose } from '../db/schema.ts';
import { isLinkTokenShaped } from '../domain/identifiers.ts';
import { sha256Hex } from './sha256.ts';

export const ONE_TIME_TOKEN_TTL_SECONDS: Record<OneTimeTokenPurpose, number> = {
  verify_email: 24 * 3600,
  reset_password: 3600,
  invitation: 7 * 24 * 3600,
};

/** 256 random bits for the link; only their SHA-256 is stored. */
export function newOneTimeToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: sha256Hex(token) };
}

export interface IssueTokenInput {
  purpose: OneTimeTokenPurpose;
  userId?: number | null;
  invitationId?: number | null;
  email?: string | null;
  now: Date;
  /** Instead of the purpose's own lifetime (e.g. the set-password link of an account an administrator made). */
  ttlSeconds?: number;
}

export async function issueOneTimeToken(db: Kysely<Database>, input: IssueTokenInput): Promise<string> {
  const { token, hash } = newOneTimeToken();
  await db
    .insertInto('one_time_tokens')
    .values({
      purpose: input.purpose,
      token_hash: hash,
      user_id: input.userId ?? null,
      invitation_id: input.invitationId ?? null,
      email: input.email ?? null,
      expires_at: new Date(
        input.now.getTime() + (input.ttlSeconds ?? ONE_TIME_TOKEN_TTL_SECONDS[input.purpose]) * 1000,
      ),
    })
    .execute();
  return token;
}

export interface LiveToken {
  id: number;
  userId: number | null;
  invitationId: number | null;
  email: string | null;
}

const liveTokenColumns = ['id', 'user_id', 'invitation_id', 'email'] as const;

function toLiveToken(row: {
  id: number;
  user_id: number | null;
  invitation_id: number | null;
  email: string | null;
}): LiveToken {
  return { id: row.id, userId: row.user_id, invitationId: row.invitation_id, email: row.email };
}

/** The token is this one, of this purpose, unused and unexpired. */
function isLive(purpose: OneTimeTokenPurpose, token: string, now: Date) {
  return (eb: ExpressionBuilder<Database, 'one_time_tokens'>) =>
    eb.and([
      eb('token_hash', '=', sha256Hex(token)),
      eb('purpose', '=', purpose),
      eb('used_at', 'is', null),
      eb('expires_at', '>', now),
    ]);
}

/** A token that is known, unused and unexpired, without spending it (to check a form before the real work). */
export async function findLiveToken(
  db: Kysely<Database>,
  purpose: OneTimeTokenPurpose,
  token: string,
  now: Date,
): Promise<LiveToken | undefined> {
  const row = await db
    .selectFrom('one_time_tokens')
    .select(liveTokenColumns)
    .where(isLive(purpose, token, now))
    .executeTakeFirst();
  return row && toLiveToken(row);
}

/**
 * Spends a token: one UPDATE whose WHERE admits only an unused, unexpired
 * token, so of two concurrent requests exactly one gets it.
 */
export async function spendOneTimeToken(
  db: Kysely<Database>,
  purpose: OneTimeTokenPurpose,
  token: string,
  now: Date,
): Promise<LiveToken | undefined> {
  const row = await db
    .updateTable('one_time_tokens')
    .set({ used_at: now })
    .where(isLive(purpose, token, now))
    .returning(liveTokenColumns)
    .executeTakeFirst();
  return row && toLiveToken(row);
}

/** Voids a user's unused tokens of one purpose: a newer link replaces the older ones. */
export async function voidOneTimeTokens(
  db: Kysely<Database>,
  purpose: OneTimeTokenPurpose,
  userId: number,
  now: Date,
): Promise<void> {
  await db
    .updateTable('one_time_tokens')
    .set({ used_at: now })
    .where('user_id', '=', userId)
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .execute();
}

/** How many tokens of one purpose a user was sent since `since`: a bound on mail to one inbox. */
export async function countRecentTokens(
  db: Kysely<Database>,
  purpose: OneTimeTokenPurpose,
  userId: number,
  since: Date,
): Promise<number> {
  const row = await db
    .selectFrom('one_time_tokens')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('user_id', '=', userId)
    .where('purpose', '=', purpose)
    .where('created_at', '>', since)
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

/** Does a mailed link still work? Looks without spending, for a page that asks before it acts. */
export async function isLiveLink(
  db: Kysely<Database>,
  purpose: OneTimeTokenPurpose,
  token: unknown,
  now: Date,
): Promise<boolean> {
  return isLinkTokenShaped(token) && (await findLiveToken(db, purpose, token, now)) !== undefined;
}
