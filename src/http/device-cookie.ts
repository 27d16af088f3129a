import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.ts';
import type { TrustedDevice } from '../flows/login.ts';

/**
 * OWASP's "device cookies": a browser that has signed in before keeps a
 * lockout allowance of its own, so strangers failing against an account do
 * not lock its owner out.
 *
 * Value: `v1.<device id>.<user ids, dash-separated>.<expiry, unix seconds>.<HMAC>`,
 * signed with HMAC-SHA256 under a key derived from SECRET_KEY (HKDF, so it is
 * used for nothing else). It names the users who signed in on the device (at
 * most USERS_MAX, most recent first): the device is trusted only for them.
 * Set by every successful login, API or page, for DEVICE_COOKIE_DAYS from
 * then; a logout leaves it. httpOnly, SameSite=Lax, Path=/, Secure when
 * PUBLIC_URL is https.
 */
const DEVICE_COOKIE = 'gatehouse-device';
const DEVICE_COOKIE_DAYS = 30;
const USERS_MAX = 5;
const VERSION = 'v1';

const keys = new WeakMap<Config, Buffer>();

function signingKey(config: Config): Buffer {
  let key = keys.get(config);
  if (!key) {
    key = Buffer.from(hkdfSync('sha256', config.secretKey, '', 'gatehouse device cookie', 32));
    keys.set(config, key);
  }
  return key;
}

function mac(config: Config, payload: string): string {
  return createHmac('sha256', signingKey(config)).update(payload).digest('base64url');
}

/** The device the request's cookie vouches for, if it is well-formed, correctly signed and not expired. */
export function trustedDevice(request: FastifyRequest, config: Config, now: Date): TrustedDevice | undefined {
  const header = request.headers.cookie;
  if (typeof header !== 'string') return undefined;
  const value = parseCookie(header)[DEVICE_COOKIE];
  const match =
    value && /^v1\.([A-Za-z0-9_-]{22})\.(\d{1,19}(?:-\d{1,19}){0,4})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (!match) return undefined;
  const [, id, users, expires, presented] = match as unknown as [string, string, string, string, string];
  const expected = Buffer.from(mac(config, `${VERSION}.${id}.${users}.${expires}`));
  const given = Buffer.from(presented);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  if (Number(expires) * 1000 <= now.getTime()) return undefined;
  return { id, userIds: users.split('-').map(Number) };
}

/** After a successful login: the device (or a new one) now vouches for this user too, for another 30 days. */
export function setDeviceCookie(
  reply: FastifyReply,
  config: Config,
  now: Date,
  device: TrustedDevice | undefined,
  userId: number,
): void {
  const id = device?.id ?? randomBytes(16).toString('base64url');
  const users = [userId, ...(device?.userIds ?? []).filter((u) => u !== userId)].slice(0, USERS_MAX).join('-');
  const maxAge = DEVICE_COOKIE_DAYS * 24 * 3600;
  const expires = Math.floor(now.getTime() / 1000) + maxAge;
  const payload = `${VERSION}.${id}.${users}.${expires}`;
  reply.header(
    'set-cookie',
    stringifySetCookie({
      name: DEVICE_COOKIE,
      value: `${payload}.${mac(config, payload)}`,
      httpOnly: true,
      secure: config.publicUrl.startsWith('https:'),
      sameSite: 'lax',
      path: '/',
      maxAge,
    }),
  );
}
