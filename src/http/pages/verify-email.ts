import type { FastifyInstance } from 'fastify';
import { isVerificationLinkLive, resendVerification, verifyEmail } from '../../flows/verify-email.ts';
import { asAppError, field, formBody, formErrors } from './forms.ts';
import type { Pages } from './page.ts';

const LABELS = { email: 'Email address' };
const FIELDS = Object.keys(LABELS);

/**
 * `/verify-email?token=` asks for one click: mail scanners that open every
 * link must not spend the token. Without a token (or with a dead one) the
 * page offers to mail a new link.
 */
export function verifyEmailPages(app: FastifyInstance, pages: Pages): void {
  const { services } = pages;
  const title = 'Verify your email address';

  app.get<{ Querystring: { token?: string } }>('/verify-email', { schema: { hide: true } }, async (request, reply) => {
    const token = typeof request.query.token === 'string' ? request.query.token : '';
    const live = await isVerificationLinkLive(services, token);
    return pages.render(request, reply, 'verify-email', {
      title,
      labels: LABELS,
      token: live ? token : '',
      linkInvalid: token !== '' && !live,
    });
  });

  app.post('/verify-email', { schema: { hide: true } }, async (request, reply) => {
    try {
      await verifyEmail(services, field(formBody(request.body), 'token'), request.caller);
    } catch (error) {
      return pages.render(request, reply, 'verify-email', {
        title,
        labels: LABELS,
        token: '',
        linkInvalid: true,
        errors: formErrors(asAppError(error), { fields: FIELDS }),
      });
    }
    const session = await pages.session(request);
    return pages.redirect(reply, session ? pages.paths.account : pages.paths.login, 'email_verified');
  });

  // The form of the page without a (live) token: mail a new link.
  app.post(
    '/resend-verification',
    { schema: { hide: true }, config: { rateLimit: 'resend_verification' } },
    async (request, reply) => {
      const email = field(formBody(request.body), 'email');
      try {
        // The same answer whether or not the address has an account awaiting verification.
        await resendVerification(services, email, request.caller);
      } catch (error) {
        return pages.render(request, reply, 'verify-email', {
          title,
          labels: LABELS,
          token: '',
          linkInvalid: false,
          values: { email },
          errors: formErrors(asAppError(error), { fields: FIELDS }),
        });
      }
      return pages.redirect(reply, pages.paths.verifyEmail, 'verification_sent');
    },
  );
}
