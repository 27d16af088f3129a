import type { Kysely } from 'kysely';
import { executePrepared } from '../db/prepared.ts';
import type { Database, User } from '../db/schema.ts';
import { isEmailIdentifier, normalizeIdentifier } from '../domain/identifiers.ts';

/**
 * The user a person means by a username or e-mail address, as typed (the
 * CLI, the admin unlock, passkey options; a password login reads it with more
 * in `readLogin`). Usernames cannot hold "@", so the identifier says which
 * column to look in: one indexed equality, never an OR.
 */
export async function findUserByIdentifier(db: Kysely<Database>, typed: string): Promise<User | undefined> {
  const identifier = normalizeIdentifier(typed);
  const column = isEmailIdentifier(identifier) ? 'email' : 'username';
  const [user] = await executePrepared(db, db.selectFrom('users').selectAll().where(column, '=', identifier));
  return user;
}
