/** C0/C1 controls and the bidirectional overrides that disguise text. */
const CONTROL = /[\p{Cc}\u202A-\u202E\u2066-\u2069]/u;

/** PostgreSQL cannot store NUL, and lone surrogates cannot be encoded as UTF-8. */
export function isStorableText(value: string): boolean {
  return value.isWellFormed() && !value.includes('\u0000');
}

export function hasControlCharacters(value: string): boolean {
  return CONTROL.test(value);
}

/** Length in code points, which is what a person counts as characters. */
export function characterLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}
