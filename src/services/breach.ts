import { dictionary } from '@zxcvbn-ts/language-common';

/** Answers whether a password is known from breaches or common-password lists. */
export interface BreachChecker {
  isBreached(password: string): Promise<boolean>;
}

/** Leetspeak folded back, so `P@ssw0rd` is found as `password`. */
const LEET: Record<string, string> = {
  '@': 'a',
  '4': 'a',
  '3': 'e',
  '1': 'i',
  '!': 'i',
  '0': 'o',
  $: 's',
  '5': 's',
  '7': 't',
};

/**
 * The default offline checker: the ~49 000 most common passwords from real
 * breach corpora, as shipped by `@zxcvbn-ts/language-common`. Case and common
 * substitutions are folded before lookup.
 */
export class CommonPasswordChecker implements BreachChecker {
  readonly #passwords: ReadonlySet<string>;

  constructor(passwords: Iterable<string> = dictionary['passwords-common']) {
    this.#passwords = new Set(passwords);
  }

  async isBreached(password: string): Promise<boolean> {
    const lower = password.toLowerCase();
    if (this.#passwords.has(lower)) return true;
    const folded = lower.replace(/[@43!10$57]/g, (c) => LEET[c] ?? c);
    return this.#passwords.has(folded);
  }
}

/** `BREACH_CHECK=off`: for deployments that check elsewhere. */
export class NoBreachChecker implements BreachChecker {
  async isBreached(): Promise<boolean> {
    return false;
  }
}
