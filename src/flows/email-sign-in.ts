import { createHmac, randomInt } from 'node:crypto';
import { sql } from 'kysely';
import { AppError } from '../domain/errors.ts';
import { isLinkTokenShaped } from '../domain/identifiers.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { publicLink, queueMail } from '../infra/mail.ts';
import { requireEmail } from '../infra/mailed-links.ts';
import { hasTotp } from '../infra/mfa.ts';
import { newOneTimeToken } from '../infra/one-time-tokens.ts';
import type { SessionKind } from '../infra/sessions.ts';
import { sha256Hex } from '../infra/sha256.ts';
import {
  type LoggedIn,
  loginSource,
  mfaChallenge,
  recordLoginFailure,
  recordLoginSuccess,
  type TrustedDevice,
} from './login.ts';

/** A sign-in link or code works this long, once. */
export const EMAIL_SIGN_IN_TTL_SECONDS = 15 * 60;
/** Wrong codes after which a code dies, whatever the right one would have been. */
export const EMAIL_SIGN_IN_CODE_TRIES = 5;

/** The same words whether or not the address has an account: the answer reveals nothing. */
const EMAIL_SIGN_IN_MESSAGE = 'If an account exists for this email address, a sign-in email has been sent.';

const CODE_PATTERN = /^\d{6}$/;

/**
 * The code as stored: keyed (SECRET_KEY) so that a copy of the table cannot
 * be searched through all million codes, and bound to the address, so that
 * a code never works for another one.
 */
function codeHash(services: Services, email: string, code: string): string {
  return createHmac('sha256', services.config.secretKey).update(`email-sign-in\0${email}\0${code}`).digest('hex');
}

function signInInvalid(): AppError {
  return new AppError('EMAIL_SIGN_IN_INVALID', {
    detail: 'This sign-in link or code is invalid, has already been used or has expired. Ask for a new one.',
    oauthError: 'invalid_grant',
  });
}

/**
 * Mails a sign-in link and/or code (EMAIL_SIGN_IN) to an active account,
 * voiding the older ones. Counted per address, whatever the client IP: past
 * the limit 429, for every address alike. An unknown address or a disabled
 * account takes the same path (the same statements, in a savepoint that is
 * rolled back) and mails nothing; the answer is the same body.
 */
export async function requestEmailSignIn(
  services: Services,
  rawEmail: string,
  context: RequestContext,
): Promise<{ message: string }> {
  const email = requireEmail(rawEmail);
  // The address is hashed: Redis keys never hold it.
  const limit = await services.rateLimits.consume('email_sign_in_address', sha256Hex(email));
  if (!limit.allowed) throw new AppError('RATE_LIMIT_EXCEEDED', { retryAfter: limit.resetSeconds });

  const mode = services.config.emailSignIn;
  const now = services.clock.now();
  const mailed = await services.db.transaction().execute(async (trx) => {
    const account = await trx
      .selectFrom('users')
      .select(['id', 'email', 'username', 'first_name', 'language_code', 'is_active'])
      .where('email', '=', email)
      .executeTakeFirst();
    const recipient = account?.is_active ? account : undefined;
    if (!recipient) await sql`savepoint decoy_sign_in`.execute(trx);
    // A newer mail replaces the older ones.
    await trx
      .updateTable('email_sign_ins')
      .set({ used_at: now })
      .where('email', '=', email)
      .where('used_at', 'is', null)
      .execute();
    const link = mode === 'code' ? undefined : newOneTimeToken();
    const code = mode === 'link' ? undefined : String(randomInt(0, 1_000_000)).padStart(6, '0');
    await trx
      .insertInto('email_sign_ins')
      .values({
        user_id: recipient?.id ?? null,
        email,
        token_hash: link?.hash ?? null,
        code_hash: code === undefined ? null : codeHash(services, email, code),
        expires_at: new Date(now.getTime() + EMAIL_SIGN_IN_TTL_SECONDS * 1000),
      })
      .execute();
    await queueMail(trx, {
      to: email,
      template: 'email_sign_in',
      languageCode: recipient?.language_code ?? 'en',
      data: {
        name: recipient ? (recipient.first_name ?? recipient.username) : email,
        link: link ? publicLink(services.config.publicUrl, 'email-sign-in', { token: link.token }) : null,
        code: code ?? null,
      },
    });
    if (!recipient) await sql`rollback to savepoint decoy_sign_in`.execute(trx);
    const reason = account ? (recipient ? undefined : 'account_disabled') : 'unknown_user';
    await recordAudit(
      trx,
      {
        action: 'email_sign_in_request',
        userId: account?.id ?? null,
        details: { email, mailed: recipient !== undefined, mode, ...(reason && { reason }) },
      },
      context,
    );
    return recipient !== undefined;
  });
  if (mailed) services.outbox.kick();
  return { message: EMAIL_SIGN_IN_MESSAGE };
}

export interface EmailSignInProof {
  token?: unknown;
  email?: unknown;
  code?: unknown;
}

type Proof = { token: string } | { email: string; code: string };

function invalidField(field: string, message: string, code: string): AppError {
  return new AppError('VALIDATION_ERROR', {
    detail: 'One or more fields are invalid',
    errors: [{ field, message, code }],
  });
}

const present = (value: unknown) => value !== undefined && value !== null && value !== '';

/** `{token}` or `{email, code}`, each well-formed, else 422 naming the field. */
function validate(input: EmailSignInProof): Proof {
  if (present(input.token)) {
    if (present(input.code)) throw invalidField('code', 'Send either token or email and code, not both', 'not_allowed');
    if (!isLinkTokenShaped(input.token)) throw invalidField('token', 'Not a valid token', 'invalid_format');
    return { token: input.token };
  }
  if (!present(input.email)) throw invalidField('token', 'Send token, or email and code', 'required');
  if (typeof input.email !== 'string') throw invalidField('email', 'Not a valid email address', 'invalid_format');
  const email = requireEmail(input.email);
  if (!present(input.code)) throw invalidField('code', 'Field is required', 'required');
  if (typeof input.code !== 'string' || !CODE_PATTERN.test(input.code.trim())) {
    throw invalidField('code', 'The code has 6 digits', 'invalid_format');
  }
  return { email, code: input.code.trim() };
}

interface Spent {
  userId: number | null;
  email: string;
}

/** Spends a link's token: one UPDATE admitting only an unused, unexpired one, so of two requests one wins. */
async function spendLink(services: Services, token: string, now: Date): Promise<Spent | { unspent: Spent }> {
  const tokenHash = sha256Hex(token);
  const row = await services.db
    .updateTable('email_sign_ins')
    .set({ used_at: now })
    .where('token_hash', '=', tokenHash)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .returning(['user_id', 'email'])
    .executeTakeFirst();
  if (row) return { userId: row.user_id, email: row.email };
  // Spent, expired or unknown: whose it was, for the attempt's record.
  const known = await services.db
    .selectFrom('email_sign_ins')
    .select(['user_id', 'email'])
    .where('token_hash', '=', tokenHash)
    .executeTakeFirst();
  return { unspent: { userId: known?.user_id ?? null, email: known?.email ?? '(email sign-in link)' } };
}

/**
 * Tries a code: one UPDATE counts the try and, when the code is right,
 * spends it. Its WHERE admits only a live code with tries left, and
 * concurrent tries of one row are serialised by its row lock (each sees the
 * count the one before left), so parallel guesses get no more tries than
 * sequential ones.
 */
async function spendCode(
  services: Services,
  email: string,
  code: string,
  now: Date,
): Promise<Spent | { unspent: Spent }> {
  const hash = codeHash(services, email, code);
  const rows = await services.db
    .updateTable('email_sign_ins')
    .set((eb) => ({
      attempts: eb('attempts', '+', 1),
      used_at: sql<Date | null>`case when code_hash = ${hash} then ${now}::timestamptz else used_at end`,
    }))
    .where('email', '=', email)
    .where('code_hash', 'is not', null)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .where('attempts', '<', EMAIL_SIGN_IN_CODE_TRIES)
    .returning(['user_id', 'email', 'used_at'])
    .execute();
  const match = rows.find((row) => row.used_at !== null);
  if (match) return { userId: match.user_id, email: match.email };
  const user = await services.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
  return { unspent: { userId: user?.id ?? null, email } };
}

/**
 * The second half of e-mail sign-in: a link's token or the mailed code. A
 * spent, expired or unknown one, a wrong code, or a code past its tries is
 * 401 EMAIL_SIGN_IN_INVALID (recorded like a failed login). The account must
 * still own the address and be active (else 403 ACCOUNT_DISABLED); the
 * address counts as verified from now on. With a second factor on, the
 * answer is 403 MFA_REQUIRED as after a password; otherwise a session with
 * `amr: ["email"]`.
 */
export async function completeEmailSignIn(
  services: Services,
  input: EmailSignInProof,
  context: RequestContext,
  options: { kind: SessionKind; device?: TrustedDevice | undefined },
): Promise<LoggedIn> {
  const proof = validate(input);
  const now = services.clock.now();
  const spent =
    'token' in proof
      ? await spendLink(services, proof.token, now)
      : await spendCode(services, proof.email, proof.code, now);
  const failed = async (reason: 'invalid_email_sign_in' | 'account_disabled', who: Spent, error: AppError) => {
    const user = who.userId === null ? undefined : { id: who.userId };
    await recordLoginFailure(services, who.email, user, reason, context, 'email');
    services.metrics.logins.inc({ outcome: error.code.toLowerCase() });
    return error;
  };
  if ('unspent' in spent) throw await failed('invalid_email_sign_in', spent.unspent, signInInvalid());

  const user =
    spent.userId === null
      ? undefined
      : await services.db.selectFrom('users').selectAll().where('id', '=', spent.userId).executeTakeFirst();
  // Bound to the address it was mailed to: an account that changed its address since does not get in.
  if (!user || user.email !== spent.email) throw await failed('invalid_email_sign_in', spent, signInInvalid());
  if (!user.is_active) throw await failed('account_disabled', spent, new AppError('ACCOUNT_DISABLED'));

  // Following the mail proved the address.
  if (user.email_verified_at === null) {
    await services.db
      .updateTable('users')
      .set({ email_verified_at: sql<Date>`coalesce(email_verified_at, ${now}::timestamptz)`, updated_at: now })
      .where('id', '=', user.id)
      .execute();
  }
  if (await hasTotp(services.db, user.id)) {
    services.metrics.logins.inc({ outcome: 'mfa_required' });
    const source = loginSource(user, options.device);
    throw await mfaChallenge(services, user, user.email, source, options.kind, 'email');
  }
  const issued = await recordLoginSuccess(services, user.email, user, context, {
    kind: options.kind,
    amr: ['email'],
    hashUpgraded: false,
    method: 'email',
  });
  services.metrics.logins.inc({ outcome: 'success' });
  return { ...issued, userId: user.id };
}

/** Does this sign-in link still work? (The page asks before showing its button; only the post spends it.) */
export async function isEmailSignInLinkLive(services: Services, token: unknown): Promise<boolean> {
  if (!isLinkTokenShaped(token)) return false;
  const row = await services.db
    .selectFrom('email_sign_ins')
    .select('id')
    .where('token_hash', '=', sha256Hex(token))
    .where('used_at', 'is', null)
    .where('expires_at', '>', services.clock.now())
    .executeTakeFirst();
  return row !== undefined;
}
