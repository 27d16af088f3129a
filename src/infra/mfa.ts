import { type Expression, type Kysely, type RawBuilder, sql } from 'kysely';
import { executePrepared } from '../db/prepared.ts';
import type { Database } from '../db/schema.ts';

/** What `GET /me` says of the second factor. */
export interface MfaStatus {
  totp: boolean;
  backup_codes_left: number;
}

/** Whether an authenticator app is on (confirmed), and how many backup codes are left unused. */
export async function mfaStatus(db: Kysely<Database>, userId: number): Promise<MfaStatus> {
  const [totp, codes] = await Promise.all([
    db
      .selectFrom('mfa_totp')
      .select('user_id')
      .where('user_id', '=', userId)
      .where('confirmed_at', 'is not', null)
      .executeTakeFirst(),
    db
      .selectFrom('mfa_backup_codes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('user_id', '=', userId)
      .executeTakeFirstOrThrow(),
  ]);
  return { totp: totp !== undefined, backup_codes_left: totp ? Number(codes.n) : 0 };
}

/** Whether an authenticator app is on (step-up checks, e-mail and federated sign-in); a prepared statement. */
export async function hasTotp(db: Kysely<Database>, userId: number): Promise<boolean> {
  const [row] = await executePrepared(db, db.selectNoFrom(totpConfirmed(sql.val(userId)).as('on')));
  return row?.on === true;
}

/** Whether the user `userId` names has a confirmed authenticator app, as an expression any statement can select. */
export function totpConfirmed(userId: Expression<number>): RawBuilder<boolean> {
  return sql<boolean>`exists (select 1 from mfa_totp where mfa_totp.user_id = ${userId} and mfa_totp.confirmed_at is not null)`;
}
