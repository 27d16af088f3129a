/**
 * Shapes of the identifiers a request names: who signs in, and which row a
 * path means. Checked before any query, so malformed input is simply "not found".
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Any-case canonical UUID text (the form PostgreSQL prints and accepts). */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** The lower-case form a UUID is stored and compared in; undefined when `value` is not a UUID. */
export function canonicalUuid(value: unknown): string | undefined {
  return isUuid(value) ? value.toLowerCase() : undefined;
}

/**
 * A username or e-mail address as typed at login, in the form both are stored
 * in: trimmed, NFC (so composed and decomposed accents are one name), lower-case.
 */
export function normalizeIdentifier(raw: string): string {
  return raw.trim().normalize('NFC').toLowerCase();
}

/** E-mail addresses hold an "@"; usernames cannot (their rule allows letters, digits and `._-`). */
export function isEmailIdentifier(identifier: string): boolean {
  return identifier.includes('@');
}

/** Longest one-time token a link may carry; ours are 43 characters, so anything far longer is not one. */
const LINK_TOKEN_MAX = 512;

/** Could this be a one-time token from a mailed link? Checked before it is hashed and looked up. */
export function isLinkTokenShaped(token: unknown): token is string {
  return typeof token === 'string' && token !== '' && token.length <= LINK_TOKEN_MAX;
}
