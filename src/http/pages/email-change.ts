import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { confirmEmailChange, isEmailChangeLinkLive, revertEmailChange } from '../../flows/email-change.ts';
import { asAppError, field, formBody, formErrors } from './forms.ts';
import type { Pages } from './page.ts';

type Kind = 'confirm' | 'revert';

/**
 * The pages the change-of-address mails link to. Opening one (a GET, as a
 * mail scanner does) only shows a button; the button's POST does the work.
 */
export function emailChangePages(app: FastifyInstance, pages: Pages): void {
  const { services } = pages;
  const page = {
    confirm: { action: pages.paths.emailConfirm, title: 'Confirm your new email address' },
    revert: { action: pages.paths.emailRevert, title: 'Undo the change of email address' },
  } as const;

  const render = (request: FastifyRequest, reply: FastifyReply, kind: Kind, data: Record<string, unknown>) =>
    pages.render(request, reply, 'email-change', { ...page[kind], kind, ...data });

  const show =
    (kind: Kind) => async (request: FastifyRequest<{ Querystring: { token?: string } }>, reply: FastifyReply) => {
      const token = typeof request.query.token === 'string' ? request.query.token : '';
      const live = await isEmailChangeLinkLive(services, kind, token);
      return render(request, reply, kind, { token: live ? token : '', linkInvalid: !live });
    };

  const failed = (request: FastifyRequest, reply: FastifyReply, kind: Kind, error: unknown) =>
    render(request, reply, kind, {
      token: '',
      linkInvalid: true,
      errors: formErrors(asAppError(error), { fields: [] }),
    });

  app.get('/account/email/confirm', { schema: { hide: true } }, show('confirm'));
  app.post('/account/email/confirm', { schema: { hide: true } }, async (request, reply) => {
    try {
      await confirmEmailChange(services, field(formBody(request.body), 'token'), request.caller);
    } catch (error) {
      return failed(request, reply, 'confirm', error);
    }
    const session = await pages.session(request);
    return pages.redirect(reply, session ? pages.paths.account : pages.paths.login, 'email_changed');
  });

  app.get('/account/email/revert', { schema: { hide: true } }, show('revert'));
  app.post('/account/email/revert', { schema: { hide: true } }, async (request, reply) => {
    try {
      await revertEmailChange(services, field(formBody(request.body), 'token'), request.caller);
    } catch (error) {
      return failed(request, reply, 'revert', error);
    }
    // Every session was signed out, this browser's too.
    pages.clearSessionCookie(request, reply);
    return pages.redirect(reply, pages.paths.login, 'email_change_reverted');
  });
}
