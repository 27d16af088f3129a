import { characterLength } from './text.ts';

const SPECIAL_CHARACTERS = '!@#$%^&*()_+-=[]{}|;:,.<>?';
const COMMON_PATTERNS = ['password', '123456', 'qwerty', 'admin', 'letmein'];
/** bcrypt reads only the first 72 bytes; longer passwords are refused, never truncated. */
export const BCRYPT_MAX_BYTES = 72;
const MAX_PASSWORD_LENGTH = 128;

export type PasswordHasherName = 'argon2id' | 'bcrypt';
export type PasswordPolicyPreset = 'strict' | 'nist';

export interface PasswordContext {
  username?: string | undefined;
  email?: string | undefined;
}

export interface PasswordPolicy {
  preset: PasswordPolicyPreset;
  hasher: PasswordHasherName;
}

/** Passwords are compared and hashed in NFC so that the same typed text always matches. */
export function normalizePassword(password: string): string {
  return password.normalize('NFC');
}

const MIN_PASSWORD_LENGTH: Record<PasswordPolicyPreset, number> = { strict: 12, nist: 15 };

/** Every rule the password breaks, in a stable order; empty when it is acceptable. */
export function passwordPolicyIssues(password: string, context: PasswordContext, policy: PasswordPolicy): string[] {
  const issues: string[] = [];
  const length = characterLength(password);
  const min = MIN_PASSWORD_LENGTH[policy.preset];
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
  if (COMMON_PATTERNS.some((p) => lower.includes(p))) issues.push('Password must not contain common patterns');
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
  const length = `At least ${MIN_PASSWORD_LENGTH[policy.preset]} characters (at most ${MAX_PASSWORD_LENGTH}${bytes})`;
  const classes =
    policy.preset === 'strict'
      ? `, with an uppercase and a lowercase letter, a digit and a special character (one of ${SPECIAL_CHARACTERS})`
      : '';
  const patterns = COMMON_PATTERNS.map((p) => `"${p}"`).join(', ');
  return `${length}${classes}. No common patterns (${patterns}), and not your username or email address.`;
}
