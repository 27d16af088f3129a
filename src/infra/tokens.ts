import { createHash, createHmac, createSecretKey, hkdfSync, KeyObject, randomBytes, sign } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CryptoKey,
  calculateJwkThumbprint,
  errors,
  exportJWK,
  generateKeyPair,
  importJWK,
  importPKCS8,
  type JWK,
  type JWTPayload,
  jwtVerify,
} from 'jose';
import { LRUCache } from 'lru-cache';
import { type Config, ConfigError, type JwtAlgorithm } from '../config.ts';
import { AppError } from '../domain/errors.ts';
import type { Clock } from './clock.ts';

export type TokenType = 'access' | 'refresh';

/** The claims API.md promises, after verification. */
export interface VerifiedToken {
  sub: string;
  email: string | undefined;
  type: TokenType;
  sid: string;
  jti: string;
  iat: number;
  exp: number;
  /** A refresh token's generation (`gen`); absent from tokens issued before it was carried. */
  gen?: number;
}

interface KeyEntry {
  kid: string;
  alg: JwtAlgorithm;
  /** Absent for keys that only verify (rotated out, or public-only). */
  signKey: KeyObject | undefined;
  verifyKey: CryptoKey | Uint8Array;
  publicJwk: JWK | undefined;
  /** The private JWK of an asymmetric key that signs (the OpenID provider signs ID tokens with it). */
  privateJwk?: JWK;
  retiredAt: Date | null;
}

/** One stored key of the ring: `<JWT_KEYS_DIR>/<kid>.json`, mode 0600. */
interface StoredKey {
  kid: string;
  alg: JwtAlgorithm;
  created_at: string;
  retired_at: string | null;
  private_jwk: JWK;
}

const ASYMMETRIC: readonly JwtAlgorithm[] = ['EdDSA', 'ES256', 'RS256'];
/** Allowed clock difference between instances, in seconds. */
export const CLOCK_TOLERANCE_SECONDS = 5;
/** A rotated-out key is reloaded at most this often when an unknown `kid` shows up. */
const RELOAD_INTERVAL_MS = 10_000;

/**
 * Signs and verifies Gatehouse's JWTs. HS256 keys are derived from SECRET_KEY;
 * EdDSA/ES256/RS256 keys come from JWT_PRIVATE_KEY or a key ring on disk,
 * generated on first start. Every token carries a `kid`; every verification
 * pins the algorithm to the key it names, so `alg: none` and HS256 signed with
 * a public key never verify.
 */
export class TokenService {
  readonly #config: Config;
  readonly #clock: Clock;
  readonly #refreshIdKey: KeyObject;
  #keys = new Map<string, KeyEntry>();
  #signer: KeyEntry | undefined;
  #algorithms: JwtAlgorithm[] = [];
  #lastReload = 0;
  /**
   * Tokens already verified, by their exact text: a client sends the same
   * access token many times, and only its expiry needs checking again. Only
   * tokens that passed verification get in, so junk cannot fill it.
   */
  readonly #verified = new LRUCache<string, VerifiedToken>({ max: 20_000 });

  private constructor(config: Config, clock: Clock) {
    this.#config = config;
    this.#clock = clock;
    this.#refreshIdKey = createSecretKey(deriveKey(config.secretKey, 'gatehouse refresh token id'));
  }

  static async create(config: Config, clock: Clock): Promise<TokenService> {
    const service = new TokenService(config, clock);
    await service.reload();
    return service;
  }

  get accessLifetimeSeconds(): number {
    return this.#config.accessTokenExpireMinutes * 60;
  }

  get refreshLifetimeSeconds(): number {
    return this.#config.refreshTokenExpireDays * 86_400;
  }

  /** The key that signs new tokens. */
  get currentKid(): string {
    return this.#requireSigner().kid;
  }

  /** (Re)reads the keys; a ring rotated by another process is picked up here. */
  async reload(): Promise<void> {
    this.#lastReload = this.#clock.now().getTime();
    const keys = new Map<string, KeyEntry>();
    let signer: KeyEntry | undefined;
    const config = this.#config;
    if (config.algorithm === 'HS256') {
      const secret = new Uint8Array(deriveKey(config.secretKey, 'gatehouse jwt hs256'));
      const kid = `hs256-${createHash('sha256').update(secret).digest('base64url').slice(0, 16)}`;
      // Imported once: handed raw bytes, jose would import the key again for every token.
      const verifyKey = await crypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, [
        'verify',
      ]);
      const signKey = createSecretKey(secret);
      signer = { kid, alg: 'HS256', signKey, verifyKey, publicJwk: undefined, retiredAt: null };
      keys.set(kid, signer);
    }
    const dir = keysDirectory(config);
    if (ASYMMETRIC.includes(config.algorithm) && !config.jwtPrivateKey && activeStoredKeys(dir, config).length === 0) {
      await addStoredKey(dir, config.algorithm, this.#clock.now());
    }
    const maxLifetimeMs = this.refreshLifetimeSeconds * 1000;
    const now = this.#clock.now().getTime();
    for (const stored of readStoredKeys(dir)) {
      const retiredAt = stored.retired_at ? new Date(stored.retired_at) : null;
      // A rotated-out key verifies until the last token it signed has expired.
      if (retiredAt && retiredAt.getTime() + maxLifetimeMs < now) continue;
      const entry = await importStoredKey(stored, retiredAt);
      keys.set(entry.kid, entry);
    }
    if (ASYMMETRIC.includes(config.algorithm)) {
      if (config.jwtPrivateKey) {
        signer = await importConfiguredKey(config.jwtPrivateKey, config.algorithm).catch((error: Error) => {
          throw new ConfigError(
            'JWT_PRIVATE_KEY',
            `must be a PKCS#8 PEM ${config.algorithm} private key (${error.message})`,
          );
        });
        keys.set(signer.kid, signer);
      } else {
        signer = [...keys.values()]
          .filter((k) => k.alg === config.algorithm && k.retiredAt === null && k.signKey)
          .at(-1);
      }
    }
    this.#keys = keys;
    this.#signer = signer;
    // A key that left the ring takes its tokens with it.
    this.#verified.clear();
    this.#algorithms = [...new Set([...keys.values()].map((k) => k.alg))];
  }

  /** The public keys, for `GET /.well-known/jwks.json`. Empty with HS256. */
  jwks(): { keys: JWK[] } {
    return { keys: [...this.#keys.values()].flatMap((k) => (k.publicJwk ? [k.publicJwk] : [])) };
  }

  /** The asymmetric keys that still sign, as private JWKs with `kid`, `alg` and `use`: the OpenID provider's keys. */
  signingJwks(): JWK[] {
    return [...this.#keys.values()].flatMap((k) =>
      k.privateJwk && k.retiredAt === null ? [{ ...k.privateJwk, kid: k.kid, alg: k.alg, use: 'sig' }] : [],
    );
  }

  /**
   * `amr` (RFC 8176) and `auth_time` say how and when the session's user last proved who they are.
   * `extra` (the product's and the host's claims) never replaces a claim set here.
   */
  async signAccessToken(
    claims: { sub: string; email: string; sid: string; amr: string[]; authTime: number },
    issuedAt: Date,
    extra: Record<string, unknown> = {},
  ): Promise<string> {
    const iat = Math.floor(issuedAt.getTime() / 1000);
    return this.#sign(
      { ...extra, email: claims.email, type: 'access', sid: claims.sid, amr: claims.amr, auth_time: claims.authTime },
      claims.sub,
      randomBytes(16).toString('base64url'),
      iat,
      iat + this.accessLifetimeSeconds,
    );
  }

  /**
   * A refresh token is fully determined by its session, generation and times,
   * so a spent token's successor can be handed out again inside the reuse
   * interval without storing it.
   */
  async signRefreshToken(claims: {
    sub: string;
    sid: string;
    generation: number;
    issuedAt: Date;
    expiresAt: Date;
  }): Promise<string> {
    return this.#sign(
      { type: 'refresh', sid: claims.sid, gen: claims.generation },
      claims.sub,
      this.refreshTokenId(claims.sid, claims.generation),
      Math.floor(claims.issuedAt.getTime() / 1000),
      Math.floor(claims.expiresAt.getTime() / 1000),
    );
  }

  /** `jti` of a session's refresh token of one generation: a MAC, unguessable without SECRET_KEY. */
  refreshTokenId(sessionUuid: string, generation: number): string {
    return createHmac('sha256', this.#refreshIdKey).update(`${sessionUuid}.${generation}`).digest('base64url');
  }

  /**
   * Verifies signature, algorithm, `iss`, `aud`, times and `type`. Expired →
   * TOKEN_EXPIRED; anything else wrong → TOKEN_INVALID.
   */
  async verify(token: string, expected: TokenType): Promise<VerifiedToken> {
    const cached = this.#verified.get(token);
    if (cached) return this.#stillValid(cached, expected);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, (header) => this.#keyFor(header.kid, header.alg), {
        algorithms: this.#algorithms,
        issuer: this.#config.jwtIssuer,
        audience: this.#config.jwtAudience,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        maxTokenAge: expected === 'access' ? this.accessLifetimeSeconds : this.refreshLifetimeSeconds,
        requiredClaims: ['sub', 'sid', 'jti', 'exp', 'type'],
        currentDate: this.#clock.now(),
      }));
    } catch (error) {
      if (error instanceof AppError) throw error;
      if (error instanceof errors.JWTExpired && error.claim === 'exp') {
        throw new AppError('TOKEN_EXPIRED', { detail: 'Token has expired' });
      }
      throw new AppError('TOKEN_INVALID', { detail: 'Token is invalid', cause: error });
    }
    const { sub, sid, jti, type, email, iat, exp, gen } = payload as Record<string, unknown>;
    if (type !== expected || (type !== 'access' && type !== 'refresh')) {
      throw new AppError('TOKEN_INVALID', {
        detail: `Token is not ${expected === 'access' ? 'an access' : 'a refresh'} token`,
      });
    }
    if (typeof sub !== 'string' || typeof sid !== 'string' || typeof jti !== 'string' || typeof exp !== 'number') {
      throw new AppError('TOKEN_INVALID', { detail: 'Token is invalid' });
    }
    if (expected === 'access' && typeof email !== 'string') {
      throw new AppError('TOKEN_INVALID', { detail: 'Token is invalid' });
    }
    const verified: VerifiedToken = {
      sub,
      sid,
      jti,
      type,
      email: typeof email === 'string' ? email : undefined,
      iat: typeof iat === 'number' ? iat : 0,
      exp,
      ...(type === 'refresh' && Number.isSafeInteger(gen) && { gen: gen as number }),
    };
    this.#verified.set(token, verified);
    return verified;
  }

  /** jose's own expiry rule (`exp <= now - tolerance`), for a token verified earlier. */
  #stillValid(token: VerifiedToken, expected: TokenType): VerifiedToken {
    if (token.type !== expected) {
      throw new AppError('TOKEN_INVALID', {
        detail: `Token is not ${expected === 'access' ? 'an access' : 'a refresh'} token`,
      });
    }
    const now = Math.floor(this.#clock.now().getTime() / 1000);
    if (token.exp <= now - CLOCK_TOLERANCE_SECONDS)
      throw new AppError('TOKEN_EXPIRED', { detail: 'Token has expired' });
    return token;
  }

  async #keyFor(kid: string | undefined, alg: string | undefined): Promise<CryptoKey | Uint8Array> {
    let key = kid === undefined ? undefined : this.#keys.get(kid);
    // Another process may have rotated the ring: look again, but not on every bad token.
    if (!key && kid !== undefined && this.#clock.now().getTime() - this.#lastReload > RELOAD_INTERVAL_MS) {
      await this.reload();
      key = this.#keys.get(kid);
    }
    if (!key) throw new AppError('TOKEN_INVALID', { detail: 'Token was signed by an unknown key' });
    if (key.alg !== alg) throw new AppError('TOKEN_INVALID', { detail: 'Token algorithm does not match its key' });
    return key.verifyKey;
  }

  /**
   * A compact JWS, signed with `node:crypto` on the calling thread: WebCrypto would queue a job and copy
   * the key for every token, which costs more than the signature itself on the paths that issue tokens.
   * Verification stays with jose.
   */
  async #sign(claims: Record<string, unknown>, sub: string, jti: string, iat: number, exp: number): Promise<string> {
    const signer = this.#requireSigner();
    const header = { alg: signer.alg, kid: signer.kid, typ: 'JWT' };
    const payload = { ...claims, sub, jti, iss: this.#config.jwtIssuer, aud: this.#config.jwtAudience, iat, exp };
    const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
    return `${input}.${signWith(signer, input).toString('base64url')}`;
  }

  #requireSigner(): KeyEntry {
    if (!this.#signer?.signKey) throw new Error(`no ${this.#config.algorithm} signing key is available`);
    return this.#signer;
  }
}

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}

/** The signature of a JWS signing input: RFC 7518 §3.2 (HS256), §3.3 (RS256), §3.4 (ES256, r‖s), RFC 8037 (EdDSA). */
function signWith(entry: KeyEntry, input: string): Buffer {
  const key = entry.signKey as KeyObject;
  switch (entry.alg) {
    case 'HS256':
      return createHmac('sha256', key).update(input).digest();
    case 'ES256':
      return sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    case 'RS256':
      return sign('sha256', Buffer.from(input), key);
    case 'EdDSA':
      return sign(null, Buffer.from(input), key);
  }
}

function deriveKey(secret: string, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, '', label, 32));
}

export function keysDirectory(config: Config): string {
  return config.jwtKeysDir ?? join(config.dataDir, 'jwt-keys');
}

function readStoredKeys(dir: string): StoredKey[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.json'))
    .map((name) => JSON.parse(readFileSync(join(dir, name), 'utf8')) as StoredKey)
    .sort((a, b) => a.created_at.localeCompare(b.created_at));
}

function activeStoredKeys(dir: string, config: Config): StoredKey[] {
  return readStoredKeys(dir).filter((k) => k.alg === config.algorithm && k.retired_at === null);
}

async function importStoredKey(stored: StoredKey, retiredAt: Date | null): Promise<KeyEntry> {
  const signKey = KeyObject.from((await importJWK(stored.private_jwk, stored.alg)) as CryptoKey);
  const publicJwk = publicPart(stored.private_jwk, stored.kid, stored.alg);
  const verifyKey = (await importJWK(publicJwk, stored.alg)) as CryptoKey;
  return { kid: stored.kid, alg: stored.alg, signKey, verifyKey, publicJwk, privateJwk: stored.private_jwk, retiredAt };
}

async function importConfiguredKey(pem: string, alg: JwtAlgorithm): Promise<KeyEntry> {
  const privateKey = await importPKCS8(pem.replaceAll('\\n', '\n'), alg, { extractable: true });
  const signKey = KeyObject.from(privateKey);
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  const publicJwk = publicPart(jwk, kid, alg);
  const verifyKey = (await importJWK(publicJwk, alg)) as CryptoKey;
  return { kid, alg, signKey, verifyKey, publicJwk, privateJwk: jwk, retiredAt: null };
}

const PRIVATE_MEMBERS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']);

function publicPart(jwk: JWK, kid: string, alg: JwtAlgorithm): JWK {
  const pub = Object.fromEntries(Object.entries(jwk).filter(([name]) => !PRIVATE_MEMBERS.has(name))) as JWK;
  return { ...pub, kid, alg, use: 'sig' };
}

const GENERATE_OPTIONS: Record<Exclude<JwtAlgorithm, 'HS256'>, { crv?: string; modulusLength?: number }> = {
  EdDSA: { crv: 'Ed25519' },
  ES256: {},
  RS256: { modulusLength: 2048 },
};

/** Generates a key into the ring. Exclusive create: two processes starting at once cannot clobber a key. */
async function addStoredKey(dir: string, alg: JwtAlgorithm, now: Date): Promise<StoredKey> {
  if (alg === 'HS256') throw new Error('HS256 keys are derived from SECRET_KEY, not stored');
  const { privateKey } = await generateKeyPair(alg, { ...GENERATE_OPTIONS[alg], extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(privateJwk);
  const stored: StoredKey = { kid, alg, created_at: now.toISOString(), retired_at: null, private_jwk: privateJwk };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, `${kid}.json`), `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return stored;
}

/**
 * Puts a new signing key into the ring and retires the current ones. Retired
 * keys keep verifying (and stay in the JWKS) until every token they signed
 * has expired. Running instances pick the new key up on restart, or when they
 * first see a token signed with it.
 */
export async function rotateSigningKey(config: Config, now: Date): Promise<{ kid: string; retired: string[] }> {
  const dir = keysDirectory(config);
  const retired: string[] = [];
  const added = await addStoredKey(dir, config.algorithm, now);
  for (const stored of readStoredKeys(dir)) {
    if (stored.kid === added.kid || stored.retired_at !== null) continue;
    stored.retired_at = now.toISOString();
    writeFileSync(join(dir, `${stored.kid}.json`), `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
    retired.push(stored.kid);
  }
  return { kid: added.kid, retired };
}
