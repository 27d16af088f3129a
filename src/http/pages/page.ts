import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../domain/errors.ts';
import type { PagesConfig } from '../../domain/page-options.ts';
import { passwordPolicyHint } from '../../domain/password-policy.ts';
import { authenticateBrowserSession, type BrowserSession } from '../../flows/authenticate.ts';
import { EMAIL_CHANGE_REQUESTED_MESSAGE } from '../../flows/email-change.ts';
import { FORGOT_PASSWORD_MESSAGE } from '../../flows/password-reset.ts';
import { ACCEPTED_REGISTRATION_MESSAGE } from '../../flows/register.ts';
import { RESEND_VERIFICATION_MESSAGE } from '../../flows/verify-email.ts';
import type { Services } from '../../infra/container.ts';
import { cookieNames, csrfToken, csrfTokenValid, newCsrfSecret, readCookies, serializeCookie } from './cookies.ts';
import { type FormErrors, NO_ERRORS } from './forms.ts';
import { type CaptchaWidget, captchaWidget, contentSecurityPolicy, PageViews } from './views.ts';

/** One-shot messages carried across a redirect by a short-lived cookie that holds only their key. */
const NOTICES = {
  registered: 'Your account was created. We sent you an email: follow its link to verify your address, then log in.',
  registered_verified: 'Your account was created. You can log in now.',
  registration_received: ACCEPTED_REGISTRATION_MESSAGE,
  email_verified: 'Your email address is verified. You can log in now.',
  verification_sent: RESEND_VERIFICATION_MESSAGE,
  reset_sent: FORGOT_PASSWORD_MESSAGE,
  password_reset: 'Your password was changed and every session was signed out. Log in with your new password.',
  signed_out: 'You are signed out.',
  profile_saved: 'Your profile was saved.',
  password_changed: 'Your password was changed. Your other sessions were signed out.',
  session_revoked: 'That session was signed out.',
  invitation_accepted: 'You joined the organization. It is listed under your organizations.',
  mfa_disabled: 'Two-step verification is off. Signing in asks only for your password now.',
  passkey_added: 'Your passkey was added. You can sign in with it now.',
  passkey_removed: 'That passkey was removed.',
  app_revoked: 'That application no longer has access to your account, and its sign-ins were ended.',
  identity_unlinked: 'That sign-in provider was unlinked from your account.',
  email_change_sent: EMAIL_CHANGE_REQUESTED_MESSAGE,
  email_changed: 'Your new email address is confirmed: your account uses it from now on.',
  email_change_reverted:
    'Your previous email address is back and every session was signed out. If you did not ask for the change, reset your password now.',
} as const;
export type Notice = keyof typeof NOTICES;

const FLASH_SECONDS = 60;
const CSRF_COOKIE_SECONDS = 30 * 24 * 3600;

/** The per-request state of a page: cookies read once, the CSRF secret, the browser session when asked for. */
interface PageRequestState {
  cookies: Record<string, string | undefined>;
  /** The CSRF secret, and whether this response must set it. */
  csrfSecret: string;
  csrfSecretIsNew: boolean;
  /** The session cookie the next form post will carry (undefined once this response clears it). */
  sessionCookie: string | undefined;
  session: Promise<BrowserSession | undefined> | undefined;
  /** Origins a form on this page may end up at besides this site (a client continuing its sign-in). */
  formTargets: string[];
}

declare module 'fastify' {
  interface FastifyRequest {
    gatehousePage: PageRequestState;
  }
}

/** Every member a template receives besides its own. */
export interface PageData {
  title: string;
  values?: Record<string, string>;
  errors?: FormErrors;
  /** Labels of the form's inputs, for the error summary's links. */
  labels?: Record<string, string>;
  captcha?: boolean;
  /** A wider layout (the account page). */
  wide?: boolean;
  /** Origins this page's forms may end up at besides this site, for `form-action`. */
  formTargets?: string[];
  [key: string]: unknown;
}

/** Things every flow needs: rendering, redirects, the session, CSRF. One instance per mount. */
export class Pages {
  readonly services: Services;
  readonly settings: PagesConfig;
  readonly views: PageViews;
  readonly base: string;
  readonly captcha: CaptchaWidget | undefined;
  /** "Continue with …" links of SSO_PROVIDERS, for the login and register pages. */
  ssoButtons: { name: string; label: string; href: string }[] = [];
  /** Where the JSON API is mounted, from the root of the app. */
  apiPrefix = '/api/v1';
  readonly #cookies: ReturnType<typeof cookieNames>;
  readonly #formTargets: string[];
  readonly #publicOrigin: string;

  constructor(services: Services, settings: PagesConfig, base: string) {
    this.services = services;
    this.settings = settings;
    this.base = base;
    this.views = new PageViews({
      templateDir: settings.templateDir,
      styles: settings.styles,
      cache: services.config.environment !== 'development',
    });
    this.captcha = captchaWidget(services.config.captchaProvider, services.config.captchaSiteKey);
    if (services.config.captchaProvider && !this.captcha) {
      services.log.warn(
        'CAPTCHA_PROVIDER is set without CAPTCHA_SITE_KEY: the pages cannot show the widget it requires',
      );
    }
    this.#cookies = cookieNames(services.config);
    this.#publicOrigin = new URL(services.config.publicUrl).origin;
    // A form whose answer redirects to another origin needs that origin in form-action.
    this.#formTargets = [
      ...new Set(
        Object.values(settings.redirectTo)
          .filter((target): target is string => !!target && !target.startsWith('/'))
          .map((target) => new URL(target).origin),
      ),
    ];
  }

  /** A path of this mount: `/login`, or `/auth/login` when the plugin is mounted under `/auth`. */
  path(path: string): string {
    return `${this.base}${path}`;
  }

  get paths() {
    return {
      register: this.path('/register'),
      login: this.path('/login'),
      loginMfa: this.path('/login/mfa'),
      mfa: this.path('/account/mfa'),
      logout: this.path('/logout'),
      forgotPassword: this.path('/forgot-password'),
      resetPassword: this.path('/reset-password'),
      verifyEmail: this.path('/verify-email'),
      resendVerification: this.path('/resend-verification'),
      account: this.path('/account'),
      emailConfirm: this.path('/account/email/confirm'),
      emailRevert: this.path('/account/email/revert'),
      acceptInvitation: this.path('/accept-invitation'),
      passkeys: this.path('/account/passkeys'),
      passkeyOptions: this.path('/account/passkeys/options'),
      loginPasskey: this.path('/login/passkey'),
      loginPasskeyOptions: this.path('/login/passkey/options'),
      loginMfaPasskeyOptions: this.path('/login/mfa/passkey-options'),
      passkeysScript: this.path('/gatehouse-passkeys.js'),
    };
  }

  /** onRequest: reads the cookies and makes sure the browser has a CSRF secret. */
  prepare(request: FastifyRequest): void {
    const cookies = readCookies(request.headers.cookie);
    const secret = cookies[this.#cookies.csrf];
    const valid = typeof secret === 'string' && /^[A-Za-z0-9_-]{43}$/.test(secret);
    request.gatehousePage = {
      cookies,
      csrfSecret: valid ? secret : newCsrfSecret(),
      csrfSecretIsNew: !valid,
      sessionCookie: cookies[this.#cookies.session] || undefined,
      session: undefined,
      formTargets: [],
    };
  }

  /** The signed-in user, if the session cookie belongs to a live browser session. */
  session(request: FastifyRequest): Promise<BrowserSession | undefined> {
    const state = request.gatehousePage;
    state.session ??= authenticateBrowserSession(this.services, state.sessionCookie);
    return state.session;
  }

  /** preHandler of every POST: read_only refuses it, then the CSRF token must match. */
  assertFormAllowed(request: FastifyRequest): void {
    if (this.settings.readOnly) {
      throw new AppError('METHOD_NOT_ALLOWED', {
        detail: 'These pages are read-only: forms cannot be submitted here.',
        headers: { allow: 'GET, HEAD' },
      });
    }
    // Browsers say where a request comes from; a cross-site form post is refused whatever it carries.
    if (request.headers['sec-fetch-site'] === 'cross-site') throw csrfRefused();
    if (!this.#fromThisSite(request.headers.origin, request.headers.host)) {
      throw new AppError('CSRF_INVALID', {
        detail: 'The form was sent from another site. Open it on this site and send it again.',
      });
    }
    const state = request.gatehousePage;
    const body = request.body as Record<string, unknown> | undefined;
    const presented = typeof body === 'object' && body !== null ? body.csrf_token : undefined;
    const secret = state.csrfSecretIsNew ? undefined : state.csrfSecret;
    if (!csrfTokenValid(this.services.config, secret, state.sessionCookie, presented)) throw csrfRefused();
  }

  /**
   * A browser names the page a form was posted from in `Origin`: this site is
   * PUBLIC_URL's origin, or the host the request was sent to. No `Origin`
   * (an older browser) or `Origin: null` (a privacy-preserving one) is left
   * to the CSRF token.
   */
  #fromThisSite(origin: string | undefined, host: string | undefined): boolean {
    if (origin === undefined || origin === 'null' || origin === this.#publicOrigin) return true;
    if (!URL.canParse(origin) || host === undefined) return false;
    return new URL(origin).host === host.toLowerCase();
  }

  setSessionCookie(request: FastifyRequest, reply: FastifyReply, value: string, cookie: string): void {
    reply.header('set-cookie', cookie);
    request.gatehousePage.sessionCookie = value;
    request.gatehousePage.session = undefined;
  }

  clearSessionCookie(request: FastifyRequest, reply: FastifyReply): void {
    if (request.gatehousePage.cookies[this.#cookies.session] === undefined) return;
    reply.header('set-cookie', serializeCookie(this.services.config, this.#cookies.session, '', 0));
    request.gatehousePage.sessionCookie = undefined;
    request.gatehousePage.session = Promise.resolve(undefined);
  }

  /** 303 See Other: the browser follows with a GET, so a reload never posts the form twice. */
  redirect(reply: FastifyReply, location: string, notice?: Notice): FastifyReply {
    if (notice)
      reply.header('set-cookie', serializeCookie(this.services.config, this.#cookies.flash, notice, FLASH_SECONDS));
    return reply.code(303).header('location', location).send();
  }

  /** Renders a template inside the layout, with the CSRF token, the flash notice and the page's CSP. */
  render(request: FastifyRequest, reply: FastifyReply, template: string, data: PageData): FastifyReply {
    const state = request.gatehousePage;
    const config = this.services.config;
    if (state.csrfSecretIsNew) {
      reply.header('set-cookie', serializeCookie(config, this.#cookies.csrf, state.csrfSecret, CSRF_COOKIE_SECONDS));
      state.csrfSecretIsNew = false;
    }
    const flash = state.cookies[this.#cookies.flash];
    const notice = flash && Object.hasOwn(NOTICES, flash) ? NOTICES[flash as Notice] : undefined;
    if (flash !== undefined) reply.header('set-cookie', serializeCookie(config, this.#cookies.flash, '', 0));
    const captcha = data.captcha ? this.captcha : undefined;
    const errors = data.errors ?? NO_ERRORS;
    const html = this.document(
      template,
      { ...data, errors },
      {
        csrfToken: csrfToken(config, state.csrfSecret, state.sessionCookie),
        notice,
        captcha,
      },
    );
    const formTargets = [...this.#formTargets, ...state.formTargets, ...(data.formTargets ?? [])];
    return reply
      .code(errors.status)
      .header('content-security-policy', contentSecurityPolicy({ captcha, formTargets }))
      .type('text/html; charset=utf-8')
      .send(html);
  }

  /** A page as HTML, for an answer Fastify does not send (the OpenID provider's own pages). */
  document(
    template: string,
    data: PageData,
    context: { csrfToken?: string; notice?: string | undefined; captcha?: CaptchaWidget | undefined } = {},
  ): string {
    const config = this.services.config;
    return this.views.render(template, {
      values: {},
      labels: {},
      ...data,
      errors: data.errors ?? NO_ERRORS,
      captcha: context.captcha,
      notice: context.notice,
      template,
      base: this.base,
      paths: this.paths,
      stylesheet: `${this.path('/gatehouse.css')}?v=${this.stylesheet.version}`,
      csrfToken: context.csrfToken ?? '',
      readOnly: this.settings.readOnly,
      passwordHint: passwordPolicyHint({
        preset: config.passwordPolicy,
        hasher: config.passwordHasher,
        minLength: config.passwordMinLength,
      }),
      usernameRequired: config.usernameRequired,
      sso: this.ssoButtons,
    });
  }

  /** The CSP of a page whose forms may also end up at `formTargets`. */
  contentSecurityPolicy(formTargets: string[] = []): string {
    return contentSecurityPolicy({ formTargets: [...this.#formTargets, ...formTargets] });
  }

  get stylesheet() {
    return this.views.stylesheet;
  }

  /** The standard headers of every page answer; a page's own CSP (with a CAPTCHA widget) is kept. */
  securityHeaders(reply: FastifyReply): void {
    if (!reply.hasHeader('content-security-policy')) {
      reply.header('content-security-policy', contentSecurityPolicy({ formTargets: this.#formTargets }));
    }
    reply.header('x-frame-options', 'DENY');
    reply.header('x-content-type-options', 'nosniff');
    // Reset and verification links carry their token in the URL: never hand it on as a Referer.
    reply.header('referrer-policy', 'no-referrer');
    reply.header('cross-origin-opener-policy', 'same-origin');
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  }
}

function csrfRefused(): AppError {
  return new AppError('CSRF_INVALID', {
    detail: 'The form was open too long, or was not sent from this site. Open it again and resend it.',
  });
}
