import { createHmac, randomUUID } from 'node:crypto';
import {
  type AuthenticationResponseJSON,
  type AuthenticatorTransport,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { Config } from '../config.ts';
import type { Database } from '../db/schema.ts';
import type { Clock } from './clock.ts';

export type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
};

/** A challenge is good this long: the browser's own timeout is the same. */
export const CHALLENGE_SECONDS = 5 * 60;

/** What a ceremony is for: `login_user` when a username was typed (only that user's passkeys count). */
export type ChallengePurpose = 'register' | 'login' | 'login_user' | 'mfa';

const TRANSPORTS = new Set<string>(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']);

/** A stored passkey as the library needs it. */
export interface StoredCredential {
  credential_id: string;
  public_key: string;
  counter: number;
  transports: string;
}

function transportsOf(stored: string): AuthenticatorTransport[] {
  return stored.split(',').filter((t): t is AuthenticatorTransport => TRANSPORTS.has(t));
}

function descriptor(credential: Pick<StoredCredential, 'credential_id' | 'transports'>) {
  return { id: credential.credential_id, transports: transportsOf(credential.transports) };
}

export function registrationOptions(
  config: Config,
  user: { uuid: string; username: string; email: string },
  existing: Pick<StoredCredential, 'credential_id' | 'transports'>[],
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  return generateRegistrationOptions({
    rpName: new URL(config.publicUrl).host,
    rpID: config.webauthnRpId,
    userName: user.username,
    userDisplayName: user.email,
    userID: new Uint8Array(Buffer.from(user.uuid.replaceAll('-', ''), 'hex')),
    attestationType: 'none',
    timeout: CHALLENGE_SECONDS * 1000,
    excludeCredentials: existing.map(descriptor),
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
  });
}

/**
 * Login options. `allow` lists the credentials a typed username may use; a
 * username with no passkeys (or no account) gets a stand-in derived from the
 * name with SECRET_KEY, the same every time, so the answer does not say
 * whether the account exists.
 */
export function authenticationOptions(
  config: Config,
  allow: Pick<StoredCredential, 'credential_id' | 'transports'>[] | { standInFor: string } | undefined,
  userVerification: 'required' | 'preferred',
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  let allowCredentials: { id: string; transports: AuthenticatorTransport[] }[] | undefined;
  if (Array.isArray(allow)) allowCredentials = allow.map(descriptor);
  else if (allow) {
    const id = createHmac('sha256', config.secretKey).update(`passkey-stand-in:${allow.standInFor}`).digest();
    allowCredentials = [{ id: id.toString('base64url'), transports: ['internal', 'hybrid'] }];
  }
  return generateAuthenticationOptions({
    rpID: config.webauthnRpId,
    timeout: CHALLENGE_SECONDS * 1000,
    userVerification,
    ...(allowCredentials && { allowCredentials }),
  });
}

/** The attested credential of a registration, or undefined when the response does not verify. */
export async function verifyRegistration(
  config: Config,
  response: RegistrationResponseJSON,
  challenge: string,
): Promise<
  | { ok: true; credential: StoredCredential & { device_type: string; backed_up: boolean } }
  | { ok: false; reason: string }
> {
  try {
    const result = await verifyRegistrationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: config.webauthnOrigins,
      expectedRPID: config.webauthnRpId,
      requireUserVerification: false,
    });
    if (!result.verified) return { ok: false, reason: 'not verified' };
    const info = result.registrationInfo;
    return {
      ok: true,
      credential: {
        credential_id: info.credential.id,
        public_key: Buffer.from(info.credential.publicKey).toString('base64url'),
        counter: info.credential.counter,
        transports: (response.response.transports ?? []).filter((t) => TRANSPORTS.has(t)).join(','),
        device_type: info.credentialDeviceType,
        backed_up: info.credentialBackedUp,
      },
    };
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message.slice(0, 200) : 'invalid' };
  }
}

/**
 * Checks an assertion's signature, challenge, origin, RP id and flags. The
 * counter is compared by the caller (with the stored one passed as 0 here), so
 * that a regression is told apart from a bad signature, and only after the
 * signature proved the authenticator said it.
 */
export async function verifyAssertion(
  config: Config,
  response: AuthenticationResponseJSON,
  challenge: string,
  credential: StoredCredential,
  requireUserVerification: boolean,
): Promise<{ ok: true; counter: number; userVerified: boolean } | { ok: false; reason: string }> {
  try {
    const result = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: config.webauthnOrigins,
      expectedRPID: config.webauthnRpId,
      credential: {
        id: credential.credential_id,
        publicKey: new Uint8Array(Buffer.from(credential.public_key, 'base64url')),
        counter: 0,
        transports: transportsOf(credential.transports),
      },
      requireUserVerification,
    });
    if (!result.verified) return { ok: false, reason: 'not verified' };
    return {
      ok: true,
      counter: result.authenticationInfo.newCounter,
      userVerified: result.authenticationInfo.userVerified,
    };
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message.slice(0, 200) : 'invalid' };
  }
}

/** A counter that did not move forward: both zero means the authenticator keeps none. */
export function counterWentBack(stored: number, received: number): boolean {
  return (received > 0 || stored > 0) && received <= stored;
}

/** The `challenge` a response's clientDataJSON answers, or undefined when it is not readable. */
export function answeredChallenge(clientDataJSON: unknown): string | undefined {
  if (typeof clientDataJSON !== 'string') return undefined;
  try {
    const data = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as unknown;
    const challenge = (data as { challenge?: unknown } | null)?.challenge;
    return typeof challenge === 'string' && challenge.length <= 512 ? challenge : undefined;
  } catch {
    return undefined;
  }
}

export async function storeChallenge(
  db: Kysely<Database>,
  clock: Clock,
  row: { purpose: ChallengePurpose; challenge: string; userId?: number | null; mfaChallengeId?: number | null },
): Promise<string> {
  const uuid = randomUUID();
  const now = clock.now();
  await db
    .insertInto('webauthn_challenges')
    .values({
      uuid,
      purpose: row.purpose,
      challenge: row.challenge,
      user_id: row.userId ?? null,
      mfa_challenge_id: row.mfaChallengeId ?? null,
      created_at: now,
      expires_at: new Date(now.getTime() + CHALLENGE_SECONDS * 1000),
    })
    .execute();
  return uuid;
}

/**
 * Spends a challenge: one UPDATE that also checks it is unspent and unexpired,
 * so of two requests answering one challenge at most one gets it.
 */
export async function spendChallenge(
  db: Kysely<Database>,
  clock: Clock,
  which:
    | { uuid: string; purposes: ChallengePurpose[] }
    | { purposes: ChallengePurpose[]; challenge: string; userId?: number; mfaChallengeId?: number },
): Promise<{ challenge: string; purpose: ChallengePurpose; user_id: number | null } | undefined> {
  const now = clock.now();
  let query = db
    .updateTable('webauthn_challenges')
    .set({ used_at: now })
    .where('purpose', 'in', which.purposes)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now);
  if ('uuid' in which) query = query.where('uuid', '=', which.uuid);
  else {
    query = query.where('challenge', '=', which.challenge);
    if (which.userId !== undefined) query = query.where('user_id', '=', which.userId);
    if (which.mfaChallengeId !== undefined) query = query.where('mfa_challenge_id', '=', which.mfaChallengeId);
  }
  const row = await query.returning(['challenge', 'purpose', 'user_id']).executeTakeFirst();
  return row && { ...row, purpose: row.purpose as ChallengePurpose };
}
