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

/**
 * Characters that reorder or hide the text around them (the bidirectional
 * marks, embeddings, overrides and isolates), plus the zero-width space and
 * byte order mark: a name that carries them can show something other than
 * what it says.
 */
const INVISIBLE = /[\u061C\u200B\u200E\u200F\u202A-\u202E\u2066-\u2069\uFEFF]/gu;
/** Line breaks of every kind and the other control characters, each read as a space. */
const BREAKING = /[\p{Cc}\u2028\u2029]+/gu;

const graphemes = new Intl.Segmenter('en', { granularity: 'grapheme' });

/**
 * Text someone else chose (an organization or a person's name), made fit for
 * one line of a mail subject or body: NFC; controls, line breaks and runs of
 * white space become one space; bidirectional controls and invisible
 * characters go; at most `max` user-perceived characters, the last of them
 * an ellipsis when it was cut.
 */
export function oneLine(value: string, max: number): string {
  const flat = value.normalize('NFC').replace(INVISIBLE, '').replace(BREAKING, ' ').replace(/\s+/gu, ' ').trim();
  const parts = [...graphemes.segment(flat)].map((s) => s.segment);
  if (parts.length <= max) return flat;
  return `${parts
    .slice(0, Math.max(0, max - 1))
    .join('')
    .trimEnd()}…`;
}
