/**
 * What an operator can change about the HTML pages, from the environment
 * (PAGES_*) or the plugin's `pages` option. Checked once, at start-up: a bad
 * value stops the process with a message naming it.
 */

/** The CSS custom properties the default stylesheet reads, without their `--gh-` prefix. */
const STYLE_VARIABLES = [
  'color-primary',
  'color-primary-hover',
  'color-primary-contrast',
  'color-background',
  'color-surface',
  'color-text',
  'color-muted',
  'color-border',
  'color-input-border',
  'color-error',
  'color-success',
  'color-focus',
  'font-family',
  'font-size',
  'radius',
  'max-width',
] as const;
type StyleVariable = (typeof STYLE_VARIABLES)[number];
export type PageStyles = Partial<Record<StyleVariable, string>>;

/** Registration fields a deployment may fill in for new users. */
export const USER_DEFAULT_FIELDS = ['first_name', 'last_name', 'language_code', 'organization_name'] as const;
type UserDefaultField = (typeof USER_DEFAULT_FIELDS)[number];
export type PageUserDefaults = Partial<Record<UserDefaultField, string>>;

/** Where each flow sends the browser on success (a path or an absolute URL). */
interface PageRedirects {
  /** After registration. Default `<mount>/login`. */
  register?: string | undefined;
  /** After logging in. Default `<mount>/account`. */
  login?: string | undefined;
  /** After logging out. Default `<mount>/login`. */
  logout?: string | undefined;
}

export interface PagesConfig {
  enabled: boolean;
  redirectTo: PageRedirects;
  /** A directory whose `<name>.eta` files (and `styles.css`) replace the default ones of that name. */
  templateDir: string | undefined;
  styles: PageStyles;
  /** Pages answer GET only; every form POST is refused with 405. */
  readOnly: boolean;
  userDefaults: PageUserDefaults;
}

/** The plugin's `pages` option: each member given replaces the configured one. */
export type PagesOptions = Partial<Omit<PagesConfig, 'enabled'>>;

function plainObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`must be a JSON object of ${what}`);
  }
  return value as Record<string, unknown>;
}

// A value is pasted into the stylesheet: nothing that could end the declaration or fetch anything.
const SAFE_STYLE_VALUE = /^[\w\s#%.,()'"+\-/]{1,200}$/;

export function parsePageStyles(value: unknown): PageStyles {
  const styles: PageStyles = {};
  for (const [key, raw] of Object.entries(plainObject(value, 'style names and values'))) {
    const name = key.replace(/^--gh-/, '');
    if (!(STYLE_VARIABLES as readonly string[]).includes(name)) {
      throw new Error(`unknown style "${key}"; known: ${STYLE_VARIABLES.join(', ')}`);
    }
    if (typeof raw !== 'string' || !SAFE_STYLE_VALUE.test(raw) || /url\s*\(|expression\s*\(/i.test(raw)) {
      throw new Error(`style "${key}" must be a plain CSS value (letters, digits, # % . , ( ) quotes, at most 200)`);
    }
    styles[name as StyleVariable] = raw.trim();
  }
  return styles;
}

export function parseUserDefaults(value: unknown): PageUserDefaults {
  const defaults: PageUserDefaults = {};
  for (const [key, raw] of Object.entries(plainObject(value, 'registration fields and values'))) {
    // piccolo's `user_defaults={"active": true}`: every new account is active already.
    if (key === 'active') {
      if (raw === true) continue;
      throw new Error(
        '"active" can only be true: accounts are active when created; REQUIRE_EMAIL_VERIFICATION decides whether they must verify first',
      );
    }
    if (!(USER_DEFAULT_FIELDS as readonly string[]).includes(key)) {
      throw new Error(`unknown field "${key}"; known: ${USER_DEFAULT_FIELDS.join(', ')}`);
    }
    if (typeof raw !== 'string' || raw.length > 100) throw new Error(`"${key}" must be a string of at most 100`);
    defaults[key as UserDefaultField] = raw;
  }
  return defaults;
}

/**
 * A configured redirect: an absolute path on this site (printable ASCII, as a
 * Location header carries it), or an absolute http(s) URL.
 */
export function parseRedirectTarget(value: string): string {
  if (/^\/[\x21-\x7e]*$/.test(value) && !value.startsWith('//') && !value.includes('\\')) return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`must be a path starting with / or an absolute http(s) URL, got "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`must be a path starting with / or an absolute http(s) URL, got "${value}"`);
  }
  return url.toString();
}

/** Plugin options over configuration, each checked like its environment variable. */
export function resolvePagesConfig(config: PagesConfig, options: PagesOptions = {}): PagesConfig {
  const redirectTo = { ...config.redirectTo };
  for (const key of ['register', 'login', 'logout'] as const) {
    const target = options.redirectTo?.[key];
    if (target !== undefined) redirectTo[key] = checked(`pages.redirectTo.${key}`, () => parseRedirectTarget(target));
  }
  return {
    enabled: config.enabled,
    redirectTo,
    templateDir: options.templateDir ?? config.templateDir,
    styles: options.styles ? checked('pages.styles', () => parsePageStyles(options.styles)) : config.styles,
    readOnly: options.readOnly ?? config.readOnly,
    userDefaults: options.userDefaults
      ? checked('pages.userDefaults', () => parseUserDefaults(options.userDefaults))
      : config.userDefaults,
  };
}

function checked<T>(option: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new Error(`Gatehouse option ${option}: ${(error as Error).message}`);
  }
}
