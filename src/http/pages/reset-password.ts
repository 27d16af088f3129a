import type { FastifyInstance } from 'fastify';
import { isResetLinkLive, resetPassword } from '../../flows/password-reset.ts';
import { asAppError, field, formBody, formErrors } from './forms.ts';
import type { Pages } from './page.ts';

const LABELS = { new_password: 'New password', confirm_password: 'Confirm new password' };
const FIELDS = Object.keys(LABELS);

export function resetPasswordPages(app: FastifyInstance, pages: Pages): void {
  const { services } = pages;
  const title = 'Choose a new password';

  // Looking the token up does not spend it: only the form post does.
  app.get<{ Querystring: { token?: string } }>(
    '/reset-password',
    { schema: { hide: true } },
    async (request, reply) => {
      const token = typeof request.query.token === 'string' ? request.query.token : '';
      const live = await isResetLinkLive(services, token);
      return pages.render(request, reply, 'reset-password', { title, labels: LABELS, token, linkInvalid: !live });
    },
  );

  app.post('/reset-password', { schema: { hide: true } }, async (request, reply) => {
    const body = formBody(request.body);
    const token = field(body, 'token');
    try {
      await resetPassword(
        services,
        { token, new_password: field(body, 'new_password'), confirm_password: field(body, 'confirm_password') },
        request.caller,
      );
    } catch (error) {
      const appError = asAppError(error);
      return pages.render(request, reply, 'reset-password', {
        title,
        labels: LABELS,
        token,
        linkInvalid: appError.code === 'TOKEN_INVALID_OR_EXPIRED',
        errors: formErrors(appError, {
          fields: FIELDS,
          passwordField: 'new_password',
          placement: {
            PASSWORD_BREACHED: 'new_password',
            PASSWORD_REUSED: 'new_password',
            PASSWORD_MISMATCH: 'confirm_password',
          },
        }),
      });
    }
    // Every session was revoked, this browser's too.
    pages.clearSessionCookie(request, reply);
    return pages.redirect(reply, pages.paths.login, 'password_reset');
  });
}
