import type { FastifyInstance } from 'fastify';
import type { USER_DEFAULT_FIELDS } from '../../domain/page-options.ts';
import { type RegistrationInput, type RegistrationOutcome, register } from '../../flows/register.ts';
import { requireCaptcha } from '../../infra/captcha.ts';
import { asAppError, field, formBody, formErrors, safeRedirect, sent } from './forms.ts';
import type { Pages } from './page.ts';

const LABELS = {
  first_name: 'First name',
  last_name: 'Last name',
  name: 'Full name',
  email: 'Email address',
  username: 'Username',
  password: 'Password',
  confirm_password: 'Confirm password',
  organization_name: 'Organization',
  language_code: 'Language',
  captcha: 'CAPTCHA',
};
const FIELDS = Object.keys(LABELS);

export function registerPages(app: FastifyInstance, pages: Pages): void {
  const { services, settings } = pages;
  const title = 'Create your account';

  app.get<{ Querystring: { redirect_to?: string } }>('/register', { schema: { hide: true } }, async (request, reply) =>
    pages.render(request, reply, 'register', {
      title,
      labels: LABELS,
      captcha: true,
      values: { ...settings.userDefaults },
      redirectTo: safeRedirect(request.query.redirect_to),
    }),
  );

  app.post('/register', { schema: { hide: true }, config: { rateLimit: 'register' } }, async (request, reply) => {
    const body = formBody(request.body);
    const redirectTo = safeRedirect(body.redirect_to);
    // Fields the form left out take the configured defaults for new users.
    const value = (name: (typeof USER_DEFAULT_FIELDS)[number]) =>
      sent(body, name) ? field(body, name) : settings.userDefaults[name];
    const organization = value('organization_name');
    const input: RegistrationInput = {
      email: field(body, 'email'),
      username: field(body, 'username'),
      password: field(body, 'password'),
      confirm_password: sent(body, 'confirm_password') ? field(body, 'confirm_password') : undefined,
      first_name: value('first_name'),
      last_name: value('last_name'),
      name: sent(body, 'name') ? field(body, 'name') : undefined,
      // An empty organization field means none, not an invalid name.
      organization_name: organization?.trim() ? organization : undefined,
      language_code: value('language_code') || undefined,
    };
    let outcome: RegistrationOutcome;
    try {
      await requireCaptcha(services.captcha, body, request.caller.ip);
      // Every problem of the form in one answer: each submission spends one of RATE_LIMIT_REGISTER.
      outcome = await register(services, input, request.caller, { allProblemsAtOnce: true });
    } catch (error) {
      const { password: _p, confirm_password: _c, csrf_token: _t, ...kept } = body;
      return pages.render(request, reply, 'register', {
        title,
        labels: LABELS,
        captcha: true,
        values: Object.fromEntries(Object.entries(kept).filter((e): e is [string, string] => typeof e[1] === 'string')),
        redirectTo,
        errors: formErrors(asAppError(error), {
          fields: FIELDS,
          passwordField: 'password',
          placement: {
            EMAIL_TAKEN: 'email',
            USERNAME_TAKEN: 'username',
            PASSWORD_BREACHED: 'password',
            PASSWORD_MISMATCH: 'confirm_password',
            CAPTCHA_FAILED: 'captcha',
          },
        }),
      });
    }
    const notice =
      'accepted' in outcome
        ? 'registration_received'
        : services.config.requireEmailVerification
          ? 'registered'
          : 'registered_verified';
    return pages.redirect(reply, redirectTo ?? settings.redirectTo.register ?? pages.paths.login, notice);
  });
}
