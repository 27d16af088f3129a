import { randomBytes } from 'node:crypto';
import * as argon2 from '@node-rs/argon2';
import * as bcrypt from '@node-rs/bcrypt';
import type { PasswordHasherName } from '../domain/password-policy.ts';
import { BCRYPT_MAX_BYTES } from '../domain/password-policy.ts';
import type { HashPool } from './hash-pool.ts';

/** OWASP's argon2id baseline: m = 19 MiB, t = 2, p = 1. */
export const ARGON2ID_PARAMS = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;
const ARGON2ID = 2; // Algorithm.Argon2id; the package exports it as a const enum.

export interface PasswordVerification {
  ok: boolean;
  /** The stored hash uses another algorithm or other parameters than the current ones. */
  needsRehash: boolean;
}

export interface PasswordHasherOptions {
  algorithm: PasswordHasherName;
  bcryptRounds: number;
  pool: HashPool;
}

/** Hashes and verifies PHC strings (`$argon2id$…`, `$2b$…`) through the bounded pool. */
export class PasswordHasher {
  readonly #options: PasswordHasherOptions;
  /** Verified for an unknown user, so that it costs what a wrong password costs. */
  readonly #dummyHash: string;

  constructor(options: PasswordHasherOptions) {
    this.#options = options;
    this.#dummyHash = dummyHash(options);
  }

  hash(password: string): Promise<string> {
    return this.#options.pool.run(() => this.#hashNow(password));
  }

  verify(storedHash: string, password: string): Promise<PasswordVerification> {
    return this.#options.pool.run(async () => {
      const ok = await verifyHash(storedHash, password);
      return { ok, needsRehash: ok && this.needsRehash(storedHash) };
    });
  }

  /**
   * Costs the same as verifying a real hash, for unknown users: the answer to
   * "no such user" must take as long as "wrong password".
   */
  async verifyDummy(password: string): Promise<void> {
    await this.#options.pool.run(() => verifyHash(this.#dummyHash, password));
  }

  needsRehash(storedHash: string): boolean {
    if (this.#options.algorithm === 'bcrypt') {
      const m = /^\$2[aby]\$(\d{2})\$/.exec(storedHash);
      return !m || Number(m[1]) !== this.#options.bcryptRounds;
    }
    if (!storedHash.startsWith('$argon2id$')) return true;
    const m = /\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(storedHash);
    return (
      !m ||
      Number(m[1]) !== ARGON2ID_PARAMS.memoryCost ||
      Number(m[2]) !== ARGON2ID_PARAMS.timeCost ||
      Number(m[3]) !== ARGON2ID_PARAMS.parallelism
    );
  }

  #hashNow(password: string): Promise<string> {
    if (this.#options.algorithm === 'bcrypt') {
      if (Buffer.byteLength(password) > BCRYPT_MAX_BYTES) {
        throw new RangeError('bcrypt input longer than 72 bytes would be truncated');
      }
      return bcrypt.hash(password, this.#options.bcryptRounds);
    }
    return argon2.hash(password, { algorithm: ARGON2ID, ...ARGON2ID_PARAMS });
  }
}

/**
 * A well-formed hash of the current algorithm and parameters whose salt and
 * digest are random bytes: verifying it costs exactly what verifying a stored
 * hash costs, and no password matches it. Made without hashing, so that the
 * first unknown user of a process costs no more than the next.
 */
export function dummyHash(options: Pick<PasswordHasherOptions, 'algorithm' | 'bcryptRounds'>): string {
  if (options.algorithm === 'bcrypt') {
    const rounds = String(options.bcryptRounds).padStart(2, '0');
    return `$2b$${rounds}$${bcryptBase64(randomBytes(16))}${bcryptBase64(randomBytes(23))}`;
  }
  const { memoryCost, timeCost, parallelism } = ARGON2ID_PARAMS;
  const b64 = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');
  return `$argon2id$v=19$m=${memoryCost},t=${timeCost},p=${parallelism}$${b64(randomBytes(16))}$${b64(randomBytes(32))}`;
}

const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** bcrypt's own base64 (its alphabet, no padding): 16 bytes give the 22-character salt, 23 the 31-character digest. */
function bcryptBase64(bytes: Buffer): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const [a = 0, b = 0, c = 0] = [bytes[i], bytes[i + 1], bytes[i + 2]];
    const n = (a << 16) | (b << 8) | c;
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let k = 0; k < chars; k++) out += BCRYPT_ALPHABET[(n >> (18 - 6 * k)) & 63];
  }
  return out;
}

async function verifyHash(storedHash: string, password: string): Promise<boolean> {
  try {
    if (/^\$2[aby]\$/.test(storedHash)) {
      // bcrypt ignores bytes past 72; a longer input must not match a prefix.
      if (Buffer.byteLength(password) > BCRYPT_MAX_BYTES) return false;
      return await bcrypt.verify(password, storedHash);
    }
    if (storedHash.startsWith('$argon2')) return await argon2.verify(storedHash, password);
    return false;
  } catch {
    return false;
  }
}
