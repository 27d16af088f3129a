import type { User } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import type { RequestContext } from '../domain/request-context.ts';
import type { Services } from '../infra/container.ts';
import { lockoutSubject, type Reservation } from '../infra/lockout.ts';
import type { AuthContext } from '../infra/sessions.ts';
import { recordLoginFailure } from './login.ts';

/** What the password is asked for, as the attempt's audit row says (`details.via`). */
type Reauthentication = 'change_password' | 'delete_account' | 'disable_mfa' | 'reauthenticate' | 'change_email';

/**
 * Checks the password of a signed-in user before a change that demands it.
 * Every such check is a login attempt: it is counted by the account's
 * lockout with the caller's session as its source (`session:<uuid>`), so a
 * stolen access token cannot guess past LOCKOUT_THRESHOLD, while strangers'
 * failures never block the owner's own session; a wrong or refused attempt
 * is recorded in `login_attempts` and the audit log like a failed login.
 * A wrong password is `401 INVALID_CREDENTIALS` with `detail`.
 */
export async function reauthenticate(
  services: Services,
  auth: AuthContext,
  user: Pick<User, 'id' | 'username' | 'password_hash'>,
  password: string,
  context: RequestContext,
  purpose: { via: Reauthentication; detail: string; secondFactorFollows?: boolean },
): Promise<void> {
  services.hashPool.assertCapacity();
  let reservation: Reservation;
  try {
    reservation = await services.lockout.reserve(lockoutSubject(user, user.username), `session:${auth.sessionUuid}`);
  } catch (error) {
    if (error instanceof AppError && error.code === 'ACCOUNT_LOCKED') {
      await recordLoginFailure(services, user.username, user, 'account_locked', context, purpose.via);
    }
    throw error;
  }
  let ok: boolean;
  try {
    ({ ok } = await services.hasher.verify(user.password_hash, password));
  } catch (error) {
    await services.lockout.cancelled(reservation);
    throw error;
  }
  if (!ok) {
    await recordLoginFailure(services, user.username, user, 'invalid_password', context, purpose.via);
    await services.lockout.failed(reservation, { userId: user.id, context });
    throw new AppError('INVALID_CREDENTIALS', { detail: purpose.detail });
  }
  // With a code still to check, the password's reservation is given back rather than the count reset:
  // a right password must not clear the wrong codes counted against this session.
  if (purpose.secondFactorFollows) await services.lockout.cancelled(reservation);
  else await services.lockout.succeeded(reservation);
}
