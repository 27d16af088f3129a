import { characterLength } from './text.ts';

const SPECIAL_CHARACTERS = '!@#$%^&*()_+-=[]{}|;:,.<>?';
const COMMON_PATTERNS = ['password', '123456', 'qwerty', 'admin', 'letmein'];
/** Words a password may not be made of alone, however spelled (the common patterns' words and a few more). */
const COMMON_WORDS = ['password', 'qwerty', 'admin', 'letmein', 'welcome', 'iloveyou', 'monkey', 'dragon', 'master'];
/** What each letter may be disguised as, besides itself (compared lower-cased). */
const LOOK_ALIKES: Record<string, string> = {
  a: '@4',
  b: '8',
  e: '3',
  g: '69',
  i: '1!|',
  l: '1|!',
  o: '0',
  s: '$5',
  t: '7+',
  z: '2',
};
const escapeClass = (chars: string) => chars.replace(/[\\\]^-]/g, '\\$&');
/**
 * A password that is, once lower-cased and NFKC-folded, nothing but one common
 * word, each letter itself or a look-alike (0→o, 1→i/l, 3→e, 4→a, 5→s, 7→t,
 * @→a, $→s, !→i…), with only digits and symbols (no letters) before and after:
 * `P@ssw0rd1234!`, `Qw3rty!!2024`. Other words besides (`MySecureP@ssw0rd123!`)
 * make it no longer a common word in disguise.
 */
const DISGUISED_COMMON_WORD = new RegExp(
  `^[^\\p{L}]*(?:${COMMON_WORDS.map((word) =>
    [...word].map((c) => `[${c}${escapeClass(LOOK_ALIKES[c] ?? '')}]`).join(''),
  ).join('|')})[^\\p{L}]*$`,
  'u',
);

/** Whether the password is only a common word in disguise plus digits and symbols. */
function isDisguisedCommonWord(password: string): boolean {
  return DISGUISED_COMMON_WORD.test(password.normalize('NFKC').toLowerCase());
}

/** strict: a common pattern anywhere; nist: the whole password one (a blocklist of values, as SP 800-63B). */
function hasCommonPattern(password: string, preset: PasswordPolicyPreset): boolean {
  const lower = password.toLowerCase();
  if (preset === 'strict') return COMMON_PATTERNS.some((p) => lower.includes(p));
  return COMMON_PATTERNS.includes(lower) || isDisguisedCommonWord(password);
}

/** bcrypt reads only the first 72 bytes; longer passwords are refused, never truncated. */
export const BCRYPT_MAX_BYTES = 72;
export const MAX_PASSWORD_LENGTH = 128;
/** PASSWORD_MIN_LENGTH may lower the preset's minimum to this, never below. */
export const PASSWORD_MIN_LENGTH_FLOOR = 8;

export type PasswordHasherName = 'argon2id' | 'bcrypt';
export type PasswordPolicyPreset = 'strict' | 'nist';

export interface PasswordContext {
  username?: string | undefined;
  email?: string | undefined;
}

export interface PasswordPolicy {
  preset: PasswordPolicyPreset;
  hasher: PasswordHasherName;
  /** PASSWORD_MIN_LENGTH; the preset's default (`DEFAULT_MIN_PASSWORD_LENGTH`) when absent. */
  minLength?: number | undefined;
}

/** Passwords are compared and hashed in NFC so that the same typed text always matches. */
export function normalizePassword(password: string): string {
  return password.normalize('NFC');
}

export const DEFAULT_MIN_PASSWORD_LENGTH: Record<PasswordPolicyPreset, number> = { strict: 12, nist: 15 };

function minLength(policy: PasswordPolicy): number {
  return policy.minLength ?? DEFAULT_MIN_PASSWORD_LENGTH[policy.preset];
}

/** Every rule the password breaks, in a stable order; empty when it is acceptable. */
export function passwordPolicyIssues(password: string, context: PasswordContext, policy: PasswordPolicy): string[] {
  const issues: string[] = [];
  const length = characterLength(password);
  const min = minLength(policy);
  if (length < min) issues.push(`Password must be at least ${min} characters long`);
  if (length > MAX_PASSWORD_LENGTH) issues.push(`Password must be at most ${MAX_PASSWORD_LENGTH} characters long`);
  if (policy.hasher === 'bcrypt' && Buffer.byteLength(password) > BCRYPT_MAX_BYTES) {
    issues.push(`Password must be at most ${BCRYPT_MAX_BYTES} bytes long`);
  }
  if (policy.preset === 'strict') {
    if (!/\p{Lu}/u.test(password)) issues.push('Password must contain at least one uppercase letter');
    if (!/\p{Ll}/u.test(password)) issues.push('Password must contain at least one lowercase letter');
    if (!/\d/.test(password)) issues.push('Password must contain at least one digit');
    if (![...password].some((c) => SPECIAL_CHARACTERS.includes(c))) {
      issues.push('Password must contain at least one special character');
    }
  }
  const lower = password.toLowerCase();
  if (hasCommonPattern(password, policy.preset) || isDisguisedCommonWord(password)) {
    issues.push('Password must not contain common patterns');
  }
  const username = context.username?.toLowerCase();
  if (username && username.length >= 3 && lower.includes(username)) {
    issues.push('Password must not contain your username');
  }
  const local = context.email?.toLowerCase().split('@')[0];
  if (local && local.length >= 3 && lower.includes(local)) {
    issues.push('Password must not contain your email address');
  }
  return issues;
}

/** Every rule of `passwordPolicyIssues` in one sentence, for the hint beside a new-password field. */
export function passwordPolicyHint(policy: PasswordPolicy): string {
  const bytes = policy.hasher === 'bcrypt' ? ` and ${BCRYPT_MAX_BYTES} bytes` : '';
  const length = `At least ${minLength(policy)} characters (at most ${MAX_PASSWORD_LENGTH}${bytes})`;
  const classes =
    policy.preset === 'strict'
      ? `, with an uppercase and a lowercase letter, a digit and a special character (one of ${SPECIAL_CHARACTERS})`
      : '';
  const patterns = COMMON_PATTERNS.map((p) => `"${p}"`).join(', ');
  const where = policy.preset === 'strict' ? '' : ' as the whole password';
  return `${length}${classes}. No common patterns (${patterns})${where}, not a common word in disguise (look-alike characters, numbers and punctuation around it, as in P@ssw0rd1!), and not your username or email address.`;
}
