/**
 * Mail templates an operator overrides without forking (MAIL_TEMPLATE_DIR):
 * the rules for the files' names and their `{{variable}}` placeholders. No
 * I/O here: config.ts reads the directory, the mail renderer fills the parts.
 * A template is text with placeholders, never code: nothing in a file is run.
 */

/**
 * The placeholders each template's override may use. infra/mail-templates.ts
 * checks it against MailDataByTemplate, so a new template is a type error
 * until it is listed here.
 */
export const MAIL_VARIABLES = {
  verify_email: ['name', 'link'],
  reset_password: ['name', 'link'],
  password_changed: ['name', 'link'],
  registration_attempt: ['name', 'loginLink', 'resetLink'],
  registration_username_taken: ['username', 'registerLink'],
  mfa_enabled: ['name', 'link', 'resetLink'],
  mfa_disabled: ['name', 'link', 'resetLink'],
  mfa_backup_code_used: ['name', 'remaining', 'link', 'resetLink'],
  invitation: ['organizationName', 'inviterName', 'inviterEmail', 'role', 'link', 'abuseContact'],
  email_sign_in: ['name', 'link', 'code'],
  passkey_added: ['name', 'passkeyName', 'link', 'resetLink'],
  identity_linked: ['name', 'provider', 'link', 'resetLink'],
  email_change_confirm: ['name', 'newEmail', 'link'],
  email_change_notice: ['name', 'newEmail', 'link', 'resetLink'],
  email_change_taken: ['name', 'loginLink', 'resetLink'],
  account_created: ['name', 'username', 'link', 'hours'],
} as const satisfies Record<string, readonly string[]>;

export type MailPart = 'subject' | 'text' | 'html';

/** Literal text, or the name of the variable whose value goes there. */
type Segment = string | { variable: string };

type MailOverride = Partial<Record<MailPart, readonly Segment[]>>;

/** template → language tag (lower case; `''` for any language) → the parts the files give. */
export type MailOverrides = ReadonlyMap<string, ReadonlyMap<string, MailOverride>>;

export const NO_MAIL_OVERRIDES: MailOverrides = new Map();

/** A file bigger than this is a mistake (a mail is a few kilobytes). */
export const MAIL_OVERRIDE_MAX_BYTES = 256 * 1024;

const PART_SUFFIXES: readonly [string, MailPart][] = [
  ['.subject.txt', 'subject'],
  ['.txt', 'text'],
  ['.html', 'html'],
];

const LANGUAGE_TAG = /^[a-z]{2,8}(-[a-z0-9]{1,8})*$/i;
const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const VARIABLE = /^[A-Za-z][A-Za-z0-9_]*$/;

/** `<template>[.<language>].subject.txt | .txt | .html`, or why the name is not one. */
function parseOverrideFileName(
  file: string,
): { template: string; language: string; part: MailPart } | { error: string } {
  const suffix = PART_SUFFIXES.find(([ending]) => file.endsWith(ending));
  if (!suffix) return { error: 'is not a mail template part: the name must end in .subject.txt, .txt or .html' };
  const [ending, part] = suffix;
  const [template = '', language = '', ...rest] = file.slice(0, -ending.length).split('.');
  if (!Object.hasOwn(MAIL_VARIABLES, template)) {
    return { error: `names no mail template "${template}" (known: ${Object.keys(MAIL_VARIABLES).join(', ')})` };
  }
  if (rest.length > 0 || (language !== '' && !LANGUAGE_TAG.test(language))) {
    return {
      error: `must be ${template}.<language>${ending} with a language tag such as fr or fr-CA, or ${template}${ending}`,
    };
  }
  return { template, language: language.toLowerCase(), part };
}

/** A part's text as literal runs and placeholders; throws naming the first unknown or malformed placeholder. */
function compileOverride(source: string, allowed: readonly string[]): Segment[] {
  const segments: Segment[] = [];
  let at = 0;
  for (const match of source.matchAll(PLACEHOLDER)) {
    const name = match[1] as string;
    if (!VARIABLE.test(name)) throw new Error(`has a malformed placeholder "${match[0]}"`);
    if (!allowed.includes(name)) {
      throw new Error(
        `has an unknown placeholder {{${name}}} (this template knows ${allowed.map((v) => `{{${v}}}`).join(', ')})`,
      );
    }
    segments.push(source.slice(at, match.index), { variable: name });
    at = match.index + match[0].length;
  }
  segments.push(source.slice(at));
  const stray = segments.find((s) => typeof s === 'string' && (s.includes('{{') || s.includes('}}')));
  if (stray !== undefined) throw new Error('has an unclosed placeholder: "{{" or "}}" without its pair');
  return segments.filter((s) => s !== '');
}

/**
 * The overrides given by the files of a directory (name → UTF-8 content).
 * Throws an Error whose message names the file and what is wrong with it.
 */
export function buildMailOverrides(files: readonly { name: string; content: string }[]): MailOverrides {
  const overrides = new Map<string, Map<string, MailOverride>>();
  const seen = new Map<string, string>();
  for (const { name, content } of files) {
    const parsed = parseOverrideFileName(name);
    if ('error' in parsed) throw new Error(`the file "${name}" ${parsed.error}`);
    const { template, language, part } = parsed;
    const key = `${template}.${language}.${part}`;
    const twin = seen.get(key);
    if (twin !== undefined) throw new Error(`the files "${twin}" and "${name}" are the same part of one template`);
    seen.set(key, name);
    const source = content.replace(/^\uFEFF/, '');
    if (source.trim() === '') throw new Error(`the file "${name}" is empty`);
    let segments: Segment[];
    try {
      segments = compileOverride(source, MAIL_VARIABLES[template as keyof typeof MAIL_VARIABLES]);
    } catch (error) {
      throw new Error(`the file "${name}" ${(error as Error).message}`);
    }
    const byLanguage = overrides.get(template) ?? new Map<string, MailOverride>();
    byLanguage.set(language, { ...byLanguage.get(language), [part]: segments });
    overrides.set(template, byLanguage);
  }
  return overrides;
}

/** The parts the overrides give, as `template[.language].part` (for the start-up log). */
export function overriddenParts(overrides: MailOverrides): string[] {
  return [...overrides].flatMap(([template, byLanguage]) =>
    [...byLanguage].flatMap(([language, parts]) =>
      Object.keys(parts).map((part) => [template, language, part].filter(Boolean).join('.')),
    ),
  );
}

/**
 * The language tags to try for a user's tag, most specific first, lower case:
 * `pt-BR` → `pt-br`, `pt`. Empty for an empty or malformed tag.
 */
export function languageChain(languageCode: string): string[] {
  const tag = languageCode.trim().toLowerCase().replaceAll('_', '-');
  if (!LANGUAGE_TAG.test(tag)) return [];
  const subtags = tag.split('-');
  return subtags.map((_, i) => subtags.slice(0, subtags.length - i).join('-'));
}

/**
 * The override of one part for a user's language: the most specific language
 * file first, then the file without a language; undefined when none gives it.
 */
export function overridePart(
  overrides: MailOverrides,
  template: string,
  languageCode: string,
  part: MailPart,
): readonly Segment[] | undefined {
  const byLanguage = overrides.get(template);
  if (!byLanguage) return undefined;
  for (const language of [...languageChain(languageCode), '']) {
    const segments = byLanguage.get(language)?.[part];
    if (segments) return segments;
  }
  return undefined;
}

/** Fills a part's placeholders; `value` turns a variable's value into what the part shows (e.g. escaped). */
export function fillOverride(segments: readonly Segment[], value: (variable: string) => string): string {
  return segments.map((s) => (typeof s === 'string' ? s : value(s.variable))).join('');
}
