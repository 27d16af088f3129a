import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Services } from './container.ts';

const ID_TOKEN_ALG = 'RS256';

/**
 * The keys the OpenID provider signs ID tokens with: the key ring's
 * asymmetric signing keys (ALGORITHM=EdDSA/ES256/RS256), and an RS256 key of
 * its own, which every relying party accepts and which HS256 cannot give (an
 * ID token is verified by the client, which must not hold the signing secret).
 * That key is generated once into `oidc_keys`, encrypted under a key derived
 * from SECRET_KEY, so every instance behind the database signs with it.
 */
export async function oidcSigningKeys(services: Services): Promise<JWK[]> {
  const ring = services.tokens.signingJwks();
  if (ring.some((k) => k.alg === ID_TOKEN_ALG)) return ring;
  return [await storedRs256Key(services), ...ring];
}

async function storedRs256Key(services: Services): Promise<JWK> {
  const key = encryptionKey(services.config.secretKey);
  const existing = await oldestKey(services);
  if (existing) return decrypt(key, existing.kid, existing.private_jwk);
  const { privateKey } = await generateKeyPair(ID_TOKEN_ALG, { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  // Two instances starting at once: both insert, the first key wins, both use it.
  await services.db
    .insertInto('oidc_keys')
    .values({ kid, alg: ID_TOKEN_ALG, private_jwk: encrypt(key, kid, { ...jwk, kid, alg: ID_TOKEN_ALG, use: 'sig' }) })
    .onConflict((oc) => oc.doNothing())
    .execute();
  const chosen = await oldestKey(services);
  if (!chosen) throw new Error('the OpenID provider key could not be stored');
  return decrypt(key, chosen.kid, chosen.private_jwk);
}

function oldestKey(services: Services) {
  return services.db
    .selectFrom('oidc_keys')
    .select(['kid', 'private_jwk'])
    .where('alg', '=', ID_TOKEN_ALG)
    .orderBy('created_at')
    .orderBy('kid')
    .limit(1)
    .executeTakeFirst();
}

function encryptionKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, '', 'gatehouse oidc signing key', 32));
}

function encrypt(key: Buffer, kid: string, jwk: JWK): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(`oidc-key:${kid}`));
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(jwk)), cipher.final()]);
  return [iv, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url')).join('.');
}

function decrypt(key: Buffer, kid: string, stored: string): JWK {
  const [iv, tag, ciphertext] = stored.split('.').map((part) => Buffer.from(part, 'base64url'));
  if (!iv || !tag || !ciphertext) throw new Error('the stored OpenID provider key is malformed');
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(Buffer.from(`oidc-key:${kid}`));
  decipher.setAuthTag(tag);
  try {
    return JSON.parse(Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8')) as JWK;
  } catch {
    throw new Error('the stored OpenID provider key does not open with this SECRET_KEY (was SECRET_KEY changed?)');
  }
}
