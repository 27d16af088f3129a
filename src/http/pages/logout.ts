import type { FastifyInstance } from 'fastify';
import { logout } from '../../flows/logout.ts';
import type { Pages } from './page.ts';

export function logoutPages(app: FastifyInstance, pages: Pages): void {
  const { services, settings } = pages;

  // A GET only asks: signing out changes state, so it takes a form post with its CSRF token.
  app.get('/logout', { schema: { hide: true } }, async (request, reply) => {
    const session = await pages.session(request);
    if (!session) return pages.redirect(reply, pages.paths.login);
    return pages.render(request, reply, 'logout', { title: 'Sign out', signedIn: true, email: session.auth.email });
  });

  app.post('/logout', { schema: { hide: true } }, async (request, reply) => {
    const session = await pages.session(request);
    if (session) await logout(services, session.auth, request.caller);
    pages.clearSessionCookie(request, reply);
    return pages.redirect(reply, settings.redirectTo.logout ?? pages.paths.login, 'signed_out');
  });
}
