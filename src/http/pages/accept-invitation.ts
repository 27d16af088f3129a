import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { acceptInvitation, describeInvitation, type InvitationOffer } from '../../flows/invitations.ts';
import { asAppError, type FormErrors, field, formBody, formErrors } from './forms.ts';
import type { Pages } from './page.ts';

/** The built-in roles in words; a custom role is named (`the auditor role`). */
const ROLE_WORDS: ReadonlyMap<string, string> = new Map([
  ['admin', 'an admin'],
  ['user', 'a member'],
  ['viewer', 'a viewer'],
]);

/**
 * `/accept-invitation?token=`, the link of an invitation mail. It asks for one
 * click, so that mail scanners opening the link do not spend it. Signed out,
 * it says which address the invitation is for and leads to log in (and back
 * here) or to create an account first.
 */
export function acceptInvitationPages(app: FastifyInstance, pages: Pages): void {
  const { services } = pages;
  const title = 'Join an organization';
  /** The login page, which returns to this invitation afterwards. */
  const loginAndBack = (token: string) =>
    `${pages.paths.login}?redirect_to=${encodeURIComponent(`${pages.paths.acceptInvitation}?token=${encodeURIComponent(token)}`)}`;

  async function show(
    request: FastifyRequest,
    reply: FastifyReply,
    token: string,
    errors?: FormErrors,
  ): Promise<FastifyReply> {
    const offer: InvitationOffer | undefined = await describeInvitation(services, token);
    const session = offer ? await pages.session(request) : undefined;
    return pages.render(request, reply, 'accept-invitation', {
      title,
      token: offer ? token : '',
      offer: offer && { ...offer, roleWords: ROLE_WORDS.get(offer.role) ?? `the ${offer.role} role` },
      signedIn: !!session,
      signedInAs: session?.auth.email,
      loginLink: loginAndBack(token),
      ...(errors && { errors }),
    });
  }

  app.get<{ Querystring: { token?: string } }>(
    '/accept-invitation',
    { schema: { hide: true } },
    async (request, reply) => show(request, reply, typeof request.query.token === 'string' ? request.query.token : ''),
  );

  app.post('/accept-invitation', { schema: { hide: true } }, async (request, reply) => {
    const token = field(formBody(request.body), 'token');
    const session = await pages.session(request);
    if (!session) {
      pages.clearSessionCookie(request, reply);
      return pages.redirect(reply, loginAndBack(token));
    }
    try {
      await acceptInvitation(services, session.auth, token, request.caller);
    } catch (error) {
      return show(request, reply, token, formErrors(asAppError(error), { fields: [] }));
    }
    return pages.redirect(reply, pages.paths.account, 'invitation_accepted');
  });
}
