import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { Config } from '../../config.ts';
import type { IssuedSession } from '../../infra/sessions.ts';
import { sha256Hex } from '../../infra/sha256.ts';

export interface CookieNames {
  session: string;
  csrf: string;
  flash: string;
}

/** Served over https, `__Host-` cookies cannot be set by a sibling subdomain or scoped to a sub-path. */
export function cookieNames(config: Config): CookieNames {
  const prefix = isSecure(config) ? '__Host-' : '';
  return { session: `${prefix}gatehouse-session`, csrf: `${prefix}gatehouse-csrf`, flash: `${prefix}gatehouse-flash` };
}

function isSecure(config: Config): boolean {
  return config.publicUrl.startsWith('https:');
}

/** httpOnly, SameSite=Lax (a link from a mail still arrives signed in), Secure when PUBLIC_URL is https. */
export function serializeCookie(config: Config, name: string, value: string, maxAgeSeconds: number): string {
  return stringifySetCookie({
    name,
    value,
    httpOnly: true,
    secure: isSecure(config),
    sameSite: 'lax',
    path: '/',
    maxAge: Math.max(0, Math.floor(maxAgeSeconds)),
  });
}

export function readCookies(header: string | undefined): Record<string, string | undefined> {
  return typeof header === 'string' ? parseCookie(header) : {};
}

/** The Set-Cookie of a session the login page just started. */
export function sessionCookie(config: Config, issued: IssuedSession): string {
  return serializeCookie(
    config,
    cookieNames(config).session,
    issued.tokens.refresh_token,
    issued.tokens.refresh_expires_in,
  );
}

/**
 * CSRF: a signed double-submit token. The browser holds a random secret in an
 * httpOnly cookie; each form carries HMAC(SECRET_KEY, secret + session). A
 * cross-site page can make the browser send the cookie but can neither read
 * it nor compute the MAC; binding to the session cookie means a token shown
 * before login is void after it (and the reverse).
 */
export function newCsrfSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function csrfToken(config: Config, secret: string, sessionCookieValue: string | undefined): string {
  const binding = sessionCookieValue ? sha256Hex(sessionCookieValue) : '-';
  return createHmac('sha256', config.secretKey).update(`gatehouse-csrf\n${secret}\n${binding}`).digest('base64url');
}

export function csrfTokenValid(
  config: Config,
  secret: string | undefined,
  sessionCookieValue: string | undefined,
  presented: unknown,
): boolean {
  if (!secret || typeof presented !== 'string' || presented === '') return false;
  const expected = Buffer.from(csrfToken(config, secret, sessionCookieValue));
  const given = Buffer.from(presented);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
