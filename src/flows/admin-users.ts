import { sql } from 'kysely';
import type { User } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { canonicalUuid } from '../domain/identifiers.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { type AuditAction, recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { publicLink, queueMail } from '../infra/mail.ts';
import { issueOneTimeToken, voidOneTimeTokens } from '../infra/one-time-tokens.ts';
import { dummyHash } from '../infra/passwords.ts';
import { revokeSession, revokeUserSessions } from '../infra/sessions.ts';
import { findUserByIdentifier } from '../infra/users.ts';
import { type AccountView, prepareDeletion } from './account.ts';
import { type AdminActor, type AdminUserView, adminUserView } from './admin.ts';
import { assertAcceptablePassword, uniqueViolation, validateRegistration } from './register.ts';
import { listUserSessions, type SessionView } from './sessions.ts';

/** How long the set-password link of an account made without a password works. */
export const SET_PASSWORD_LINK_HOURS = 72;

/**
 * Every administrative action on a user is audited with the administrator as
 * the row's `user_id` (null at the CLI) and the user acted on in `details`.
 */
function auditAsAdmin(
  db: Parameters<typeof recordAudit>[0],
  action: Extract<
    AuditAction,
    | 'admin_user_created'
    | 'admin_user_deleted'
    | 'admin_password_reset_sent'
    | 'admin_superuser_changed'
    | 'admin_sessions_viewed'
    | 'admin_sessions_revoked'
    | 'admin_user_exported'
    | 'admin_users_viewed'
  >,
  target: { id: number; uuid: string },
  actor: AdminActor,
  context: RequestContext,
  details: Record<string, unknown> = {},
) {
  return recordAudit(
    db,
    {
      action,
      userId: actor.userId,
      details: { target_user_uuid: target.uuid, target_user_id: target.id, via: actor.via, ...details },
    },
    context,
  );
}

/** `GET /admin/users/{uuid}`: the user as the list shows them; audited as `admin_users_viewed`. */
export async function getUserAsAdmin(
  services: Services,
  target: User,
  actor: AdminActor,
  context: RequestContext,
): Promise<AdminUserView> {
  await auditAsAdmin(services.db, 'admin_users_viewed', target, actor, context);
  return adminUserView(target);
}

export interface AdminCreateUserInput {
  email: string;
  username: string;
  /** Left out: the user is mailed a link to choose one. */
  password?: string | undefined;
  email_verified?: boolean | undefined;
  first_name?: string | null | undefined;
  last_name?: string | null | undefined;
  name?: string | null | undefined;
  language_code?: string | undefined;
}

/**
 * `POST /admin/users`, `gatehouse users create`: the registration field
 * rules, password policy and breach check apply, and a taken email or
 * username answers as registration does (409 EMAIL_TAKEN, USERNAME_TAKEN).
 * Without a password the account has none that works (as an account made by
 * a provider's sign-in) and the user is mailed `account_created`: a link to
 * the reset page, valid SET_PASSWORD_LINK_HOURS, which also confirms the
 * address. With a password and an unverified address, the verification mail
 * goes as registration sends it (when REQUIRE_EMAIL_VERIFICATION is on).
 */
export async function createUserAsAdmin(
  services: Services,
  input: AdminCreateUserInput,
  actor: AdminActor,
  context: RequestContext,
): Promise<AdminUserView> {
  const withPassword = input.password !== undefined;
  const valid = validateRegistration({
    email: input.email,
    username: input.username,
    // Checked by the field rules only when given.
    password: input.password ?? 'none',
    first_name: input.first_name ?? undefined,
    last_name: input.last_name ?? undefined,
    name: input.name ?? undefined,
    language_code: input.language_code,
  });
  if (withPassword) {
    await assertAcceptablePassword(services, valid.password, { username: valid.username, email: valid.email });
  }
  if (await findUserByIdentifier(services.db, valid.email)) throw new AppError('EMAIL_TAKEN');
  if (await findUserByIdentifier(services.db, valid.username)) throw new AppError('USERNAME_TAKEN');
  const passwordHash = withPassword
    ? await services.hasher.hash(valid.password)
    : // No password: a random hash of the current algorithm that nothing matches.
      dummyHash({ algorithm: services.config.passwordHasher, bcryptRounds: services.config.bcryptRounds });
  const now = services.clock.now();
  const verified = input.email_verified === true;
  let mailed: 'account_created' | 'verify_email' | null = null;
  try {
    const user = await services.db.transaction().execute(async (trx) => {
      const user = await trx
        .insertInto('users')
        .values({
          email: valid.email,
          username: valid.username,
          password_hash: passwordHash,
          has_password: withPassword,
          first_name: valid.firstName,
          last_name: valid.lastName,
          name: valid.name,
          language_code: valid.languageCode,
          email_verified_at: verified ? now : null,
          password_changed_at: withPassword ? now : null,
          created_at: now,
          updated_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      const name = user.first_name ?? user.name ?? user.username;
      if (withPassword) {
        await trx.insertInto('password_history').values({ user_id: user.id, password_hash: passwordHash }).execute();
      }
      if (!withPassword) {
        const token = await issueOneTimeToken(trx, {
          purpose: 'reset_password',
          userId: user.id,
          email: user.email,
          now,
          ttlSeconds: SET_PASSWORD_LINK_HOURS * 3600,
        });
        await queueMail(trx, {
          to: user.email,
          template: 'account_created',
          languageCode: user.language_code,
          data: {
            name,
            username: user.username,
            link: publicLink(services.config.publicUrl, 'reset-password', { token }),
            hours: SET_PASSWORD_LINK_HOURS,
          },
        });
        mailed = 'account_created';
      } else if (!verified && services.config.requireEmailVerification) {
        const token = await issueOneTimeToken(trx, {
          purpose: 'verify_email',
          userId: user.id,
          email: user.email,
          now,
        });
        await queueMail(trx, {
          to: user.email,
          template: 'verify_email',
          languageCode: user.language_code,
          data: { name, link: publicLink(services.config.publicUrl, 'verify-email', { token }) },
        });
        mailed = 'verify_email';
      }
      await auditAsAdmin(trx, 'admin_user_created', user, actor, context, {
        username: user.username,
        password_set: withPassword,
        email_verified: verified,
        mailed,
      });
      return user;
    });
    if (mailed) services.outbox.kick();
    return adminUserView(user);
  } catch (error) {
    const taken = uniqueViolation(error);
    if (taken) throw new AppError(taken);
    throw error;
  }
}

/**
 * `DELETE /admin/users/{uuid}`, `gatehouse users delete`: the rules of
 * self-deletion (409 CONFLICT while the user is the last admin of an
 * organization with other members; organizations they are alone in go with
 * them; every session revoked at once). A superuser cannot delete their own
 * account here (409 CANNOT_DELETE_SELF): DELETE /me asks for the password.
 */
export async function deleteUserAsAdmin(
  services: Services,
  target: User,
  actor: AdminActor,
  context: RequestContext,
): Promise<void> {
  if (actor.userId === target.id) {
    throw new AppError('CANNOT_DELETE_SELF', {
      detail: 'You cannot delete your own account through the administration API; use DELETE /api/v1/me',
    });
  }
  await services.db.transaction().execute(async (trx) => {
    const { sessionsRevoked, organizationsDeleted } = await prepareDeletion(services, trx, target, context, {
      by: 'admin',
      actorId: actor.userId,
    });
    await auditAsAdmin(trx, 'admin_user_deleted', target, actor, context, {
      username: target.username,
      sessions_revoked: sessionsRevoked,
      organizations_deleted: organizationsDeleted,
    });
    await trx.deleteFrom('users').where('id', '=', target.id).execute();
  });
}

/**
 * `POST /admin/users/{uuid}/password-reset`, `gatehouse users reset-password`:
 * mails the user a reset link (the forgot-password mail and link, older links
 * void). A disabled account is refused (409 CONFLICT): its link would not work.
 */
export async function sendPasswordResetAsAdmin(
  services: Services,
  target: User,
  actor: AdminActor,
  context: RequestContext,
): Promise<void> {
  if (!target.is_active) {
    throw new AppError('CONFLICT', { detail: 'The account is disabled; enable it first, a reset link would not work' });
  }
  const now = services.clock.now();
  await services.db.transaction().execute(async (trx) => {
    await voidOneTimeTokens(trx, 'reset_password', target.id, now);
    const token = await issueOneTimeToken(trx, {
      purpose: 'reset_password',
      userId: target.id,
      email: target.email,
      now,
    });
    await queueMail(trx, {
      to: target.email,
      template: 'reset_password',
      languageCode: target.language_code,
      data: {
        name: target.first_name ?? target.username,
        link: publicLink(services.config.publicUrl, 'reset-password', { token }),
      },
    });
    await auditAsAdmin(trx, 'admin_password_reset_sent', target, actor, context);
  });
  services.outbox.kick();
}

/**
 * Sets or clears the superuser flag (`PATCH /admin/users/{uuid}`
 * `is_superuser`, `gatehouse users superuser --on|--off`). Clearing it is
 * refused (409 LAST_SUPERUSER) when no other active superuser would remain.
 * Audited as `admin_superuser_changed`, also when nothing changed.
 */
export async function setSuperuserAsAdmin(
  services: Services,
  target: User,
  isSuperuser: boolean,
  actor: AdminActor,
  context: RequestContext,
): Promise<AdminUserView> {
  const user = await services.db.transaction().execute(async (trx) => {
    // Every superuser row locked, in id order: two superusers dropping each other's flag at once cannot both pass.
    const superusers = await trx
      .selectFrom('users')
      .select(['id', 'is_active'])
      .where('is_superuser', '=', true)
      .orderBy('id')
      .forUpdate()
      .execute();
    const current = await trx.selectFrom('users').selectAll().where('id', '=', target.id).executeTakeFirst();
    if (!current) throw new AppError('NOT_FOUND', { detail: 'No such user' });
    if (!isSuperuser && current.is_superuser && !superusers.some((s) => s.id !== current.id && s.is_active)) {
      throw new AppError('LAST_SUPERUSER', {
        detail: `${current.username} is the last active superuser; make another user a superuser first`,
      });
    }
    const changed = current.is_superuser !== isSuperuser;
    const user = changed
      ? await trx
          .updateTable('users')
          .set({ is_superuser: isSuperuser, updated_at: services.clock.now() })
          .where('id', '=', current.id)
          .returningAll()
          .executeTakeFirstOrThrow()
      : current;
    await auditAsAdmin(trx, 'admin_superuser_changed', current, actor, context, {
      is_superuser: isSuperuser,
      changed,
    });
    return user;
  });
  return adminUserView(user);
}

/** `GET /admin/users/{uuid}/sessions`: the user's live sessions as GET /sessions shows them; audited. */
export async function listSessionsAsAdmin(
  services: Services,
  target: User,
  actor: AdminActor,
  context: RequestContext,
  currentSessionId: number | null = null,
): Promise<SessionView[]> {
  const sessions = await listUserSessions(services, target.id, currentSessionId);
  await auditAsAdmin(services.db, 'admin_sessions_viewed', target, actor, context, { sessions: sessions.length });
  return sessions;
}

/**
 * Revokes one session of the user (`sessionUuid`) or, without one, all of
 * them; published at once like logout-all, so every instance refuses their
 * access tokens from the next request. False when the session is not the
 * user's, unknown, malformed or already revoked.
 */
export async function revokeSessionsAsAdmin(
  services: Services,
  target: User,
  sessionUuid: string | null,
  actor: AdminActor,
  context: RequestContext,
): Promise<boolean> {
  const id = sessionUuid === null ? null : canonicalUuid(sessionUuid);
  if (id === undefined) return false;
  return services.db.transaction().execute(async (trx) => {
    if (id === null) {
      const revoked = await revokeUserSessions(services, target.id, { reason: 'admin' }, trx);
      await auditAsAdmin(trx, 'admin_sessions_revoked', target, actor, context, {
        all_sessions: true,
        sessions_revoked: revoked.length,
      });
      return true;
    }
    if ((await revokeSession(services, target.id, id, 'admin', trx)) === undefined) return false;
    await auditAsAdmin(trx, 'admin_sessions_revoked', target, actor, context, {
      session_uuid: id,
      sessions_revoked: 1,
    });
    return true;
  });
}

/** A user's data, as `GET /admin/users/{uuid}/export` gives it: no password hash, token hash or TOTP secret. */
export interface UserExport {
  profile: AdminUserView & {
    updated_at: string;
    password_changed_at: string | null;
    has_password: boolean;
    mfa_totp: boolean;
    identities: { provider: string; email: string | null; email_verified: boolean; created_at: string }[];
    passkeys: { id: string; name: string; created_at: string; last_used_at: string | null }[];
  };
  organizations: AccountView['organizations'];
  sessions: {
    id: string;
    kind: string;
    user_agent: string | null;
    ip_address: string | null;
    created_at: string;
    last_used_at: string;
    expires_at: string;
    revoked_at: string | null;
    revoked_reason: string | null;
  }[];
  audit_logs: {
    id: number;
    action: string;
    organization_uuid: string | null;
    ip_address: string | null;
    user_agent: string | null;
    details: Record<string, unknown>;
    created_at: string;
  }[];
}

const iso = (date: Date | null) => date?.toISOString() ?? null;

/**
 * `GET /admin/users/{uuid}/export`, `gatehouse users export`: the profile,
 * memberships, every session (revoked ones included) and every audit row
 * about the user (`user_id` theirs). Audited as `admin_user_exported`.
 */
export async function exportUserAsAdmin(
  services: Services,
  target: User,
  actor: AdminActor,
  context: RequestContext,
): Promise<UserExport> {
  const { db } = services;
  const [organizations, totp, identities, passkeys, sessions, audit] = await Promise.all([
    sql<{
      organizations: AccountView['organizations'];
    }>`select gatehouse_user_organizations(${target.id}) as organizations`
      .execute(db)
      .then((r) => r.rows[0]?.organizations ?? []),
    db
      .selectFrom('mfa_totp')
      .select('user_id')
      .where('user_id', '=', target.id)
      .where('confirmed_at', 'is not', null)
      .executeTakeFirst(),
    db
      .selectFrom('user_identities')
      .select(['provider', 'email', 'email_verified', 'created_at'])
      .where('user_id', '=', target.id)
      .orderBy('id')
      .execute(),
    db
      .selectFrom('passkeys')
      .select(['uuid', 'name', 'created_at', 'last_used_at'])
      .where('user_id', '=', target.id)
      .orderBy('id')
      .execute(),
    db
      .selectFrom('sessions')
      .select([
        'uuid',
        'kind',
        'user_agent',
        'ip_address',
        'created_at',
        'last_used_at',
        'expires_at',
        'revoked_at',
        'revoked_reason',
      ])
      .where('user_id', '=', target.id)
      .orderBy('id', 'desc')
      .execute(),
    db
      .selectFrom('audit_logs as a')
      .leftJoin('organizations as o', 'o.id', 'a.organization_id')
      .select([
        'a.id',
        'a.action',
        'o.uuid as organization_uuid',
        'a.ip_address',
        'a.user_agent',
        'a.details',
        'a.created_at',
      ])
      .where('a.user_id', '=', target.id)
      .orderBy('a.id', 'desc')
      .execute(),
  ]);
  const data: UserExport = {
    profile: {
      ...adminUserView(target),
      updated_at: target.updated_at.toISOString(),
      password_changed_at: iso(target.password_changed_at),
      has_password: target.has_password,
      mfa_totp: totp !== undefined,
      identities: identities.map((i) => ({ ...i, created_at: i.created_at.toISOString() })),
      passkeys: passkeys.map((p) => ({
        id: p.uuid,
        name: p.name,
        created_at: p.created_at.toISOString(),
        last_used_at: iso(p.last_used_at),
      })),
    },
    organizations,
    sessions: sessions.map((s) => ({
      id: s.uuid,
      kind: s.kind,
      user_agent: s.user_agent,
      ip_address: s.ip_address,
      created_at: s.created_at.toISOString(),
      last_used_at: s.last_used_at.toISOString(),
      expires_at: s.expires_at.toISOString(),
      revoked_at: iso(s.revoked_at),
      revoked_reason: s.revoked_reason,
    })),
    audit_logs: audit.map((a) => ({ ...a, created_at: a.created_at.toISOString() })),
  };
  await auditAsAdmin(db, 'admin_user_exported', target, actor, context);
  return data;
}
