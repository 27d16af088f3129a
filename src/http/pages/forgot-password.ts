import type { FastifyInstance } from 'fastify';
import { requestPasswordReset } from '../../flows/password-reset.ts';
import { asAppError, field, formBody, formErrors } from './forms.ts';
import type { Pages } from './page.ts';

const LABELS = { email: 'Email address' };
const FIELDS = Object.keys(LABELS);

export function forgotPasswordPages(app: FastifyInstance, pages: Pages): void {
  const title = 'Reset your password';

  app.get('/forgot-password', { schema: { hide: true } }, async (request, reply) =>
    pages.render(request, reply, 'forgot-password', { title, labels: LABELS }),
  );

  app.post(
    '/forgot-password',
    { schema: { hide: true }, config: { rateLimit: 'forgot_password' } },
    async (request, reply) => {
      const email = field(formBody(request.body), 'email');
      try {
        // The same answer whether or not the address has an account.
        await requestPasswordReset(pages.services, email, request.caller);
      } catch (error) {
        const errors = formErrors(asAppError(error), { fields: FIELDS });
        return pages.render(request, reply, 'forgot-password', { title, labels: LABELS, values: { email }, errors });
      }
      return pages.redirect(reply, pages.paths.forgotPassword, 'reset_sent');
    },
  );
}
