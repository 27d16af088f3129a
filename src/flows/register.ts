import { randomBytes } from 'node:crypto';
import { type Insertable, type Kysely, type Selectable, sql } from 'kysely';
import { executePrepared } from '../db/prepared.ts';
import type { Database, EmailOutboxTable, UsersTable } from '../db/schema.ts';
import {
  type Check,
  checkEmail,
  checkLanguageCode,
  checkOrganizationName,
  checkPersonName,
  checkStorable,
  checkUsername,
  usernameFromEmail,
} from '../domain/account-rules.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { normalizePassword, passwordPolicyIssues } from '../domain/password-policy.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { isStorableText } from '../domain/text.ts';
import { type UserBody, userBody } from '../domain/user-view.ts';
import { AUDIT_COLUMNS, type AuditEntry, auditSelection, recordAudit } from '../infra/audit.ts';
import { hostClaims, orgClaimsOf, productClaims } from '../infra/claims.ts';
import type { Services } from '../infra/container.ts';
import { outboxRow, publicLink, type QueuedMail } from '../infra/mail.ts';
import { MAILS_PER_HOUR } from '../infra/mailed-links.ts';
import { newOneTimeToken, ONE_TIME_TOKEN_TTL_SECONDS } from '../infra/one-time-tokens.ts';
import { newSession, type SessionUser, startedSession, type TokenPair } from '../infra/sessions.ts';
import { createOrganizationWithOwner } from './organizations.ts';

export interface RegistrationInput {
  email: string;
  /** Required unless USERNAME_REQUIRED=false, which generates one (`usernameFromEmail`) when absent or blank. */
  username?: string | undefined;
  password: string;
  confirm_password?: string | undefined;
  first_name?: string | null | undefined;
  last_name?: string | null | undefined;
  /** A full name, stored as given (trimmed, NFC); optional. */
  name?: string | null | undefined;
  organization_name?: string | null | undefined;
  language_code?: string | undefined;
}

export interface RegistrationOptions {
  /**
   * Report every problem of the input in one VALIDATION_ERROR whose `errors`
   * name the fields (mismatch on `confirm_password`, password rules and
   * breach on `password`), as the registration page shows them. Without it,
   * the API's documented answers: one problem kind at a time.
   */
  allProblemsAtOnce?: boolean;
  /** With REGISTER_RETURNS_TOKENS=true, sign the new account in and add the tokens (the API; not the page). */
  signIn?: boolean;
  /** A username may be left out whatever USERNAME_REQUIRED says (a COMPAT route whose document has none). */
  usernameOptional?: boolean;
}

export interface UserOrganization {
  uuid: string;
  name: string;
  slug: string;
  /** `admin`, `user`, `viewer` or a custom role of the organization. */
  role: string;
}

export interface RegisteredAccount extends UserBody, Partial<TokenPair> {
  organization: UserOrganization | null;
  message: string;
}

interface ValidRegistration {
  email: string;
  username: string;
  password: string;
  firstName: string | null;
  lastName: string | null;
  name: string | null;
  organizationName: string | null;
  languageCode: string;
}

/** Longest full name (`name`) registration takes, in characters. */
const FULL_NAME_MAX_LENGTH = 200;

/** Field rules, every failing field reported at once. */
export function validateRegistration(input: RegistrationInput): ValidRegistration {
  const errors: FieldError[] = [];
  for (const [field, value] of Object.entries(input)) {
    if (typeof value === 'string') {
      const error = checkStorable(value, field);
      if (error) errors.push(error);
    }
  }
  if (errors.length > 0) throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });

  const take = <T>(check: Check<T>): T | undefined => {
    if (check.ok) return check.value;
    errors.push(check.error);
    return undefined;
  };
  const email = take(checkEmail(input.email));
  const username = take(checkUsername(input.username ?? ''));
  const firstName = take(checkPersonName(input.first_name ?? '', 'first_name'));
  const lastName = take(checkPersonName(input.last_name ?? '', 'last_name'));
  const name = take(checkPersonName(input.name ?? '', 'name', FULL_NAME_MAX_LENGTH));
  const organizationName =
    input.organization_name == null ? null : take(checkOrganizationName(input.organization_name));
  const languageCode = input.language_code == null ? 'en' : take(checkLanguageCode(input.language_code));
  if (input.password === '') errors.push({ field: 'password', message: 'Password is required', code: 'required' });
  if (errors.length > 0) throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  return {
    email: email as string,
    username: username as string,
    password: normalizePassword(input.password),
    firstName: firstName ?? null,
    lastName: lastName ?? null,
    name: name ?? null,
    organizationName: organizationName ?? null,
    languageCode: languageCode as string,
  };
}

/** Password rules, then the breach corpus: the order a person fixes them in. */
export async function assertAcceptablePassword(
  services: Services,
  password: string,
  context: { username?: string; email?: string },
): Promise<void> {
  const problem = await passwordProblem(services, password, context);
  if (problem) throw problem;
}

/** PASSWORD_POLICY with every failing rule, else PASSWORD_BREACHED, else nothing. */
async function passwordProblem(
  services: Services,
  password: string,
  context: { username?: string; email?: string },
): Promise<AppError | undefined> {
  const issues = passwordPolicyIssues(password, context, {
    preset: services.config.passwordPolicy,
    hasher: services.config.passwordHasher,
    minLength: services.config.passwordMinLength,
  });
  if (issues.length > 0) return new AppError('PASSWORD_POLICY', { issues });
  if (await services.breach.isBreached(password)) {
    return new AppError('PASSWORD_BREACHED', {
      recommendation: 'Please choose a different password that has not been compromised',
    });
  }
  return undefined;
}

function passwordsDiffer(input: RegistrationInput): boolean {
  return (
    input.confirm_password !== undefined &&
    normalizePassword(input.confirm_password) !== normalizePassword(input.password)
  );
}

/**
 * The API's documented answers, one problem kind at a time: VALIDATION_ERROR
 * (fields), then PASSWORD_MISMATCH, then PASSWORD_POLICY (with `issues`),
 * then PASSWORD_BREACHED.
 */
async function validateInTurn(services: Services, input: RegistrationInput): Promise<ValidRegistration> {
  const valid = validateRegistration(input);
  if (passwordsDiffer(input)) throw new AppError('PASSWORD_MISMATCH');
  await assertAcceptablePassword(services, valid.password, { username: valid.username, email: valid.email });
  return valid;
}

/**
 * Every problem of a registration in one VALIDATION_ERROR, for a form that
 * shows them all after one submission (each one costs a registration of the
 * rate limit): the field rules, the confirmation (`confirm_password`), every
 * failing password rule and the breach check (`password`).
 */
async function validateAllAtOnce(services: Services, input: RegistrationInput): Promise<ValidRegistration> {
  let valid: ValidRegistration | undefined;
  const errors: FieldError[] = [];
  try {
    valid = validateRegistration(input);
  } catch (error) {
    if (!(error instanceof AppError) || error.code !== 'VALIDATION_ERROR') throw error;
    errors.push(...(error.options.errors ?? []));
  }
  if (!errors.some((e) => e.field === 'password')) {
    const problem = await passwordProblem(services, normalizePassword(input.password), {
      username: valid?.username ?? (input.username ?? '').trim(),
      email: valid?.email ?? input.email.trim(),
    });
    if (problem?.options.issues) {
      for (const issue of problem.options.issues) {
        errors.push({ field: 'password', message: issue, code: 'password_policy' });
      }
    } else if (problem) {
      errors.push(fieldError('password', problem));
    }
  }
  // After the password's own problems, as confirm_password follows password in a form.
  if (passwordsDiffer(input)) errors.push(fieldError('confirm_password', new AppError('PASSWORD_MISMATCH')));
  if (errors.length > 0 || !valid) {
    throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  }
  return valid;
}

/** A whole-request problem as the error of one field: its detail and recommendation, its code in lower case. */
function fieldError(field: string, problem: AppError): FieldError {
  const { recommendation } = problem.options;
  return {
    field,
    message: recommendation ? `${problem.detail}. ${recommendation}` : problem.detail,
    code: problem.code.toLowerCase(),
  };
}

const TAKEN_BY_CONSTRAINT: Record<string, 'EMAIL_TAKEN' | 'USERNAME_TAKEN'> = {
  users_email_key: 'EMAIL_TAKEN',
  users_username_key: 'USERNAME_TAKEN',
};

export function uniqueViolation(error: unknown): 'EMAIL_TAKEN' | 'USERNAME_TAKEN' | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, constraint } = error as { code?: unknown; constraint?: unknown };
  if (code !== '23505' || typeof constraint !== 'string') return undefined;
  return TAKEN_BY_CONSTRAINT[constraint];
}

/**
 * Creates the user and, when named, its organization with default roles and
 * the admin membership, the audit row and the verification mail: all or
 * nothing, as one statement, or one transaction when there is an organization.
 */
export async function registerAccount(
  services: Services,
  input: RegistrationInput,
  context: RequestContext,
  options: RegistrationOptions = {},
): Promise<RegisteredAccount> {
  const valid = options.allProblemsAtOnce
    ? await validateAllAtOnce(services, input)
    : await validateInTurn(services, input);
  // No look-up first: the unique constraints answer a taken email or username,
  // races included, and a free one (nearly every request) saves a round trip.
  // A taken one costs the same hash as a free one, so the two take alike long.
  const passwordHash = await services.hasher.hash(valid.password);
  const now = services.clock.now();
  const verify = services.config.requireEmailVerification;
  const values: Insertable<UsersTable> = {
    email: valid.email,
    username: valid.username,
    password_hash: passwordHash,
    first_name: valid.firstName,
    last_name: valid.lastName,
    name: valid.name,
    language_code: valid.languageCode,
    // Unverified until the owner follows a verification link, whether or not login waits for it.
    email_verified_at: null,
    password_changed_at: now,
    created_at: now,
    updated_at: now,
  };
  const audit = (organization: { id: number; uuid: string } | null): AuditEntry => ({
    action: 'user_registration',
    organizationId: organization?.id ?? null,
    details: { username: valid.username, organization_uuid: organization?.uuid ?? null },
  });
  let verification: VerificationMail | null = null;
  if (verify) {
    const { token, hash } = newOneTimeToken();
    verification = {
      tokenHash: hash,
      expiresAt: new Date(now.getTime() + ONE_TIME_TOKEN_TTL_SECONDS.verify_email * 1000),
      mail: outboxRow({
        to: valid.email,
        template: 'verify_email',
        languageCode: valid.languageCode,
        data: {
          name: valid.firstName ?? valid.name ?? valid.username,
          link: publicLink(services.config.publicUrl, 'verify-email', { token }),
        },
      }),
    };
  }

  try {
    let user: Selectable<UsersTable>;
    let organization: Awaited<ReturnType<typeof createOrganizationWithOwner>> | null = null;
    if (valid.organizationName === null) {
      // The common case is one statement, atomic by itself: no BEGIN/COMMIT round trips.
      user = await insertAccount(services.db, values, { audit: audit(null), verification }, context);
    } else {
      const organizationName = valid.organizationName;
      ({ user, organization } = await services.db.transaction().execute(async (trx) => {
        const user = await insertAccount(trx, values, { audit: null, verification }, context);
        const organization = await createOrganizationWithOwner(trx, organizationName, user.id);
        await recordAudit(trx, { ...audit(organization), userId: user.id }, context);
        return { user, organization };
      }));
    }
    if (verification) services.outbox.kick();
    services.metrics.registrations.inc();
    return {
      ...userBody(user),
      organization: organization
        ? { uuid: organization.uuid, name: organization.name, slug: organization.slug, role: organization.role }
        : null,
      message: verify
        ? 'User account created successfully. Please verify your email address to complete registration.'
        : 'User account created successfully.',
    };
  } catch (error) {
    const taken = uniqueViolation(error);
    if (taken) throw new AppError(taken);
    throw error;
  }
}

interface VerificationMail {
  tokenHash: string;
  expiresAt: Date;
  mail: Insertable<EmailOutboxTable>;
}

/**
 * The user, its first password_history row and, when given, its audit row and
 * its verification token and mail: one INSERT with data-modifying CTEs, so one
 * round trip that commits or fails as a whole, in or out of a transaction.
 */
async function insertAccount(
  db: Kysely<Database>,
  values: Insertable<UsersTable>,
  extra: { audit: AuditEntry | null; verification: VerificationMail | null },
  context: RequestContext,
): Promise<Selectable<UsersTable>> {
  const { audit, verification } = extra;
  let query = db
    .with('new_user', (qc) => qc.insertInto('users').values(values).returningAll())
    .with('history', (qc) =>
      qc
        .insertInto('password_history')
        .columns(['user_id', 'password_hash'])
        .expression((eb) => eb.selectFrom('new_user').select(['id', 'password_hash'])),
    );
  if (audit) {
    query = query.with('audit', (qc) =>
      qc
        .insertInto('audit_logs')
        .columns(AUDIT_COLUMNS)
        .expression((eb) => eb.selectFrom('new_user').select(auditSelection(audit, context, 'id'))),
    ) as unknown as typeof query;
  }
  if (verification) {
    query = query
      .with('token', (qc) =>
        qc
          .insertInto('one_time_tokens')
          .columns(['purpose', 'token_hash', 'user_id', 'email', 'expires_at'])
          .expression((eb) =>
            eb
              .selectFrom('new_user')
              .select([
                sql.val('verify_email').as('purpose'),
                sql.val(verification.tokenHash).as('token_hash'),
                'id',
                'email',
                sql.val(verification.expiresAt).as('expires_at'),
              ]),
          ),
      )
      .with('mail', (qc) => qc.insertInto('email_outbox').values(verification.mail)) as unknown as typeof query;
  }
  // A handful of shapes (with or without audit row and mail), each prepared once per connection.
  const [user] = await executePrepared(db, query.selectFrom('new_user').selectAll());
  return user as Selectable<UsersTable>;
}

/** A registration's outcome: an account shown to its owner (201), or the one neutral answer (202). */
export type RegistrationOutcome = { created: RegisteredAccount } | { accepted: { message: string } };

/**
 * Registration as the deployment is configured, for the API and the page
 * alike: with REGISTRATION_ENUMERATION_SAFE every accepted request gets the
 * same neutral answer, otherwise the new account (or 409 EMAIL_TAKEN /
 * USERNAME_TAKEN).
 */
export async function register(
  services: Services,
  input: RegistrationInput,
  context: RequestContext,
  options: RegistrationOptions = {},
): Promise<RegistrationOutcome> {
  input = withUsername(services, input, options.usernameOptional === true);
  try {
    if (services.config.registrationEnumerationSafe) {
      return { accepted: await registerAccountWithoutDisclosure(services, input, context, options) };
    }
    const created = await registerAccount(services, input, context, options);
    if (!services.config.registerReturnsTokens || !options.signIn) return { created };
    return { created: { ...created, ...(await signIn(services, created, context)) } };
  } catch (error) {
    if (error instanceof AppError && error.status < 500)
      await recordRefusedRegistration(services, input, context, error.code);
    throw error;
  }
}

/**
 * REGISTER_RETURNS_TOKENS: the new account's first session (an API session,
 * as a password login starts), whose tokens join the registration body.
 */
async function signIn(services: Services, user: SessionUser, context: RequestContext): Promise<TokenPair> {
  const session = newSession(services, user, context, { kind: 'api' });
  const host = await hostClaims(services, {
    user: { id: user.id, uuid: user.uuid, email: user.email },
    session: { uuid: session.uuid, amr: session.amr, auth_time: Math.floor(session.issuedAt.getTime() / 1000) },
  });
  const row = await services.db
    .insertInto('sessions')
    .values(session.row)
    .returning('id')
    .$if(services.config.accessTokenOrgClaims, (q) => q.returning(orgClaimsOf(user.id).as('org_claims')))
    .executeTakeFirstOrThrow();
  await services.db.updateTable('users').set({ last_login_at: session.issuedAt }).where('id', '=', user.id).execute();
  const claims = { ...host, ...productClaims(services.config, row) };
  return (await startedSession(services, user, session, row.id, claims)).tokens;
}

/** Longest email or username kept in `registration_attempts`: what was sent may be far longer than what is valid. */
const ATTEMPT_TEXT_MAX = 254;

function attemptText(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const text = [...value.trim()].slice(0, ATTEMPT_TEXT_MAX).join('');
  return text !== '' && isStorableText(text) ? text.toLowerCase() : null;
}

/**
 * A `registration_attempts` row for a refused registration: the email and
 * username as sent (trimmed, lower-cased, cut to 254 characters; null when
 * absent or not storable), the client and the problem code as `reason`. Never
 * the password. Each refusal has already spent one of RATE_LIMIT_REGISTER, so
 * a client writes no more rows than it may register. A failure to record is
 * logged, never answered: the refusal is the answer.
 */
export async function recordRefusedRegistration(
  services: Services,
  input: { email?: unknown; username?: unknown },
  context: RequestContext,
  reason: string,
): Promise<void> {
  try {
    await services.db
      .insertInto('registration_attempts')
      .values({
        attempted_at: services.clock.now(),
        email: attemptText(input.email),
        username: attemptText(input.username),
        ip_address: context.ip,
        user_agent: context.userAgent,
        reason,
      })
      .execute();
  } catch (error) {
    services.log.warn({ err: error, reason }, 'refused registration not recorded');
  }
}

/**
 * With USERNAME_REQUIRED=false, a registration without a username (absent or
 * blank) gets one made from its email address and 8 random hex digits.
 */
function withUsername(services: Services, input: RegistrationInput, usernameOptional: boolean): RegistrationInput {
  if (
    (services.config.usernameRequired && !usernameOptional) ||
    (input.username ?? '').trim() !== '' ||
    typeof input.email !== 'string'
  ) {
    return input;
  }
  return { ...input, username: usernameFromEmail(input.email, randomBytes(4).toString('hex')) };
}

/** The one answer to every accepted registration while REGISTRATION_ENUMERATION_SAFE is on. */
export const ACCEPTED_REGISTRATION_MESSAGE =
  'Registration received. Please check your email to continue; the message explains the next step.';

/**
 * REGISTRATION_ENUMERATION_SAFE: every registration that passes validation
 * answers alike (202, the same body, the same password hashing cost), whether
 * its email, its username, both or neither are taken, so that no sequence of
 * registrations tells a taken address from a free one. What would have been
 * a conflict is told by mail instead: to the owner of a taken address, "someone
 * tried to register with your address"; to a free address whose username is
 * taken, "choose another username". Nothing is created for either.
 */
async function registerAccountWithoutDisclosure(
  services: Services,
  input: RegistrationInput,
  context: RequestContext,
  options: RegistrationOptions,
): Promise<{ message: string }> {
  try {
    await registerAccount(services, input, context, options);
  } catch (error) {
    if (!(error instanceof AppError) || (error.code !== 'EMAIL_TAKEN' && error.code !== 'USERNAME_TAKEN')) throw error;
    // Refused all the same, though the answer does not say so.
    await recordRefusedRegistration(services, input, context, error.code);
    // registerAccount hashed the password before the insert failed, as for a new account.
    await notifyConflict(services, validateRegistration(input), error.code);
  }
  return { message: ACCEPTED_REGISTRATION_MESSAGE };
}

/**
 * Mails what a refused registration would have answered: the owner of the
 * address when it has an account, otherwise the address given when only its
 * username was taken. At most MAILS_PER_HOUR of each kind to one address an
 * hour; past that, nothing (the answer is the same 202 anyway).
 */
async function notifyConflict(
  services: Services,
  valid: ValidRegistration,
  conflict: 'EMAIL_TAKEN' | 'USERNAME_TAKEN',
): Promise<void> {
  const { publicUrl } = services.config;
  const now = services.clock.now();
  const since = new Date(now.getTime() - 3600_000);
  const queued = await services.db.transaction().execute(async (trx) => {
    const owner = await trx
      .selectFrom('users')
      .select(['email', 'username', 'first_name', 'language_code'])
      .where('email', '=', valid.email)
      .executeTakeFirst();
    let mail: QueuedMail<'registration_attempt'> | QueuedMail<'registration_username_taken'>;
    if (owner) {
      mail = {
        to: owner.email,
        template: 'registration_attempt',
        languageCode: owner.language_code,
        data: {
          name: owner.first_name ?? owner.username,
          loginLink: publicLink(publicUrl, 'login'),
          resetLink: publicLink(publicUrl, 'forgot-password'),
        },
      };
    } else if (conflict === 'USERNAME_TAKEN') {
      mail = {
        to: valid.email,
        template: 'registration_username_taken',
        languageCode: valid.languageCode,
        data: { username: valid.username, registerLink: publicLink(publicUrl, 'register') },
      };
    } else {
      // The account that held the address was deleted in between: nobody to tell.
      return false;
    }
    const recent = await trx
      .selectFrom('email_outbox')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('to_address', '=', mail.to)
      .where('template', '=', mail.template)
      .where('created_at', '>', since)
      .executeTakeFirstOrThrow();
    if (Number(recent.count) >= MAILS_PER_HOUR) {
      services.log.info(
        { template: mail.template },
        'registration notice not mailed: hourly limit for this address reached',
      );
      return false;
    }
    // Stamped with the service clock, which the hourly count above reads.
    await trx
      .insertInto('email_outbox')
      .values({ ...outboxRow(mail), created_at: now })
      .execute();
    return true;
  });
  if (queued) services.outbox.kick();
}
