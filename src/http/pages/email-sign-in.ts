import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { completeEmailSignIn, isEmailSignInLinkLive, requestEmailSignIn } from '../../flows/email-sign-in.ts';
import type { LoggedIn } from '../../flows/login.ts';
import { setDeviceCookie, trustedDevice } from '../device-cookie.ts';
import { sessionCookie } from './cookies.ts';
import { asAppError, field, formBody, formErrors, safeRedirect } from './forms.ts';
import type { Pages } from './page.ts';

const LABELS = { email: 'Email address', code: 'Sign-in code' };
const FIELDS = Object.keys(LABELS);
const MFA_LABELS = { code: 'Authentication code', backup_code: 'Backup code' };

/**
 * `/email-sign-in` (EMAIL_SIGN_IN): with a live `?token=` a page whose one
 * button signs in, so a mail scanner that opens the link spends nothing;
 * without one, a form that mails a link (and a code, in `code` or `both`
 * mode, typed on the page it shows next). The post signs the browser in
 * like the login page, or continues to its second-factor step.
 */
export function emailSignInPages(app: FastifyInstance, pages: Pages): void {
  const { services } = pages;
  const title = 'Sign in by email';
  const signInPath = pages.path('/email-sign-in');
  const requestPath = pages.path('/email-sign-in/request');
  const codeForm = services.config.emailSignIn !== 'link';
  // What the mail holds, as the request button names it.
  const mailed = services.config.emailSignIn === 'code' ? 'code' : 'link';
  const view = { title, labels: LABELS, signInPath, requestPath, mailed };

  function signedIn(request: FastifyRequest, reply: FastifyReply, issued: LoggedIn, redirectTo: string | undefined) {
    const device = trustedDevice(request, services.config, services.clock.now());
    pages.setSessionCookie(request, reply, issued.tokens.refresh_token, sessionCookie(services.config, issued));
    setDeviceCookie(reply, services.config, services.clock.now(), device, issued.userId);
    return pages.redirect(reply, redirectTo ?? pages.settings.redirectTo.login ?? pages.paths.account);
  }

  app.get<{ Querystring: { token?: string; redirect_to?: string } }>(
    '/email-sign-in',
    { schema: { hide: true } },
    async (request, reply) => {
      const token = typeof request.query.token === 'string' ? request.query.token : '';
      const redirectTo = safeRedirect(request.query.redirect_to);
      const live = token !== '' && (await isEmailSignInLinkLive(services, token));
      return pages.render(request, reply, 'email-sign-in', {
        ...view,
        state: live ? 'confirm' : 'request',
        token: live ? token : '',
        linkInvalid: token !== '' && !live,
        redirectTo,
      });
    },
  );

  app.post(
    '/email-sign-in/request',
    { schema: { hide: true }, config: { rateLimit: 'email_sign_in' } },
    async (request, reply) => {
      const body = formBody(request.body);
      const email = field(body, 'email');
      const redirectTo = safeRedirect(body.redirect_to);
      try {
        // The same answer whether or not the address has an account.
        const { message } = await requestEmailSignIn(services, email, request.caller);
        return pages.render(request, reply, 'email-sign-in', {
          ...view,
          state: 'sent',
          message,
          codeForm,
          values: { email },
          redirectTo,
        });
      } catch (error) {
        const errors = formErrors(asAppError(error), { fields: FIELDS });
        return pages.render(request, reply, 'email-sign-in', {
          ...view,
          state: 'request',
          values: { email },
          errors,
          redirectTo,
        });
      }
    },
  );

  app.post('/email-sign-in', { schema: { hide: true }, config: { rateLimit: 'login' } }, async (request, reply) => {
    const body = formBody(request.body);
    const redirectTo = safeRedirect(body.redirect_to);
    const token = field(body, 'token');
    const email = field(body, 'email');
    let issued: LoggedIn;
    try {
      const device = trustedDevice(request, services.config, services.clock.now());
      issued = await completeEmailSignIn(
        services,
        token === '' ? { email, code: field(body, 'code') } : { token },
        request.caller,
        { kind: 'browser', device },
      );
    } catch (error) {
      const appError = asAppError(error);
      if (appError.code === 'MFA_REQUIRED') {
        return pages.render(request, reply, 'login-mfa', {
          title: 'Two-step verification',
          labels: MFA_LABELS,
          mfaToken: String(appError.options.extensions?.mfa_token),
          redirectTo,
        });
      }
      if (token !== '' || !codeForm) {
        // The link is spent, expired or unknown (or the account disabled): offer a new one.
        const linkInvalid = appError.code === 'EMAIL_SIGN_IN_INVALID';
        const errors = formErrors(appError, { fields: FIELDS });
        return pages.render(request, reply, 'email-sign-in', {
          ...view,
          state: 'request',
          linkInvalid,
          errors: linkInvalid ? { ...errors, form: undefined } : errors,
          redirectTo,
        });
      }
      return pages.render(request, reply, 'email-sign-in', {
        ...view,
        state: 'sent',
        message: 'Enter the code from the email we sent you.',
        codeForm,
        values: { email },
        errors: formErrors(appError, { fields: FIELDS, placement: { EMAIL_SIGN_IN_INVALID: 'code' } }),
        redirectTo,
      });
    }
    return signedIn(request, reply, issued, redirectTo);
  });
}
