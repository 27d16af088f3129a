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

/** Every rule the password breaks, in a stable order; empty when it is acceptable. */
export function passwordPolicyIssues(password: string, context: PasswordContext, policy: PasswordPolicy): string[] {
  const issues: string[] = [];
  const length = characterLength(password);
  const min = policy.preset === 'nist' ? 15 : 12;
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
