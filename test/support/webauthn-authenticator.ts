import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';

/**
 * A software passkey authenticator, independent of the code under test: it
 * makes P-256 keys with node:crypto and answers creation and request options
 * the way a browser and a platform authenticator do (`none` attestation,
 * CBOR-encoded COSE keys, DER ECDSA signatures). A test may lie on purpose:
 * another origin or RP id, a chosen counter, another challenge.
 */

type Cbor = number | string | Uint8Array | Cbor[] | Map<number | string, Cbor>;

function head(major: number, value: number): Buffer {
  if (value < 24) return Buffer.from([(major << 5) | value]);
  if (value < 0x100) return Buffer.from([(major << 5) | 24, value]);
  if (value < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(value, 1);
    return b;
  }
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(value, 1);
  return b;
}

/** A minimal CBOR encoder (RFC 8949): unsigned and negative integers, byte and text strings, arrays, maps. */
export function encodeCbor(value: Cbor): Buffer {
  if (typeof value === 'number') return value >= 0 ? head(0, value) : head(1, -1 - value);
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), Buffer.from(value)]);
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(encodeCbor)]);
  const parts = [head(5, value.size)];
  for (const [k, v] of value) parts.push(encodeCbor(k), encodeCbor(v));
  return Buffer.concat(parts);
}

const b64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString('base64url');
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest();

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_AT = 0x40;

export interface SoftCredential {
  id: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  userHandle: string;
  rpId: string;
  counter: number;
}

export interface CeremonyOptions {
  origin?: string;
  rpId?: string;
  /** User verified (default true). */
  userVerified?: boolean;
  /** Overrides the challenge the answer claims to answer. */
  challenge?: string;
  /** The counter to report (default: the credential's, plus one). */
  counter?: number;
  /** Counters stay 0, as many platform authenticators keep none. */
  type?: string;
}

export class SoftAuthenticator {
  readonly credentials: SoftCredential[] = [];
  readonly origin: string;
  readonly rpId: string;

  constructor(origin = 'http://gatehouse.test') {
    this.origin = origin;
    this.rpId = new URL(origin).hostname;
  }

  /** Answers PublicKeyCredentialCreationOptionsJSON: RegistrationResponseJSON. */
  register(options: { challenge: string; rp: { id?: string }; user: { id: string } }, lie: CeremonyOptions = {}) {
    const rpId = lie.rpId ?? options.rp.id ?? this.rpId;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const id = randomBytes(16);
    const jwk = publicKey.export({ format: 'jwk' });
    const cose = encodeCbor(
      new Map<number, Cbor>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(String(jwk.x), 'base64url')],
        [-3, Buffer.from(String(jwk.y), 'base64url')],
      ]),
    );
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(id.length);
    const counter = Buffer.alloc(4);
    const flags = FLAG_UP | FLAG_AT | (lie.userVerified === false ? 0 : FLAG_UV);
    const authData = Buffer.concat([sha256(rpId), Buffer.from([flags]), counter, Buffer.alloc(16), idLength, id, cose]);
    const attestationObject = encodeCbor(
      new Map<string, Cbor>([
        ['fmt', 'none'],
        ['attStmt', new Map()],
        ['authData', authData],
      ]),
    );
    const clientData = JSON.stringify({
      type: lie.type ?? 'webauthn.create',
      challenge: lie.challenge ?? options.challenge,
      origin: lie.origin ?? this.origin,
      crossOrigin: false,
    });
    const credential: SoftCredential = {
      id: b64url(id),
      privateKey,
      publicKey,
      userHandle: options.user.id,
      rpId,
      counter: 0,
    };
    this.credentials.push(credential);
    return {
      id: credential.id,
      rawId: credential.id,
      type: 'public-key',
      response: {
        clientDataJSON: b64url(clientData),
        attestationObject: b64url(attestationObject),
        transports: ['internal'],
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }

  /** Answers PublicKeyCredentialRequestOptionsJSON with `credential` (default: the first allowed, else the first held). */
  authenticate(
    options: { challenge: string; rpId?: string; allowCredentials?: { id: string }[] },
    lie: CeremonyOptions & { credential?: SoftCredential } = {},
  ) {
    const allowed = options.allowCredentials?.map((c) => c.id) ?? [];
    const credential = lie.credential ?? this.credentials.find((c) => allowed.includes(c.id)) ?? this.credentials[0];
    if (!credential) throw new Error('the authenticator holds no credential');
    const rpId = lie.rpId ?? options.rpId ?? credential.rpId;
    credential.counter = lie.counter ?? credential.counter + 1;
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(credential.counter);
    const flags = FLAG_UP | (lie.userVerified === false ? 0 : FLAG_UV);
    const authData = Buffer.concat([sha256(rpId), Buffer.from([flags]), counter]);
    const clientData = JSON.stringify({
      type: lie.type ?? 'webauthn.get',
      challenge: lie.challenge ?? options.challenge,
      origin: lie.origin ?? this.origin,
      crossOrigin: false,
    });
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientData)]), credential.privateKey);
    return {
      id: credential.id,
      rawId: credential.id,
      type: 'public-key',
      response: {
        clientDataJSON: b64url(clientData),
        authenticatorData: b64url(authData),
        signature: b64url(signature),
        userHandle: credential.userHandle,
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }
}
