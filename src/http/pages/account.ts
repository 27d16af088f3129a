import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../domain/errors.ts';
import { getAccount, updateAccount } from '../../flows/account.ts';
import type { BrowserSession } from '../../flows/authenticate.ts';
import { emailChangeNeedsPassword, requestEmailChange } from '../../flows/email-change.ts';
import { connectedApps, revokeConnectedApp } from '../../flows/oidc.ts';
import { listPasskeys } from '../../flows/passkeys.ts';
import { changePassword } from '../../flows/password-change.ts';
import { listSessions, revokeOwnSession } from '../../flows/sessions.ts';
import { listIdentities, unlinkIdentity } from '../../flows/sso.ts';
import { enforceRateLimit } from '../rate-limit.ts';
import { redirectToProvider } from '../sso.ts';
import { asAppError, type FormErrors, field, formBody, formErrors } from './forms.ts';
import type { Pages } from './page.ts';

const LABELS = {
  first_name: 'First name',
  last_name: 'Last name',
  language_code: 'Language',
  current_password: 'Current password',
  new_password: 'New password',
  confirm_password: 'Confirm new password',
  new_email: 'New e-mail address',
  password: 'Your password',
};
const PROFILE_FIELDS = ['first_name', 'last_name', 'language_code'];
const PASSWORD_FIELDS = ['current_password', 'new_password', 'confirm_password'];
const EMAIL_FIELDS = ['new_email', 'password'];

type Section = 'profile' | 'password' | 'email' | 'sessions' | 'apps' | 'identities';

/** The account page: profile, organizations, sessions, password. One path; each form says what it does. */
export function accountPages(app: FastifyInstance, pages: Pages): void {
  const { services } = pages;

  async function show(
    request: FastifyRequest,
    reply: FastifyReply,
    session: BrowserSession,
    failed?: { section: Section; errors: FormErrors; values: Record<string, string> },
  ): Promise<FastifyReply> {
    const providers = services.config.ssoProviders;
    const [account, sessions, passkeys, apps, identities, emailNeedsPassword] = await Promise.all([
      getAccount(services, session.auth.userId),
      listSessions(services, session.auth),
      listPasskeys(services, session.auth),
      services.config.oidcProvider ? connectedApps(services, session.auth.userUuid) : undefined,
      providers.length > 0 ? listIdentities(services, session.auth.userId) : undefined,
      emailChangeNeedsPassword(services, session.auth.userId),
    ]);
    const profile = {
      first_name: account.first_name ?? '',
      last_name: account.last_name ?? '',
      language_code: account.language_code,
    };
    return pages.render(request, reply, 'account', {
      title: 'Your account',
      wide: true,
      labels: LABELS,
      signedIn: true,
      account,
      sessions: sessions.map((s) => ({
        id: s.id,
        current: s.current,
        device: describeUserAgent(s.user_agent),
        kind: s.kind === 'browser' ? 'Browser' : s.kind === 'oauth' ? `App: ${s.client_name ?? s.client_id}` : 'API',
        ip: s.ip_address ?? 'unknown address',
        createdAt: formatTime(s.created_at),
      })),
      passkeys: passkeys.map((p) => ({
        id: p.id,
        name: p.name,
        createdAt: formatTime(p.created_at),
        lastUsedAt: p.last_used_at ? formatTime(p.last_used_at) : undefined,
      })),
      identities: identities?.map((i) => ({
        id: i.id,
        label: providers.find((p) => p.name === i.provider)?.label.replace(/^Continue with /, '') ?? i.provider,
        email: i.email ?? '',
        createdAt: formatTime(i.created_at),
      })),
      linkable: identities
        ? providers
            .filter((p) => !identities.some((i) => i.provider === p.name))
            .map((p) => ({ name: p.name, label: p.label.replace(/^Continue with /, '') }))
        : undefined,
      apps: apps?.map((a) => ({
        clientId: a.client_id,
        name: a.client_name,
        scopes: a.scopes.filter((scope) => scope !== 'openid').join(', ') || 'sign-in only',
        grantedAt: formatTime(a.granted_at),
      })),
      // "Link …" posts here and is redirected on to the provider: form-action must allow its origin.
      formTargets: identities
        ? providers.map((p) => new URL(String(p.kind === 'github' ? p.githubUrl : p.issuer)).origin)
        : [],
      emailNeedsPassword,
      section: failed?.section,
      values: { ...profile, ...(failed?.section === 'profile' || failed?.section === 'email' ? failed.values : {}) },
      ...(failed && { errors: failed.errors }),
    });
  }

  /** Without a live session: to the login page, and back here after it. */
  async function requireSession(request: FastifyRequest, reply: FastifyReply): Promise<BrowserSession | undefined> {
    const session = await pages.session(request);
    if (session) return session;
    pages.clearSessionCookie(request, reply);
    pages.redirect(reply, `${pages.paths.login}?redirect_to=${encodeURIComponent(pages.paths.account)}`);
    return undefined;
  }

  app.get('/account', { schema: { hide: true } }, async (request, reply) => {
    const session = await requireSession(request, reply);
    return session ? show(request, reply, session) : reply;
  });

  app.post('/account', { schema: { hide: true } }, async (request, reply) => {
    const session = await requireSession(request, reply);
    if (!session) return reply;
    const body = formBody(request.body);
    const action = field(body, 'action');
    try {
      switch (action) {
        case 'profile':
          await updateAccount(
            services,
            session.auth,
            {
              first_name: field(body, 'first_name'),
              last_name: field(body, 'last_name'),
              language_code: field(body, 'language_code'),
            },
            request.caller,
          );
          return pages.redirect(reply, pages.paths.account, 'profile_saved');
        case 'password':
          await enforceRateLimit(request, reply, 'reauthenticate');
          await changePassword(
            services,
            session.auth,
            {
              current_password: field(body, 'current_password'),
              new_password: field(body, 'new_password'),
              confirm_password: field(body, 'confirm_password'),
            },
            request.caller,
          );
          return pages.redirect(reply, pages.paths.account, 'password_changed');
        case 'change_email':
          await enforceRateLimit(request, reply, 'reauthenticate');
          await requestEmailChange(
            services,
            session.auth,
            { new_email: field(body, 'new_email'), password: field(body, 'password') },
            request.caller,
          );
          return pages.redirect(reply, pages.paths.account, 'email_change_sent');
        case 'sign_out_session': {
          const id = field(body, 'session_id');
          if (!(await revokeOwnSession(services, session.auth, id, request.caller))) {
            throw new AppError('NOT_FOUND', { detail: 'That session does not exist or was already signed out.' });
          }
          if (id.toLowerCase() === session.auth.sessionUuid) {
            pages.clearSessionCookie(request, reply);
            return pages.redirect(reply, pages.paths.login, 'signed_out');
          }
          return pages.redirect(reply, pages.paths.account, 'session_revoked');
        }
        case 'link_identity':
          // The signed-in person links a provider account to this one: a form post (CSRF), never a link.
          return await redirectToProvider(request, reply, {
            provider: field(body, 'provider'),
            redirectTo: pages.paths.account,
            linkUserId: session.auth.userId,
            apiPrefix: pages.apiPrefix,
          });
        case 'unlink_identity': {
          if (!(await unlinkIdentity(services, session.auth, field(body, 'identity_id'), request.caller))) {
            throw new AppError('NOT_FOUND', { detail: 'That sign-in provider is not linked to your account.' });
          }
          return pages.redirect(reply, pages.paths.account, 'identity_unlinked');
        }
        case 'revoke_app': {
          const clientId = field(body, 'client_id');
          if (
            !services.config.oidcProvider ||
            !(await revokeConnectedApp(services, session.auth, clientId, request.caller))
          ) {
            throw new AppError('NOT_FOUND', { detail: 'That application has no access to your account.' });
          }
          return pages.redirect(reply, pages.paths.account, 'app_revoked');
        }
        default:
          throw new AppError('MALFORMED_REQUEST', { detail: 'The form did not say what to change.' });
      }
    } catch (error) {
      const appError = asAppError(error);
      const section: Section =
        action === 'password'
          ? 'password'
          : action === 'change_email'
            ? 'email'
            : action === 'profile'
              ? 'profile'
              : action === 'revoke_app'
                ? 'apps'
                : action === 'link_identity' || action === 'unlink_identity'
                  ? 'identities'
                  : 'sessions';
      const errors =
        section === 'password'
          ? formErrors(appError, {
              fields: PASSWORD_FIELDS,
              passwordField: 'new_password',
              placement: {
                INVALID_CREDENTIALS: 'current_password',
                PASSWORD_BREACHED: 'new_password',
                PASSWORD_REUSED: 'new_password',
                PASSWORD_MISMATCH: 'confirm_password',
              },
            })
          : section === 'email'
            ? formErrors(appError, {
                fields: EMAIL_FIELDS,
                placement: { INVALID_CREDENTIALS: 'password', EMAIL_UNCHANGED: 'new_email' },
              })
            : formErrors(appError, { fields: section === 'profile' ? PROFILE_FIELDS : [] });
      const values =
        section === 'profile'
          ? Object.fromEntries(PROFILE_FIELDS.map((f) => [f, field(body, f)]))
          : section === 'email'
            ? { new_email: field(body, 'new_email') }
            : {};
      return show(request, reply, session, { section, errors, values });
    }
  });
}

/** "Chrome on Linux": enough to recognise a device, without a user-agent parser. */
function describeUserAgent(userAgent: string | null): string {
  if (!userAgent) return 'Unknown device';
  const browsers: [RegExp, string][] = [
    [/Edg\//, 'Edge'],
    [/OPR\/|Opera/, 'Opera'],
    [/Firefox\//, 'Firefox'],
    [/Chrom(e|ium)\//, 'Chrome'],
    [/Safari\//, 'Safari'],
    [/curl\//, 'curl'],
  ];
  const systems: [RegExp, string][] = [
    [/Android/, 'Android'],
    [/iPhone|iPad|iOS/, 'iOS'],
    [/Windows/, 'Windows'],
    [/Mac OS X|Macintosh/, 'macOS'],
    [/Linux|X11/, 'Linux'],
  ];
  const browser = browsers.find(([pattern]) => pattern.test(userAgent))?.[1];
  const system = systems.find(([pattern]) => pattern.test(userAgent))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  return browser ?? system ?? userAgent.slice(0, 60);
}

/** "24 Nov 2025, 10:30 UTC": the server does not know the reader's time zone. */
function formatTime(iso: string): string {
  return `${new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' }).format(new Date(iso))} UTC`;
}
