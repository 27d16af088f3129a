import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Eta, EtaFileResolutionError } from 'eta';
import type { CaptchaProvider } from '../../config.ts';
import type { PageStyles } from '../../domain/page-options.ts';

const DEFAULT_DIR = fileURLToPath(new URL('../../views/', import.meta.url));
const TEMPLATE_NAME = /^[a-z][a-z0-9-]*$/;

/** The widget of each CAPTCHA provider, and the origins the page must allow for it. */
export interface CaptchaWidget {
  provider: CaptchaProvider;
  siteKey: string;
  className: string;
  scriptSrc: string;
  origins: { script: string[]; frame: string[]; style: string[]; connect: string[] };
}

const HCAPTCHA = ['https://hcaptcha.com', 'https://*.hcaptcha.com'];
const RECAPTCHA_FRAMES = ['https://www.google.com/recaptcha/', 'https://recaptcha.google.com/recaptcha/'];
const TURNSTILE = ['https://challenges.cloudflare.com'];

export function captchaWidget(
  provider: CaptchaProvider | undefined,
  siteKey: string | undefined,
): CaptchaWidget | undefined {
  if (!provider || !siteKey) return undefined;
  switch (provider) {
    case 'hcaptcha':
      return {
        provider,
        siteKey,
        className: 'h-captcha',
        scriptSrc: 'https://js.hcaptcha.com/1/api.js',
        origins: { script: HCAPTCHA, frame: HCAPTCHA, style: HCAPTCHA, connect: HCAPTCHA },
      };
    case 'recaptcha':
      return {
        provider,
        siteKey,
        className: 'g-recaptcha',
        scriptSrc: 'https://www.google.com/recaptcha/api.js',
        origins: {
          script: ['https://www.google.com/recaptcha/', 'https://www.gstatic.com/recaptcha/'],
          frame: RECAPTCHA_FRAMES,
          style: [],
          connect: [],
        },
      };
    case 'turnstile':
      return {
        provider,
        siteKey,
        className: 'cf-turnstile',
        scriptSrc: 'https://challenges.cloudflare.com/turnstile/v0/api.js',
        origins: { script: TURNSTILE, frame: TURNSTILE, style: [], connect: [] },
      };
  }
}

/**
 * No inline script or style anywhere, so none is allowed: the pages work
 * without JavaScript; the passkey script is a file of this site, and only a
 * configured CAPTCHA widget may load its own.
 * Forms post to this site (and follow redirects to the configured targets).
 */
export function contentSecurityPolicy(options: { captcha?: CaptchaWidget | undefined; formTargets: string[] }): string {
  const { captcha } = options;
  const directives: [string, string[]][] = [
    ['default-src', ["'none'"]],
    ['base-uri', ["'none'"]],
    ['form-action', ["'self'", ...options.formTargets]],
    ['frame-ancestors', ["'none'"]],
    ['img-src', ["'self'", 'data:']],
    ['style-src', ["'self'", ...(captcha?.origins.style ?? [])]],
    // The passkey buttons: one same-origin script file, which posts to this site's own pages.
    ['script-src', ["'self'", ...(captcha?.origins.script ?? [])]],
    ['connect-src', ["'self'", ...(captcha?.origins.connect ?? [])]],
  ];
  if (captcha) directives.push(['frame-src', captcha.origins.frame]);
  return directives.map(([name, values]) => `${name} ${values.join(' ')}`).join('; ');
}

/**
 * The page templates (eta, every `<%= %>` HTML-escaped) and the stylesheet.
 * A template directory overrides any default file of the same name
 * (`login.eta`, `field.eta`, `styles.css`…); the rest keep their defaults.
 */
export class PageViews {
  readonly #eta: Eta;
  readonly #overrideDir: string | undefined;
  readonly #paths = new Map<string, string>();
  readonly #cache: boolean;
  readonly stylesheet: { css: string; version: string };

  constructor(options: { templateDir: string | undefined; styles: PageStyles; cache: boolean }) {
    this.#overrideDir = options.templateDir ? resolve(options.templateDir) : undefined;
    if (this.#overrideDir && !existsSync(this.#overrideDir)) {
      throw new Error(`Gatehouse pages: the template directory ${this.#overrideDir} does not exist`);
    }
    this.#cache = options.cache;
    this.#eta = new Eta({ views: DEFAULT_DIR, autoEscape: true, cache: options.cache, autoTrim: [false, 'nl'] });
    this.#eta.resolvePath = (template: string) => this.#resolve(template);
    const css = readFileSync(this.#file('styles.css'), 'utf8') + themeBlock(options.styles);
    this.stylesheet = { css, version: createHash('sha256').update(css).digest('hex').slice(0, 12) };
  }

  render(template: string, data: object): string {
    return this.#eta.render(template, data);
  }

  /** `layout`, `./field`, `field.eta` → the override's file when it has one, else the default. */
  #resolve(template: string): string {
    const name = template.replace(/^\.\//, '').replace(/\.eta$/, '');
    if (!TEMPLATE_NAME.test(name)) throw new EtaFileResolutionError(`Template name "${template}" is not allowed`);
    const known = this.#cache ? this.#paths.get(name) : undefined;
    if (known) return known;
    const path = this.#file(`${name}.eta`);
    if (!existsSync(path)) throw new EtaFileResolutionError(`Template "${name}" does not exist`);
    this.#paths.set(name, path);
    return path;
  }

  #file(fileName: string): string {
    if (this.#overrideDir) {
      const override = join(this.#overrideDir, fileName);
      if (existsSync(override)) return override;
    }
    return join(DEFAULT_DIR, fileName);
  }
}

/** The configured styles, after the stylesheet so that they win. */
function themeBlock(styles: PageStyles): string {
  const entries = Object.entries(styles);
  if (entries.length === 0) return '';
  return `\n/* PAGES_STYLES */\n:root {\n${entries.map(([name, value]) => `  --gh-${name}: ${value};`).join('\n')}\n}\n`;
}
