import { randomUUID } from 'node:crypto';
import type { User } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { canonicalUuid, isUuid, normalizeIdentifier } from '../domain/identifiers.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { characterLength, isStorableText } from '../domain/text.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { publicLink, queueMail } from '../infra/mail.ts';
import type { AuthContext, SessionKind } from '../infra/sessions.ts';
import { findUserByIdentifier } from '../infra/users.ts';
import {
  type AuthenticationResponseJSON,
  answeredChallenge,
  authenticationOptions,
  CHALLENGE_SECONDS,
  type ChallengePurpose,
  counterWentBack,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  registrationOptions,
  spendChallenge,
  storeChallenge,
  verifyAssertion,
  verifyRegistration,
} from '../infra/webauthn.ts';
import { type LoggedIn, recordLoginFailure, recordLoginSuccess } from './login.ts';
import { assertRecentlyAuthenticated } from './mfa.ts';

/** A passkey as the API shows it. */
export interface PasskeyView {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  /** `multiDevice`: synced between the user's devices. */
  device_type: string;
  backed_up: boolean;
}

const NAME_MAX = 100;
const USERNAME_MAX = 320;

function invalid(field: string, message: string, code: string): AppError {
  return new AppError('VALIDATION_ERROR', {
    detail: 'One or more fields are invalid',
    errors: [{ field, message, code }],
  });
}

/** `name`: 1–100 characters of storable text, trimmed; `fallback` when absent. */
function passkeyName(value: unknown, fallback?: string): string {
  if (value === undefined || value === null || value === '') {
    if (fallback !== undefined) return fallback;
    throw invalid('name', 'Field is required', 'required');
  }
  if (typeof value !== 'string') throw invalid('name', 'Must be a string', 'type');
  const name = value.trim().normalize('NFC');
  if (name === '' || characterLength(name) > NAME_MAX || !isStorableText(name)) {
    throw invalid('name', `Must be 1 to ${NAME_MAX} characters of text`, 'invalid_format');
  }
  return name;
}

/** The `response` object, present and object-shaped (the route schema checked its members). */
function responseObject<T>(value: unknown, field = 'response'): T {
  if (value === undefined || value === null) throw invalid(field, 'Field is required', 'required');
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(field, 'Must be an object', 'type');
  return value as T;
}

function view(row: {
  uuid: string;
  name: string;
  created_at: Date;
  last_used_at: Date | null;
  device_type: string;
  backed_up: boolean;
}): PasskeyView {
  return {
    id: row.uuid,
    name: row.name,
    created_at: row.created_at.toISOString(),
    last_used_at: row.last_used_at?.toISOString() ?? null,
    device_type: row.device_type,
    backed_up: row.backed_up,
  };
}

async function activeUser(services: Services, auth: AuthContext): Promise<User> {
  const user = await services.db.selectFrom('users').selectAll().where('id', '=', auth.userId).executeTakeFirst();
  if (!user) throw new AppError('TOKEN_INVALID', { detail: 'The account no longer exists' });
  if (!user.is_active) throw new AppError('ACCOUNT_DISABLED');
  return user;
}

function credentialsOf(services: Services, userId: number) {
  return services.db
    .selectFrom('passkeys')
    .select(['id', 'uuid', 'credential_id', 'transports'])
    .where('user_id', '=', userId)
    .orderBy('id')
    .execute();
}

/** A refused ceremony: audited (`passkey_refused`, with why), then the error. */
async function refuse(
  services: Services,
  context: RequestContext,
  error: AppError,
  details: { stage: 'register' | 'login' | 'mfa'; reason: string; user_id?: number | null; message?: string },
): Promise<never> {
  const { user_id: userId, ...rest } = details;
  await recordAudit(services.db, { action: 'passkey_refused', userId: userId ?? null, details: rest }, context);
  throw error;
}

function challengeInvalid(): AppError {
  return new AppError('CHALLENGE_INVALID', {
    detail: `The challenge is unknown, already used or expired (each works once, for ${CHALLENGE_SECONDS / 60} minutes); ask for new options`,
  });
}

const PASSKEY_INVALID_DETAIL = 'The passkey response could not be verified for this account and challenge';

/** `POST /passkeys/register/options`: creation options for the signed-in, recently authenticated user. */
export async function startPasskeyRegistration(
  services: Services,
  auth: AuthContext,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  await assertRecentlyAuthenticated(services, auth);
  const user = await activeUser(services, auth);
  const options = await registrationOptions(services.config, user, await credentialsOf(services, user.id));
  await storeChallenge(services.db, services.clock, {
    purpose: 'register',
    challenge: options.challenge,
    userId: user.id,
  });
  return options;
}

/**
 * `POST /passkeys/register/verify`: the browser's attestation for a challenge
 * this user was given. The passkey is stored, audited and mailed about in one
 * transaction.
 */
export async function finishPasskeyRegistration(
  services: Services,
  auth: AuthContext,
  input: { response?: unknown; name?: unknown },
  context: RequestContext,
): Promise<PasskeyView> {
  const response = responseObject<RegistrationResponseJSON>(input.response);
  const user = await activeUser(services, auth);
  const name = passkeyName(input.name, `Passkey ${services.clock.now().toISOString().slice(0, 10)}`);
  const challenge = answeredChallenge(response.response?.clientDataJSON);
  if (!challenge) {
    return refuse(services, context, new AppError('PASSKEY_INVALID', { detail: PASSKEY_INVALID_DETAIL }), {
      stage: 'register',
      reason: 'unreadable_response',
      user_id: user.id,
    });
  }
  const spent = await spendChallenge(services.db, services.clock, {
    purposes: ['register'],
    challenge,
    userId: user.id,
  });
  if (!spent) {
    return refuse(services, context, challengeInvalid(), { stage: 'register', reason: 'challenge', user_id: user.id });
  }
  const verified = await verifyRegistration(services.config, response, spent.challenge);
  if (!verified.ok) {
    return refuse(services, context, new AppError('PASSKEY_INVALID', { detail: PASSKEY_INVALID_DETAIL }), {
      stage: 'register',
      reason: 'verification_failed',
      message: verified.reason,
      user_id: user.id,
    });
  }
  const { credential } = verified;
  const row = await services.db.transaction().execute(async (trx) => {
    const inserted = await trx
      .insertInto('passkeys')
      .values({ uuid: randomUUID(), user_id: user.id, name, created_at: services.clock.now(), ...credential })
      .onConflict((oc) => oc.column('credential_id').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!inserted) throw new AppError('CONFLICT', { detail: 'This passkey is already registered' });
    await recordAudit(
      trx,
      {
        action: 'passkey_added',
        userId: user.id,
        details: { passkey_uuid: inserted.uuid, name, device_type: inserted.device_type },
      },
      context,
    );
    await queueMail(trx, {
      to: user.email,
      template: 'passkey_added',
      languageCode: user.language_code,
      data: {
        name: user.first_name ?? user.username,
        passkeyName: name,
        link: publicLink(services.config.publicUrl, 'account'),
        resetLink: publicLink(services.config.publicUrl, 'forgot-password'),
      },
    });
    return inserted;
  });
  services.outbox.kick();
  return view(row);
}

/** `GET /passkeys`. */
export async function listPasskeys(services: Services, auth: AuthContext): Promise<PasskeyView[]> {
  const rows = await services.db
    .selectFrom('passkeys')
    .select(['uuid', 'name', 'created_at', 'last_used_at', 'device_type', 'backed_up'])
    .where('user_id', '=', auth.userId)
    .orderBy('id')
    .execute();
  return rows.map(view);
}

/** `PATCH /passkeys/{id}`: NOT_FOUND for a passkey that is not the caller's. */
export async function renamePasskey(
  services: Services,
  auth: AuthContext,
  id: string,
  input: { name?: unknown },
  context: RequestContext,
): Promise<PasskeyView> {
  const name = passkeyName(input.name);
  const uuid = canonicalUuid(id);
  if (!uuid) throw new AppError('NOT_FOUND', { detail: 'Passkey not found' });
  return services.db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('passkeys')
      .set({ name })
      .where('uuid', '=', uuid)
      .where('user_id', '=', auth.userId)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new AppError('NOT_FOUND', { detail: 'Passkey not found' });
    await recordAudit(
      trx,
      { action: 'passkey_renamed', userId: auth.userId, details: { passkey_uuid: uuid, name } },
      context,
    );
    return view(row);
  });
}

/**
 * `DELETE /passkeys/{id}`: refused (409) when it is the last way into the
 * account: no password and no other passkey. The user row is locked so that
 * two removals cannot together take every way in.
 */
export async function removePasskey(
  services: Services,
  auth: AuthContext,
  id: string,
  context: RequestContext,
): Promise<void> {
  const uuid = canonicalUuid(id);
  if (!uuid) throw new AppError('NOT_FOUND', { detail: 'Passkey not found' });
  await services.db.transaction().execute(async (trx) => {
    const user = await trx
      .selectFrom('users')
      .select(['id', 'password_hash'])
      .where('id', '=', auth.userId)
      .forUpdate()
      .executeTakeFirst();
    const passkeys = await trx
      .selectFrom('passkeys')
      .select(['uuid', 'name'])
      .where('user_id', '=', auth.userId)
      .execute();
    const target = passkeys.find((p) => p.uuid === uuid);
    if (!user || !target) throw new AppError('NOT_FOUND', { detail: 'Passkey not found' });
    const otherWaysIn = (user.password_hash !== '' ? 1 : 0) + passkeys.length - 1;
    if (otherWaysIn === 0) {
      throw new AppError('CONFLICT', { detail: 'This passkey is the only way into the account; add another first' });
    }
    await trx.deleteFrom('passkeys').where('uuid', '=', uuid).where('user_id', '=', auth.userId).execute();
    await recordAudit(
      trx,
      { action: 'passkey_removed', userId: auth.userId, details: { passkey_uuid: uuid, name: target.name } },
      context,
    );
  });
}

/** `POST /login/passkey/options`. */
export async function startPasskeyLogin(
  services: Services,
  input: { username?: unknown },
): Promise<PublicKeyCredentialRequestOptionsJSON & { challenge_id: string }> {
  const typed = input.username;
  if (typed !== undefined && typed !== null && typeof typed !== 'string')
    throw invalid('username', 'Must be a string', 'type');
  const identifier = typeof typed === 'string' ? normalizeIdentifier(typed) : '';
  if (identifier.length > USERNAME_MAX || !isStorableText(identifier)) {
    throw invalid('username', 'Username or email is not valid', 'invalid_format');
  }
  let purpose: ChallengePurpose = 'login';
  let userId: number | null = null;
  let options: PublicKeyCredentialRequestOptionsJSON;
  if (identifier === '') {
    options = await authenticationOptions(services.config, undefined, 'required');
  } else {
    purpose = 'login_user';
    const user = await findUserByIdentifier(services.db, identifier);
    const credentials = user ? await credentialsOf(services, user.id) : [];
    userId = user?.id ?? null;
    options = await authenticationOptions(
      services.config,
      credentials.length > 0 ? credentials : { standInFor: identifier },
      'required',
    );
  }
  const challengeId = await storeChallenge(services.db, services.clock, {
    purpose,
    challenge: options.challenge,
    userId,
  });
  return { ...options, challenge_id: challengeId };
}

type AssertingPasskey = {
  id: number;
  uuid: string;
  user_id: number;
  credential_id: string;
  public_key: string;
  counter: number;
  transports: string;
};

/**
 * Verifies an assertion by `passkey` for `challenge`, then moves its counter
 * forward (only if nobody else moved it meanwhile). Every refusal is audited.
 */
async function acceptAssertion(
  services: Services,
  context: RequestContext,
  stage: 'login' | 'mfa',
  passkey: AssertingPasskey,
  response: AuthenticationResponseJSON,
  challenge: string,
): Promise<void> {
  const verified = await verifyAssertion(services.config, response, challenge, passkey, stage === 'login');
  if (!verified.ok) {
    return refuse(services, context, new AppError('PASSKEY_INVALID', { detail: PASSKEY_INVALID_DETAIL }), {
      stage,
      reason: 'verification_failed',
      message: verified.reason,
      user_id: passkey.user_id,
    });
  }
  const regression = () =>
    refuse(services, context, new AppError('PASSKEY_COUNTER_REGRESSION'), {
      stage,
      reason: 'counter_regression',
      message: `stored ${passkey.counter}, received ${verified.counter}`,
      user_id: passkey.user_id,
    });
  if (counterWentBack(passkey.counter, verified.counter)) return regression();
  const moved = await services.db
    .updateTable('passkeys')
    .set({ counter: verified.counter, last_used_at: services.clock.now() })
    .where('id', '=', passkey.id)
    .where('counter', '=', passkey.counter)
    .returning('id')
    .executeTakeFirst();
  if (!moved) return regression();
}

function findPasskey(services: Services, response: { id?: unknown }) {
  if (typeof response.id !== 'string') return Promise.resolve(undefined);
  return services.db
    .selectFrom('passkeys')
    .select(['id', 'uuid', 'user_id', 'credential_id', 'public_key', 'counter', 'transports'])
    .where('credential_id', '=', response.id)
    .executeTakeFirst();
}

/**
 * `POST /login/passkey/verify`: a session for the owner of the passkey that
 * signed the challenge (`amr: ["webauthn"]`). With a username typed, only
 * that user's passkeys are accepted. Disabled and (when verification is
 * required) unverified accounts are refused as password login refuses them.
 */
export async function finishPasskeyLogin(
  services: Services,
  input: { challenge_id?: unknown; response?: unknown },
  context: RequestContext,
  kind: SessionKind,
): Promise<LoggedIn> {
  if (input.challenge_id === undefined || input.challenge_id === null || input.challenge_id === '') {
    throw invalid('challenge_id', 'Field is required', 'required');
  }
  if (!isUuid(input.challenge_id)) throw invalid('challenge_id', 'Not a challenge_id', 'invalid_format');
  const response = responseObject<AuthenticationResponseJSON>(input.response);
  const spent = await spendChallenge(services.db, services.clock, {
    uuid: input.challenge_id.toLowerCase(),
    purposes: ['login', 'login_user'],
  });
  if (!spent) return refuse(services, context, challengeInvalid(), { stage: 'login', reason: 'challenge' });
  if (answeredChallenge(response.response?.clientDataJSON) !== spent.challenge) {
    return refuse(services, context, challengeInvalid(), {
      stage: 'login',
      reason: 'response_for_another_challenge',
      user_id: spent.user_id,
    });
  }
  const passkey = await findPasskey(services, response);
  if (!passkey) {
    return refuse(services, context, new AppError('PASSKEY_INVALID', { detail: PASSKEY_INVALID_DETAIL }), {
      stage: 'login',
      reason: 'unknown_credential',
      user_id: spent.user_id,
    });
  }
  if (spent.purpose === 'login_user' && passkey.user_id !== spent.user_id) {
    return refuse(services, context, new AppError('PASSKEY_INVALID', { detail: PASSKEY_INVALID_DETAIL }), {
      stage: 'login',
      reason: 'credential_of_another_user',
      user_id: spent.user_id,
    });
  }
  await acceptAssertion(services, context, 'login', passkey, response, spent.challenge);
  const user = await services.db
    .selectFrom('users')
    .selectAll()
    .where('id', '=', passkey.user_id)
    .executeTakeFirstOrThrow();
  if (!user.is_active || (services.config.requireEmailVerification && user.email_verified_at === null)) {
    const reason = user.is_active ? 'email_not_verified' : 'account_disabled';
    await recordLoginFailure(services, user.username, user, reason, context, 'passkey');
    services.metrics.logins.inc({ outcome: reason });
    throw new AppError(user.is_active ? 'EMAIL_NOT_VERIFIED' : 'ACCOUNT_DISABLED');
  }
  const issued = await recordLoginSuccess(services, user.username, user, context, {
    kind,
    amr: ['webauthn'],
    hashUpgraded: false,
    method: 'webauthn',
  });
  services.metrics.logins.inc({ outcome: 'success' });
  return { ...issued, userId: user.id };
}

/** `POST /login/mfa/webauthn-options`: request options for the passkeys of the user an `mfa_token` names. */
export async function startPasskeySecondStep(
  services: Services,
  challenge: { id: number; userId: number },
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const credentials = await credentialsOf(services, challenge.userId);
  if (credentials.length === 0) throw new AppError('CONFLICT', { detail: 'This account has no passkey' });
  const options = await authenticationOptions(services.config, credentials, 'preferred');
  await storeChallenge(services.db, services.clock, {
    purpose: 'mfa',
    challenge: options.challenge,
    userId: challenge.userId,
    mfaChallengeId: challenge.id,
  });
  return options;
}

/**
 * The second step of a password login answered with a passkey of the same
 * user, for a challenge issued to this `mfa_token`. A refusal is audited and
 * recorded as a failed login attempt.
 */
export async function checkPasskeySecondStep(
  services: Services,
  user: Pick<User, 'id'>,
  mfaChallengeId: number,
  value: unknown,
  identifier: string,
  context: RequestContext,
): Promise<'webauthn'> {
  const response = responseObject<AuthenticationResponseJSON>(value, 'webauthn_response');
  const fail = async (error: AppError, reason: string): Promise<never> => {
    await recordLoginFailure(services, identifier, user, 'passkey_invalid', context, 'passkey');
    return refuse(services, context, error, { stage: 'mfa', reason, user_id: user.id });
  };
  const challenge = answeredChallenge(response.response?.clientDataJSON);
  const spent =
    challenge &&
    (await spendChallenge(services.db, services.clock, {
      purposes: ['mfa'],
      challenge,
      userId: user.id,
      mfaChallengeId,
    }));
  if (!spent) return fail(challengeInvalid(), 'challenge');
  const passkey = await findPasskey(services, response);
  if (!passkey || passkey.user_id !== user.id) {
    return fail(new AppError('PASSKEY_INVALID', { detail: PASSKEY_INVALID_DETAIL }), 'credential_of_another_user');
  }
  try {
    await acceptAssertion(services, context, 'mfa', passkey, response, spent.challenge);
  } catch (error) {
    await recordLoginFailure(services, identifier, user, 'passkey_invalid', context, 'passkey');
    throw error;
  }
  return 'webauthn';
}
