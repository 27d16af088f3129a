import { AppError } from '../domain/errors.ts';
import type { RequestContext } from '../domain/request-context.ts';
import type { Services } from '../infra/container.ts';
import type { LockoutSource } from '../infra/lockout.ts';
import type { SessionKind } from '../infra/sessions.ts';
import { sha256Hex } from '../infra/sha256.ts';
import { type LoggedIn, recordLoginSuccess } from './login.ts';
import { checkSecondFactor, parseFactor, type SecondFactor } from './mfa.ts';
import { checkPasskeySecondStep, startPasskeySecondStep } from './passkeys.ts';

export interface MfaLoginInput {
  mfa_token?: unknown;
  code?: unknown;
  backup_code?: unknown;
  /** A passkey's assertion for the options of POST /login/mfa/webauthn-options. */
  webauthn_response?: unknown;
}

const TOKEN_MAX = 128;

function tokenInvalid(): AppError {
  return new AppError('TOKEN_INVALID', { detail: 'The mfa_token is unknown, used or expired; log in again' });
}

/** `{mfa_token, code}`, `{mfa_token, backup_code}` or `{mfa_token, webauthn_response}`: exactly one, each well-formed, else 422. */
function validate(input: MfaLoginInput): { token: string; factor: SecondFactor | { kind: 'webauthn' } } {
  const token = input.mfa_token;
  if (token === undefined || token === null || token === '') {
    throw new AppError('VALIDATION_ERROR', {
      detail: 'One or more fields are invalid',
      errors: [{ field: 'mfa_token', message: 'Field is required', code: 'required' }],
    });
  }
  if (typeof token !== 'string' || token.length > TOKEN_MAX) {
    throw new AppError('VALIDATION_ERROR', {
      detail: 'One or more fields are invalid',
      errors: [{ field: 'mfa_token', message: 'Not a valid mfa_token', code: 'invalid_format' }],
    });
  }
  const hasCode = input.code !== undefined && input.code !== null && input.code !== '';
  const hasBackup = input.backup_code !== undefined && input.backup_code !== null && input.backup_code !== '';
  if (input.webauthn_response !== undefined && input.webauthn_response !== null) {
    if (hasCode || hasBackup) {
      throw new AppError('VALIDATION_ERROR', {
        detail: 'One or more fields are invalid',
        errors: [
          {
            field: 'webauthn_response',
            message: 'Send one of code, backup_code, webauthn_response',
            code: 'not_allowed',
          },
        ],
      });
    }
    return { token, factor: { kind: 'webauthn' } };
  }
  if (hasCode && hasBackup) {
    throw new AppError('VALIDATION_ERROR', {
      detail: 'One or more fields are invalid',
      errors: [{ field: 'backup_code', message: 'Send either code or backup_code, not both', code: 'not_allowed' }],
    });
  }
  const factor = hasBackup
    ? parseFactor(input.backup_code, 'backup_code', 'backup_code')
    : parseFactor(input.code, 'code');
  return { token, factor };
}

/**
 * The second step of a login: the `mfa_token` of a password that was right,
 * and a code. Only here does a session start for an account with a second
 * factor. A wrong code is 401 INVALID_MFA_CODE and counts toward the
 * account's lockout from the login's own source; the token stays good for
 * another try until it expires. A spent, expired or unknown token is
 * 401 TOKEN_INVALID. The token is spent in the same statement that checks
 * it is unspent, so of two requests with one token at most one signs in.
 */
export async function completeMfaLogin(
  services: Services,
  input: MfaLoginInput,
  context: RequestContext,
  expectedKind?: SessionKind,
): Promise<LoggedIn> {
  const { token, factor } = validate(input);
  const tokenHash = sha256Hex(token);
  const now = services.clock.now();
  const challenge = await services.db
    .selectFrom('mfa_challenges')
    .innerJoin('users', 'users.id', 'mfa_challenges.user_id')
    .select([
      'mfa_challenges.id as challenge_id',
      'mfa_challenges.identifier',
      'mfa_challenges.source',
      'mfa_challenges.kind',
      'mfa_challenges.first_factor',
    ])
    .selectAll('users')
    .where('mfa_challenges.token_hash', '=', tokenHash)
    .where('mfa_challenges.used_at', 'is', null)
    .where('mfa_challenges.expires_at', '>', now)
    .executeTakeFirst();
  if (!challenge || (expectedKind !== undefined && challenge.kind !== expectedKind)) throw tokenInvalid();
  const { challenge_id: challengeId, identifier, source, kind, first_factor: firstFactor, ...user } = challenge;
  // The account may have been disabled meanwhile.
  if (!user.is_active) throw new AppError('ACCOUNT_DISABLED');

  const method =
    factor.kind === 'webauthn'
      ? await checkPasskeySecondStep(services, user, challengeId, input.webauthn_response, identifier, context)
      : await checkSecondFactor(services, user, factor, source as LockoutSource, context, 'login', identifier);
  const spent = await services.db
    .updateTable('mfa_challenges')
    .set({ used_at: services.clock.now() })
    .where('id', '=', challengeId)
    .where('used_at', 'is', null)
    .where('expires_at', '>', services.clock.now())
    .returning('id')
    .executeTakeFirst();
  if (!spent) throw tokenInvalid();
  const issued = await recordLoginSuccess(services, identifier, user, context, {
    kind: kind as SessionKind,
    amr: [firstFactor, method],
    hashUpgraded: false,
    ...(firstFactor === 'email'
      ? { method: 'email' as const }
      : firstFactor === 'fed'
        ? { method: 'sso' as const }
        : method === 'webauthn'
          ? { method: 'webauthn' as const }
          : {}),
  });
  services.metrics.logins.inc({ outcome: 'success' });
  return { ...issued, userId: user.id };
}

/**
 * `POST /login/mfa/webauthn-options`: passkey request options for the user an
 * unspent `mfa_token` names; the challenge is bound to that token.
 */
export async function mfaWebauthnOptions(services: Services, input: { mfa_token?: unknown }) {
  const { token } = validate({ mfa_token: input.mfa_token, webauthn_response: {} });
  const challenge = await services.db
    .selectFrom('mfa_challenges')
    .select(['id', 'user_id'])
    .where('token_hash', '=', sha256Hex(token))
    .where('used_at', 'is', null)
    .where('expires_at', '>', services.clock.now())
    .executeTakeFirst();
  if (!challenge) throw tokenInvalid();
  return startPasskeySecondStep(services, { id: challenge.id, userId: challenge.user_id });
}
