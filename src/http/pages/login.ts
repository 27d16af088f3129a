import type { FastifyInstance } from 'fastify';
import { loginWithPassword } from '../../flows/login.ts';
import { captchaToken } from '../../infra/captcha.ts';
import { setDeviceCookie, trustedDevice } from '../device-cookie.ts';
import { sessionCookie } from './cookies.ts';
import { asAppError, field, formBody, formErrors, safeRedirect } from './forms.ts';
import type { Pages } from './page.ts';

const LABELS = { username: 'Username or email', password: 'Password', captcha: 'CAPTCHA' };
const FIELDS = Object.keys(LABELS);

export function loginPages(app: FastifyInstance, pages: Pages): void {
  const { services, settings } = pages;
  const title = 'Log in';

  app.get<{ Querystring: { redirect_to?: string } }>('/login', { schema: { hide: true } }, async (request, reply) =>
    pages.render(request, reply, 'login', {
      title,
      labels: LABELS,
      redirectTo: safeRedirect(request.query.redirect_to),
    }),
  );

  app.post('/login', { schema: { hide: true }, config: { rateLimit: 'login' } }, async (request, reply) => {
    const body = formBody(request.body);
    const redirectTo = safeRedirect(body.redirect_to);
    const username = field(body, 'username');
    try {
      const device = trustedDevice(request, services.config, services.clock.now());
      const issued = await loginWithPassword(
        services,
        { identifier: username, password: field(body, 'password'), captchaToken: captchaToken(body), device },
        request.caller,
        { kind: 'browser' },
      );
      pages.setSessionCookie(request, reply, issued.tokens.refresh_token, sessionCookie(services.config, issued));
      setDeviceCookie(reply, services.config, services.clock.now(), device, issued.userId);
    } catch (error) {
      const appError = asAppError(error);
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
    return pages.redirect(reply, redirectTo ?? settings.redirectTo.login ?? pages.paths.account);
  });
}
