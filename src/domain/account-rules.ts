import type { FieldError } from './errors.ts';
import { characterLength, hasControlCharacters, isStorableText } from './text.ts';

const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const TOP_LEVEL = /^(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$/;
const USERNAME = /^[A-Za-z0-9_-]{3,50}$/;

export type Check<T> = { ok: true; value: T } | { ok: false; error: FieldError };

function fail<T>(field: string, message: string, code: string): Check<T> {
  return { ok: false, error: { field, message, code } };
}

/**
 * A deliverable-looking address: dot-atom local part, dotted host name with a
 * top-level label; no display names, quoted local parts or IP literals.
 * Linear time: the length is bounded first and every pattern is unambiguous.
 */
export function checkEmail(raw: string, field = 'email'): Check<string> {
  const unstorable = checkStorable(raw, field);
  if (unstorable) return { ok: false, error: unstorable };
  const value = raw.trim();
  if (value === '') return fail(field, 'Email is required', 'required');
  if (value.length > 254) return fail(field, 'Email must be at most 254 characters', 'too_long');
  const at = value.lastIndexOf('@');
  const local = value.slice(0, at);
  const domain = value.slice(at + 1);
  const labels = domain.split('.');
  const valid =
    at > 0 &&
    local.length <= 64 &&
    LOCAL_PART.test(local) &&
    labels.length >= 2 &&
    labels.every((label) => DOMAIN_LABEL.test(label)) &&
    TOP_LEVEL.test(labels[labels.length - 1] as string);
  if (!valid) return fail(field, 'Email must be a valid email address', 'invalid_format');
  return { ok: true, value: value.toLowerCase() };
}

export function checkUsername(raw: string): Check<string> {
  const value = raw.trim();
  if (value === '') return fail('username', 'Username is required', 'required');
  if (value.length < 3 || value.length > 50) {
    return fail('username', 'Username must be between 3 and 50 characters', 'invalid_length');
  }
  if (!USERNAME.test(value)) {
    return fail('username', 'Username may contain only letters, digits, hyphens and underscores', 'invalid_format');
  }
  return { ok: true, value: value.toLowerCase() };
}

/**
 * A username for a registration that gave none (USERNAME_REQUIRED=false): the
 * email address's local part, accents dropped, lower-cased, every run of
 * characters other than a-z, 0-9, - and _ made one `_`, cut to 40 characters
 * (`user` when fewer than 3 remain), then `_` and `suffix` (random hex from
 * the caller): `Zoë.O'Brien+news@x.org` → `zoe_o_brien_news_1a2b3c4d`.
 */
export function usernameFromEmail(email: string, suffix: string): string {
  const local = email.trim().split('@')[0] ?? '';
  const base = local
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '_')
    .replace(/^[_-]+|[_-]+$/g, '')
    .slice(0, 40)
    .replace(/[_-]+$/, '');
  return `${base.length >= 3 ? base : 'user'}_${suffix}`;
}

/** Trimmed, NFC, at most `max` characters, no control characters; empty → null. */
export function checkPersonName(raw: string, field: string, max = 100): Check<string | null> {
  const value = raw.normalize('NFC').trim();
  if (value === '') return { ok: true, value: null };
  if (characterLength(value) > max) return fail(field, `Must be at most ${max} characters`, 'too_long');
  if (hasControlCharacters(value)) return fail(field, 'Must not contain control characters', 'invalid_characters');
  return { ok: true, value };
}

export function checkOrganizationName(raw: string, field = 'organization_name'): Check<string> {
  const value = raw.normalize('NFC').trim();
  if (value === '' || characterLength(value) > 100) {
    return fail(field, 'Organization name must be between 1 and 100 characters', 'invalid_length');
  }
  if (hasControlCharacters(value)) return fail(field, 'Must not contain control characters', 'invalid_characters');
  return { ok: true, value };
}

/** A BCP 47 tag, canonicalised (`pt-br` → `pt-BR`). */
export function checkLanguageCode(raw: string): Check<string> {
  const value = raw.trim();
  if (value.length === 0 || value.length > 35 || !/^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*$/.test(value)) {
    return fail('language_code', 'Language code must be a BCP 47 tag such as en or pt-BR', 'invalid_format');
  }
  try {
    const [canonical] = Intl.getCanonicalLocales(value);
    return { ok: true, value: canonical as string };
  } catch {
    return fail('language_code', 'Language code must be a BCP 47 tag such as en or pt-BR', 'invalid_format');
  }
}

/** Strings that PostgreSQL cannot store are refused before any rule runs. */
export function checkStorable(value: string, field: string): FieldError | undefined {
  if (isStorableText(value)) return undefined;
  return { field, message: 'Must not contain NUL bytes or invalid Unicode', code: 'invalid_characters' };
}

/** `Acme Corporation` → `acme-corporation`. */
export function slugify(name: string): string {
  const slug = name
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
    .replace(/-+$/, '');
  return slug === '' ? 'organization' : slug;
}

/** Largest `user_metadata` or `app_metadata`, as JSON in UTF-8. */
const METADATA_MAX_BYTES = 4096;

/**
 * `user_metadata` / `app_metadata`: a JSON object (not an array, null or a
 * scalar) of at most METADATA_MAX_BYTES serialized, whose keys and strings
 * PostgreSQL can store (no NUL, no lone surrogates).
 */
export function checkMetadata(value: unknown, field: string): Check<Record<string, unknown>> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(field, 'Must be a JSON object', 'invalid_type');
  }
  if (new TextEncoder().encode(JSON.stringify(value)).length > METADATA_MAX_BYTES) {
    return fail(field, `Must be at most ${METADATA_MAX_BYTES} bytes as JSON`, 'too_large');
  }
  if (!storableJson(value)) return fail(field, 'Must not contain NUL bytes or invalid Unicode', 'invalid_characters');
  return { ok: true, value: value as Record<string, unknown> };
}

function storableJson(value: unknown): boolean {
  if (typeof value === 'string') return isStorableText(value);
  if (Array.isArray(value)) return value.every(storableJson);
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).every(([key, item]) => isStorableText(key) && storableJson(item));
  }
  return true;
}
