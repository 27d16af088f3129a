import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  randomInt,
} from 'node:crypto';
import type { Config } from '../config.ts';

/**
 * The second factor's secrets at rest. One key material (MFA_ENCRYPTION_KEY,
 * else derived from SECRET_KEY with HKDF, so it serves nothing else) gives
 * two keys: AES-256-GCM for TOTP secrets and HMAC-SHA-256 for backup codes.
 * A database dump alone neither reveals a secret nor lets anyone test a code.
 * Each stored value names its key (`key_id`): after a rotation the previous
 * keys (MFA_ENCRYPTION_KEY_PREVIOUS) still read, and secrets are rewritten
 * under the current key the next time they are used.
 */
export interface MfaKey {
  id: string;
  encryption: Buffer;
  mac: Buffer;
}

export interface MfaKeyRing {
  current: MfaKey;
  /** Current first, then the previous ones. */
  all: MfaKey[];
}

const rings = new WeakMap<Config, MfaKeyRing>();

function keyFrom(material: string): MfaKey {
  const derive = (label: string) => Buffer.from(hkdfSync('sha256', material, '', label, 32));
  const id = createHash('sha256').update(derive('gatehouse mfa key id')).digest('base64url').slice(0, 12);
  return { id, encryption: derive('gatehouse mfa totp secret'), mac: derive('gatehouse mfa backup codes') };
}

export function mfaKeys(config: Config): MfaKeyRing {
  let ring = rings.get(config);
  if (!ring) {
    const current = keyFrom(config.mfaEncryptionKey ?? `gatehouse mfa ${config.secretKey}`);
    const previous = config.mfaEncryptionKeysPrevious.map(keyFrom).filter((k) => k.id !== current.id);
    ring = { current, all: [current, ...previous] };
    rings.set(config, ring);
  }
  return ring;
}

/** `<iv>.<tag>.<ciphertext>` (base64url); the user id is bound as associated data, so rows cannot be swapped. */
export function encryptSecret(key: MfaKey, userId: number, secret: Buffer): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key.encryption, iv);
  cipher.setAAD(Buffer.from(`user:${userId}`));
  const ciphertext = Buffer.concat([cipher.update(secret), cipher.final()]);
  return [iv, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url')).join('.');
}

/** The secret, or throws when the key is unknown or the value was tampered with. */
export function decryptSecret(ring: MfaKeyRing, keyId: string, userId: number, stored: string): Buffer {
  const key = ring.all.find((k) => k.id === keyId);
  if (!key) throw new Error(`MFA key ${keyId} is not configured (MFA_ENCRYPTION_KEY / MFA_ENCRYPTION_KEY_PREVIOUS)`);
  const [iv, tag, ciphertext] = stored.split('.').map((part) => Buffer.from(part, 'base64url'));
  if (!iv || !tag || !ciphertext) throw new Error('stored MFA secret is malformed');
  const decipher = createDecipheriv('aes-256-gcm', key.encryption, iv);
  decipher.setAAD(Buffer.from(`user:${userId}`));
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
}

/** Crockford's base32: no I, L, O or U, so a code read aloud or copied by hand survives. */
const CODE_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
export const BACKUP_CODE_COUNT = 10;

/** `xxxx-xxxx`: 40 random bits. */
export function newBackupCode(): string {
  let code = '';
  for (let i = 0; i < 8; i++) code += CODE_ALPHABET[randomInt(CODE_ALPHABET.length)];
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

/** Case-, space- and hyphen-insensitive; the letters Crockford reads as digits are read so. undefined when not a code. */
export function normalizeBackupCode(input: string): string | undefined {
  const code = input.toLowerCase().replace(/[\s-]/g, '').replace(/[il]/g, '1').replace(/o/g, '0');
  return /^[0-9a-hjkmnp-tv-z]{8}$/.test(code) ? code : undefined;
}

export function backupCodeHash(key: MfaKey, userId: number, normalized: string): string {
  return createHmac('sha256', key.mac).update(`${userId}:${normalized}`).digest('base64url');
}

/** RFC 6238 defaults, as every authenticator app assumes them: SHA-1, 6 digits, 30 seconds. */
const TOTP_PERIOD_SECONDS = 30;
const TOTP_DIGITS = 6;
/** Steps of clock skew accepted either side of now. */
const TOTP_SKEW_STEPS = 1;

function totpStep(now: Date): number {
  return Math.floor(now.getTime() / 1000 / TOTP_PERIOD_SECONDS);
}

/** RFC 4226 HOTP of one counter value (RFC 6238 passes the time step). */
function hotp(secret: Buffer, counter: number): string {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const digest = createHmac('sha1', secret).update(message).digest();
  const offset = (digest[digest.length - 1] as number) & 0x0f;
  const binary = digest.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** TOTP_DIGITS).padStart(TOTP_DIGITS, '0');
}

/** The time steps around `now` whose code is `code`, newest first. */
export function matchingSteps(secret: Buffer, code: string, now: Date): number[] {
  const step = totpStep(now);
  const matches: number[] = [];
  for (let s = step + TOTP_SKEW_STEPS; s >= step - TOTP_SKEW_STEPS; s--) {
    if (hotp(secret, s) === code) matches.push(s);
  }
  return matches;
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding, as otpauth URLs carry secrets. */
export function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** A new TOTP secret: 160 bits, RFC 4226's recommendation for SHA-1. */
export function newTotpSecret(): Buffer {
  return randomBytes(20);
}

/** The Key URI Format authenticator apps read from a QR code. */
export function otpauthUrl(issuer: string, account: string, secret: Buffer): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  const params = new URLSearchParams({
    secret: base32(secret),
    issuer,
    algorithm: 'SHA1',
    digits: String(TOTP_DIGITS),
    period: String(TOTP_PERIOD_SECONDS),
  });
  return `otpauth://totp/${label}?${params.toString()}`;
}
