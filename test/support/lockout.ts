import type { RequestContext } from '../../src/domain/request-context.ts';
import type { LockInfo, Lockout, LockoutSource } from '../../src/infra/lockout.ts';

/** One wrong password as the flows count it: reserved, then settled as a failure; the lock it set, if any. */
export async function recordFailure(
  lockout: Lockout,
  subject: string,
  source: LockoutSource = 'untrusted',
  options: { userId?: number | null; context?: RequestContext } = {},
): Promise<LockInfo | undefined> {
  return lockout.failed(await lockout.reserve(subject, source), options);
}

/** `count` wrong passwords in a row. */
export async function recordFailures(
  lockout: Lockout,
  subject: string,
  count: number,
  source: LockoutSource = 'untrusted',
): Promise<void> {
  for (let i = 0; i < count; i++) await recordFailure(lockout, subject, source);
}
