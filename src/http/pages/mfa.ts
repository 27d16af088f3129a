import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../domain/errors.ts';
import { getAccount } from '../../flows/account.ts';
import type { BrowserSession } from '../../flows/authenticate.ts';
import {
  assertRecentlyAuthenticated,
  confirmTotp,
  disableTotp,
  reauthenticateSession,
  regenerateBackupCodes,
  startTotpSetup,
} from '../../flows/mfa.ts';
import { enforceRateLimit } from '../rate-limit.ts';
import { asAppError, type FormErrors, field, formBody, formErrors } from './forms.ts';
import type { Pages } from './page.ts';

const LABELS = { code: 'Authentication code', password: 'Password' };
const FIELDS = Object.keys(LABELS);

/**
 * `/account/mfa`: the second factor. Off: the QR code (server-rendered SVG)
 * and the secret as text, then a code to turn it on, then the backup codes,
 * shown once, with a download link. On: new backup codes, or turn it off.
 * Outside the recent-authentication window it asks for the password (and a
 * code, when it is on) first.
 */
export function mfaPages(app: FastifyInstance, pages: Pages): void {
  const { services } = pages;
  const title = 'Two-step verification';

  async function requireSession(request: FastifyRequest, reply: FastifyReply): Promise<BrowserSession | undefined> {
    const session = await pages.session(request);
    if (session) return session;
    pages.clearSessionCookie(request, reply);
    pages.redirect(reply, `${pages.paths.login}?redirect_to=${encodeURIComponent(pages.paths.mfa)}`);
    return undefined;
  }

  async function show(
    request: FastifyRequest,
    reply: FastifyReply,
    session: BrowserSession,
    failed?: { errors: FormErrors; section: string },
  ): Promise<FastifyReply> {
    const account = await getAccount(services, session.auth.userId);
    const data = {
      title,
      labels: LABELS,
      signedIn: true,
      account,
      ...(failed ? { errors: failed.errors, section: failed.section } : {}),
    };
    try {
      if (account.mfa.totp) {
        // Managing an active factor needs a recent authentication too; ask for it before the forms.
        await assertRecentlyAuthenticated(services, session.auth);
        return pages.render(request, reply, 'mfa', { ...data, state: 'enabled', left: account.mfa.backup_codes_left });
      }
      const setup = await startTotpSetup(services, session.auth, { reusePending: true });
      return pages.render(request, reply, 'mfa', { ...data, state: 'setup', setup, secretGroups: group(setup.secret) });
    } catch (error) {
      if (asAppError(error).code !== 'REAUTHENTICATION_REQUIRED') throw error;
      return pages.render(request, reply, 'mfa', { ...data, state: 'reauthenticate', needsCode: account.mfa.totp });
    }
  }

  function showCodes(request: FastifyRequest, reply: FastifyReply, codes: string[], fresh: boolean): FastifyReply {
    const text = `Backup codes for ${new URL(services.config.publicUrl).host}\nEach works once.\n\n${codes.join('\n')}\n`;
    return pages.render(request, reply, 'mfa', {
      title,
      signedIn: true,
      state: 'codes',
      fresh,
      codes,
      download: `data:text/plain;charset=utf-8,${encodeURIComponent(text)}`,
    });
  }

  app.get('/account/mfa', { schema: { hide: true } }, async (request, reply) => {
    const session = await requireSession(request, reply);
    return session ? show(request, reply, session) : reply;
  });

  app.post('/account/mfa', { schema: { hide: true } }, async (request, reply) => {
    const session = await requireSession(request, reply);
    if (!session) return reply;
    const body = formBody(request.body);
    const action = field(body, 'action');
    try {
      await enforceRateLimit(request, reply, 'reauthenticate');
      switch (action) {
        case 'reauthenticate': {
          const code = field(body, 'code');
          await reauthenticateSession(
            services,
            session.auth,
            { password: field(body, 'password'), ...(code === '' ? {} : { code }) },
            request.caller,
          );
          return pages.redirect(reply, pages.paths.mfa);
        }
        case 'confirm': {
          const { backup_codes } = await confirmTotp(services, session.auth, field(body, 'code'), request.caller);
          return showCodes(request, reply, backup_codes, false);
        }
        case 'backup_codes': {
          const { backup_codes } = await regenerateBackupCodes(
            services,
            session.auth,
            { code: field(body, 'code') },
            request.caller,
          );
          return showCodes(request, reply, backup_codes, true);
        }
        case 'disable':
          await disableTotp(
            services,
            session.auth,
            { password: field(body, 'password'), code: field(body, 'code') },
            request.caller,
          );
          return pages.redirect(reply, pages.paths.account, 'mfa_disabled');
        default:
          throw new AppError('MALFORMED_REQUEST', { detail: 'The form did not say what to change.' });
      }
    } catch (error) {
      const appError = asAppError(error);
      const errors = formErrors(appError, {
        fields: FIELDS,
        placement: { INVALID_MFA_CODE: 'code', INVALID_CREDENTIALS: 'password' },
      });
      return show(request, reply, session, { errors, section: action });
    }
  });
}

/** The base32 secret in groups of four, as people copy it by hand. */
function group(secret: string): string {
  return secret.replace(/(.{4})(?=.)/g, '$1 ');
}
