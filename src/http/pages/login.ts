import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type AppError, PROBLEMS, type ProblemCode } from '../../domain/errors.ts';
import { type LoggedIn, loginWithPassword } from '../../flows/login.ts';
import { completeMfaLogin } from '../../flows/login-mfa.ts';
import { captchaToken } from '../../infra/captcha.ts';
import { setDeviceCookie, trustedDevice } from '../device-cookie.ts';
import { SSO_MFA_COOKIE } from '../sso.ts';
import { sessionCookie } from './cookies.ts';
import { asAppError, field, formBody, formErrors, safeRedirect } from './forms.ts';
import type { Pages } from './page.ts';
import { jsonField, passkeyPages } from './passkeys.ts';

const LABELS = { username: 'Username or email', password: 'Password', captcha: 'CAPTCHA' };
const FIELDS = Object.keys(LABELS);
const MFA_LABELS = { code: 'Authentication code', backup_code: 'Backup code' };
const MFA_FIELDS = Object.keys(MFA_LABELS);

export function loginPages(app: FastifyInstance, pages: Pages): void {
  const { services, settings } = pages;
  const title = 'Log in';

  /** The session cookie and the device cookie of a completed login, then where the user was going. */
  function signedIn(
    request: FastifyRequest,
    reply: FastifyReply,
    issued: LoggedIn,
    redirectTo: string | undefined,
  ): FastifyReply {
    const device = trustedDevice(request, services.config, services.clock.now());
    pages.setSessionCookie(request, reply, issued.tokens.refresh_token, sessionCookie(services.config, issued));
    setDeviceCookie(reply, services.config, services.clock.now(), device, issued.userId);
    return pages.redirect(reply, redirectTo ?? settings.redirectTo.login ?? pages.paths.account);
  }

  /** The second step: the code form, carrying the challenge's token. */
  function codeForm(
    request: FastifyRequest,
    reply: FastifyReply,
    mfaToken: string,
    redirectTo: string | undefined,
    passkey: boolean,
    error?: { error: AppError; field: 'code' | 'backup_code' },
  ): FastifyReply {
    const errors = error
      ? formErrors(error.error, { fields: MFA_FIELDS, placement: { INVALID_MFA_CODE: error.field } })
      : undefined;
    return pages.render(request, reply, 'login-mfa', {
      title: 'Two-step verification',
      labels: MFA_LABELS,
      mfaToken,
      redirectTo,
      passkey,
      ...(errors ? { errors } : {}),
    });
  }

  app.get<{ Querystring: { redirect_to?: string; sso_error?: string } }>(
    '/login',
    { schema: { hide: true } },
    async (request, reply) => {
      // Back from a provider's sign-in that did not work: its problem, in the page's words.
      const ssoError = request.query.sso_error;
      const problem = typeof ssoError === 'string' && Object.hasOwn(PROBLEMS, ssoError) ? ssoError : undefined;
      return pages.render(request, reply, 'login', {
        title,
        labels: LABELS,
        redirectTo: safeRedirect(request.query.redirect_to),
        emailSignIn: services.config.emailSignIn !== 'off' && pages.path('/email-sign-in'),
        ...(problem && {
          errors: {
            status: PROBLEMS[problem as ProblemCode].status,
            fields: {},
            form: `${PROBLEMS[problem as ProblemCode].title}. ${PROBLEMS[problem as ProblemCode].fix}`,
          },
        }),
      });
    },
  );

  // The second step of a provider's sign-in (SSO): the challenge waits in a short-lived httpOnly cookie.
  app.get<{ Querystring: { redirect_to?: string } }>(
    '/login/mfa',
    { schema: { hide: true } },
    async (request, reply) => {
      const token = request.gatehousePage.cookies[SSO_MFA_COOKIE];
      if (!token) return pages.redirect(reply, pages.paths.login);
      return codeForm(request, reply, token, safeRedirect(request.query.redirect_to), false);
    },
  );

  app.post('/login', { schema: { hide: true }, config: { rateLimit: 'login' } }, async (request, reply) => {
    const body = formBody(request.body);
    const redirectTo = safeRedirect(body.redirect_to);
    const username = field(body, 'username');
    let issued: LoggedIn;
    try {
      const device = trustedDevice(request, services.config, services.clock.now());
      issued = await loginWithPassword(
        services,
        { identifier: username, password: field(body, 'password'), captchaToken: captchaToken(body), device },
        request.caller,
        { kind: 'browser' },
      );
    } catch (error) {
      const appError = asAppError(error);
      if (appError.code === 'MFA_REQUIRED') {
        const methods = appError.options.extensions?.methods;
        const passkey = Array.isArray(methods) && methods.includes('webauthn');
        return codeForm(request, reply, String(appError.options.extensions?.mfa_token), redirectTo, passkey);
      }
      const errors = formErrors(appError, { fields: FIELDS, placement: { CAPTCHA_FAILED: 'captcha' } });
      return pages.render(request, reply, 'login', {
        title,
        labels: LABELS,
        values: { username },
        redirectTo,
        errors,
        // After a failed attempt the next one may need a CAPTCHA (CAPTCHA_LOGIN_AFTER_FAILURES): show the widget.
        captcha: appError.code === 'INVALID_CREDENTIALS' || appError.code === 'CAPTCHA_FAILED',
        unverified: appError.code === 'EMAIL_NOT_VERIFIED',
      });
    }
    return signedIn(request, reply, issued, redirectTo);
  });

  app.post('/login/mfa', { schema: { hide: true }, config: { rateLimit: 'login' } }, async (request, reply) => {
    const body = formBody(request.body);
    const redirectTo = safeRedirect(body.redirect_to);
    const mfaToken = field(body, 'mfa_token');
    const backup = field(body, 'backup_code');
    const passkey = field(body, 'passkey') === '1';
    const webauthnResponse = jsonField(body, 'webauthn_response');
    let issued: LoggedIn;
    try {
      issued = await completeMfaLogin(
        services,
        webauthnResponse !== undefined
          ? { mfa_token: mfaToken, webauthn_response: webauthnResponse }
          : backup === ''
            ? { mfa_token: mfaToken, code: field(body, 'code') }
            : { mfa_token: mfaToken, backup_code: backup },
        request.caller,
        'browser',
      );
    } catch (error) {
      const appError = asAppError(error);
      // The challenge is gone (spent, expired, unknown): the password must be given again.
      if (appError.code === 'TOKEN_INVALID' || appError.code === 'ACCOUNT_DISABLED') {
        return pages.render(request, reply, 'login', {
          title,
          labels: LABELS,
          redirectTo,
          errors: {
            status: appError.status,
            fields: {},
            form:
              appError.code === 'TOKEN_INVALID'
                ? 'Your sign-in took too long or was already used. Log in again.'
                : appError.detail,
          },
        });
      }
      return codeForm(request, reply, mfaToken, redirectTo, passkey, {
        error: appError,
        field: backup === '' ? 'code' : 'backup_code',
      });
    }
    return signedIn(request, reply, issued, redirectTo);
  });

  passkeyPages(app, pages, signedIn);
}
