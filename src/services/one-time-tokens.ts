import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database, OneTimeTokenPurpose } from '../db/schema.ts';

export const ONE_TIME_TOKEN_TTL_SECONDS: Record<OneTimeTokenPurpose, number> = {
  verify_email: 24 * 3600,
  reset_password: 3600,
  invitation: 7 * 24 * 3600,
};

/** 256 random bits for the link; only their SHA-256 is stored. */
export function newOneTimeToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hashToken(token) };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export interface IssueTokenInput {
  purpose: OneTimeTokenPurpose;
  userId?: number | null;
  invitationId?: number | null;
  email?: string | null;
  now: Date;
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
      expires_at: new Date(input.now.getTime() + ONE_TIME_TOKEN_TTL_SECONDS[input.purpose] * 1000),
    })
    .execute();
  return token;
}
