import type { Kysely } from 'kysely';
import { executePrepared } from '../db/prepared.ts';
import type { Database, User } from '../db/schema.ts';
import { isEmailIdentifier, normalizeIdentifier } from '../domain/identifiers.ts';

/**
 * The user a person means by a username or e-mail address, as typed (login,
 * the CLI, the admin unlock). Usernames cannot hold "@", so the identifier
 * says which column to look in: one indexed equality, never an OR.
 */
export async function findUserByIdentifier(db: Kysely<Database>, typed: string): Promise<User | undefined> {
  const identifier = normalizeIdentifier(typed);
  const column = isEmailIdentifier(identifier) ? 'email' : 'username';
  const [user] = await executePrepared(db, db.selectFrom('users').selectAll().where(column, '=', identifier));
  return user;
}

/**
 * The user a password login names, and whether a confirmed authenticator
 * guards the account: one round trip for what a login reads before it writes.
 */
export async function findLoginUser(
  db: Kysely<Database>,
  typed: string,
): Promise<(User & { has_totp: boolean }) | undefined> {
  const identifier = normalizeIdentifier(typed);
  const column = isEmailIdentifier(identifier) ? 'email' : 'username';
  const [user] = await executePrepared(
    db,
    db
      .selectFrom('users')
      .selectAll('users')
      .select((eb) =>
        eb
          .exists(
            eb
              .selectFrom('mfa_totp')
              .select('mfa_totp.user_id')
              .whereRef('mfa_totp.user_id', '=', 'users.id')
              .where('mfa_totp.confirmed_at', 'is not', null),
          )
          .$castTo<boolean>()
          .as('has_totp'),
      )
      .where(`users.${column}`, '=', identifier),
  );
  return user;
}
