import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { confirmEmailChange, isEmailChangeLinkLive, revertEmailChange } from '../../flows/email-change.ts';
import { asAppError, field, formBody, formErrors } from './forms.ts';
import type { Pages } from './page.ts';

/**
 * The pages the change-of-address mails link to. Opening one (a GET, as a
 * mail scanner does) only shows a button; the button's POST does the work.
 */
export function emailChangePages(app: FastifyInstance, pages: Pages): void {
  const { services } = pages;
  const kinds = {
    confirm: { path: pages.paths.emailConfirm, title: 'Confirm your new email address' },
    revert: { path: pages.paths.emailRevert, title: 'Undo the change of email address' },
  } as const;

  for (const kind of ['confirm', 'revert'] as const) {
    const { path, title } = kinds[kind];
    const render = (request: FastifyRequest, reply: FastifyReply, data: Record<string, unknown>) =>
      pages.render(request, reply, 'email-change', { title, kind, action: path, ...data });

    app.get<{ Querystring: { token?: string } }>(path, { schema: { hide: true } }, async (request, reply) => {
      const token = typeof request.query.token === 'string' ? request.query.token : '';
      const live = await isEmailChangeLinkLive(services, kind, token);
      return render(request, reply, { token: live ? token : '', linkInvalid: !live });
    });

    app.post(path, { schema: { hide: true } }, async (request, reply) => {
      const token = field(formBody(request.body), 'token');
      try {
        if (kind === 'confirm') {
          await confirmEmailChange(services, token, request.caller);
        } else {
          await revertEmailChange(services, token, request.caller);
          // Every session was signed out, this browser's too.
          pages.clearSessionCookie(request, reply);
          return pages.redirect(reply, pages.paths.login, 'email_change_reverted');
        }
      } catch (error) {
        const errors = formErrors(asAppError(error), { fields: [] });
        return render(request, reply, { token: '', linkInvalid: true, errors });
      }
      const session = await pages.session(request);
      return pages.redirect(reply, session ? pages.paths.account : pages.paths.login, 'email_changed');
    });
  }
}
