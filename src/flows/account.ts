import { isDeepStrictEqual } from 'node:util';
import { CompiledQuery, type Kysely, sql } from 'kysely';
import { BatchedRead } from '../db/batched-read.ts';
import { prepared } from '../db/prepared.ts';
import type { Database } from '../db/schema.ts';
import {
  type Check,
  checkLanguageCode,
  checkMetadata,
  checkPersonName,
  checkStorable,
} from '../domain/account-rules.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { isUuid } from '../domain/identifiers.ts';
import { normalizePassword } from '../domain/password-policy.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { type UserBody, userBody } from '../domain/user-view.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { hasTotp, type MfaStatus } from '../infra/mfa.ts';
import { type AuthContext, revokeUserSessions } from '../infra/sessions.ts';
import { assertRecentlyAuthenticated } from './mfa.ts';
import { reauthenticate } from './reauthenticate.ts';
import type { UserOrganization } from './register.ts';

/** `GET /api/v1/me`: the registration body without `message`, plus `last_login_at` and every membership. */
export interface AccountView extends UserBody {
  last_login_at: string | null;
  organizations: UserOrganization[];
  mfa: MfaStatus;
  /** The user's own JSON object (PATCH /me). */
  user_metadata: Record<string, unknown>;
  /** Set by superusers and the host application; read-only here. */
  app_metadata: Record<string, unknown>;
}

function selectAccount(db: Kysely<Database>) {
  return db.selectFrom('users').select([
    'users.id',
    'users.uuid',
    'users.email',
    'users.username',
    'users.first_name',
    'users.last_name',
    'users.name',
    'users.language_code',
    'users.is_active',
    'users.email_verified_at',
    'users.created_at',
    'users.last_login_at',
    'users.user_metadata',
    'users.app_metadata',
    // One statement with a cached plan: see migrations/0004_account_view.ts.
    sql<UserOrganization[]>`gatehouse_user_organizations(${sql.ref('users.id')})`.as('organizations'),
    sql<boolean>`exists (select 1 from mfa_totp where mfa_totp.user_id = ${sql.ref('users.id')} and mfa_totp.confirmed_at is not null)`.as(
      'mfa_totp',
    ),
    sql<number>`(select count(*)::int from mfa_backup_codes where mfa_backup_codes.user_id = ${sql.ref('users.id')})`.as(
      'mfa_backup_codes_left',
    ),
  ]);
}

type AccountRow = Awaited<ReturnType<ReturnType<typeof selectAccount>['executeTakeFirstOrThrow']>>;

/**
 * GET /me runs on every page view: building and compiling the query cost more
 * than PostgreSQL took to answer it, so it is compiled once, prepared on
 * PostgreSQL, and only the id is bound per call.
 */
let byUserId: CompiledQuery | undefined;

function toView(row: AccountRow | undefined): AccountView {
  // The session outlived its user (deleted meanwhile): the token no longer stands for anyone.
  if (!row) throw new AppError('TOKEN_INVALID', { detail: 'The account no longer exists' });
  return {
    ...userBody(row),
    last_login_at: row.last_login_at?.toISOString() ?? null,
    organizations: row.organizations,
    mfa: { totp: row.mfa_totp, backup_codes_left: row.mfa_totp ? Number(row.mfa_backup_codes_left) : 0 },
    user_metadata: row.user_metadata,
    app_metadata: row.app_metadata,
  };
}

/** One query: the user and their organizations with roles. */
export async function getAccount(
  services: Services,
  userId: number,
  db: Kysely<Database> = services.db,
): Promise<AccountView> {
  byUserId ??= prepared(selectAccount(db).where('users.id', '=', 0).compile());
  const { rows } = await db.executeQuery<AccountRow>(CompiledQuery.raw(byUserId.sql, [userId]));
  return toView(rows[0]);
}

type SessionAccountRow = AccountRow & { session_uuid: string };

/** Reads the accounts of many live sessions in one statement, keyed by session uuid. */
function accountsOfLiveSessions(db: Kysely<Database>): (sessionUuids: string[]) => Promise<Map<string, AccountRow>> {
  const query = prepared(
    selectAccount(db)
      .innerJoin('sessions', 'sessions.user_id', 'users.id')
      .select('sessions.uuid as session_uuid')
      .where(sql<boolean>`${sql.ref('sessions.uuid')} = any(${sql.val('{}')}::uuid[])`)
      .where('sessions.revoked_at', 'is', null)
      .compile(),
  );
  return async (sessionUuids) => {
    const { rows } = await db.executeQuery<SessionAccountRow>(CompiledQuery.raw(query.sql, [sessionUuids]));
    return new Map(rows.map((row) => [row.session_uuid, row]));
  };
}

const liveSessionReads = new WeakMap<Kysely<Database>, BatchedRead<string, AccountRow>>();

/**
 * The account an access token's session belongs to, read with the revocation
 * check in the same statement: PostgreSQL, the authority on revocation,
 * answers both in one round trip, so this needs no separate session check.
 * The session's owner must be the token's subject (`ownerUuid`). Concurrent
 * calls share one statement (see BatchedRead).
 */
export async function getAccountOfLiveSession(
  services: Services,
  sessionUuid: string,
  ownerUuid: string,
): Promise<AccountView> {
  let reads = liveSessionReads.get(services.db);
  if (!reads) {
    reads = new BatchedRead(accountsOfLiveSessions(services.db));
    liveSessionReads.set(services.db, reads);
  }
  // PostgreSQL answers uuids in lower case.
  const row = isUuid(sessionUuid) ? await reads.read(sessionUuid.toLowerCase()) : undefined;
  // Sessions go with their user (on delete cascade): no row means a revoked or vanished session.
  // Another user's session under this subject was never issued together: the token is forged or mixed up.
  if (row?.uuid !== ownerUuid) throw new AppError('TOKEN_INVALID', { detail: 'The session has been revoked' });
  return toView(row);
}

interface AccountUpdate {
  first_name?: string | null;
  last_name?: string | null;
  language_code?: string;
  /** Replaces the stored object as a whole. */
  user_metadata?: Record<string, unknown>;
}

const EDITABLE = new Set(['first_name', 'last_name', 'language_code', 'user_metadata']);

/** Only the profile fields; anything else sent is refused, never silently ignored or applied. */
function validateUpdate(input: Record<string, unknown>): AccountUpdate {
  const errors: FieldError[] = [];
  const update: AccountUpdate = {};
  const take = <T>(check: Check<T>): T | undefined => {
    if (check.ok) return check.value;
    errors.push(check.error);
    return undefined;
  };
  for (const [field, value] of Object.entries(input)) {
    if (field === 'app_metadata') {
      errors.push({ field, message: 'app_metadata is set by administrators only', code: 'not_allowed' });
      continue;
    }
    if (field === 'user_metadata') {
      const metadata = take(checkMetadata(value, field));
      if (metadata !== undefined) update.user_metadata = metadata;
      continue;
    }
    if (!EDITABLE.has(field)) {
      errors.push({ field, message: 'Field cannot be changed here', code: 'not_allowed' });
      continue;
    }
    if (typeof value === 'string') {
      const unstorable = checkStorable(value, field);
      if (unstorable) {
        errors.push(unstorable);
        continue;
      }
    }
    if (field === 'language_code') {
      if (typeof value !== 'string') {
        errors.push({
          field,
          message: 'Language code must be a BCP 47 tag such as en or pt-BR',
          code: 'invalid_format',
        });
        continue;
      }
      const code = take(checkLanguageCode(value));
      if (code !== undefined) update.language_code = code;
    } else {
      const name = value === null ? null : take(checkPersonName(value as string, field));
      if (name !== undefined) update[field as 'first_name' | 'last_name'] = name;
    }
  }
  if (errors.length > 0) throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  return update;
}

export async function updateAccount(
  services: Services,
  auth: AuthContext,
  input: Record<string, unknown>,
  context: RequestContext,
): Promise<AccountView> {
  const update = validateUpdate(input);
  return services.db.transaction().execute(async (trx) => {
    const before = await trx
      .selectFrom('users')
      .select(['first_name', 'last_name', 'language_code', 'user_metadata'])
      .where('id', '=', auth.userId)
      .forUpdate()
      .executeTakeFirst();
    if (!before) throw new AppError('TOKEN_INVALID', { detail: 'The account no longer exists' });
    // Field names only in the audit row: metadata values are the user's own.
    const changed = (Object.keys(update) as (keyof AccountUpdate)[]).filter(
      (k) => !isDeepStrictEqual(update[k], before[k]),
    );
    if (changed.length > 0) {
      const { user_metadata, ...profile } = update;
      await trx
        .updateTable('users')
        .set({
          ...profile,
          ...(user_metadata && { user_metadata: JSON.stringify(user_metadata) }),
          updated_at: services.clock.now(),
        })
        .where('id', '=', auth.userId)
        .execute();
      await recordAudit(trx, { action: 'user_updated', userId: auth.userId, details: { fields: changed } }, context);
    }
    return getAccount(services, auth.userId, trx);
  });
}

/**
 * Deletes the account after checking its password, as a login attempt of
 * this session (see `reauthenticate`). Refused (409) while the
 * user is the last admin of an organization that has other members;
 * organizations the user is alone in go with the account.
 */
export async function deleteAccount(
  services: Services,
  auth: AuthContext,
  password: string,
  context: RequestContext,
): Promise<void> {
  const user = await services.db
    .selectFrom('users')
    .select(['id', 'uuid', 'username', 'password_hash'])
    .where('id', '=', auth.userId)
    .executeTakeFirst();
  if (!user) throw new AppError('TOKEN_INVALID', { detail: 'The account no longer exists' });
  // With a second factor on, the password alone is not enough: the session must have proved both recently.
  if (await hasTotp(services.db, user.id)) await assertRecentlyAuthenticated(services, auth);
  await reauthenticate(services, auth, user, normalizePassword(password), context, {
    via: 'delete_account',
    detail: 'The password is incorrect',
  });

  await services.db.transaction().execute(async (trx) => {
    const { sessionsRevoked } = await prepareDeletion(services, trx, user, context, { by: 'owner' });
    await recordAudit(
      trx,
      {
        action: 'user_deleted',
        userId: user.id,
        details: { uuid: user.uuid, username: user.username, sessions_revoked: sessionsRevoked },
      },
      context,
    );
    await trx.deleteFrom('users').where('id', '=', user.id).execute();
  });
}

/**
 * The rules and the clearing every deletion of an account goes through, in
 * the caller's transaction (the owner's DELETE /me, or an administrator's):
 * refused (409 CONFLICT) while the user is the last admin of an organization
 * that has other members; organizations the user is alone in are deleted;
 * every session is revoked and the revocations published. The caller writes
 * its audit row and deletes the users row.
 */
export async function prepareDeletion(
  services: Services,
  trx: Kysely<Database>,
  user: { id: number; username: string },
  context: RequestContext,
  options: { by: 'owner' } | { by: 'admin'; actorId: number | null },
): Promise<{ sessionsRevoked: number; organizationsDeleted: string[] }> {
  // Locked in id order so that two admins leaving one organization at once cannot both pass the check.
  const adminOf = await trx
    .selectFrom('memberships')
    .innerJoin('roles', 'roles.id', 'memberships.role_id')
    .innerJoin('organizations', 'organizations.id', 'memberships.organization_id')
    .select(['organizations.id', 'organizations.uuid', 'organizations.name'])
    .where('memberships.user_id', '=', user.id)
    .where('roles.name', '=', 'admin')
    .orderBy('organizations.id')
    .forUpdate('organizations')
    .execute();
  const blocking: string[] = [];
  const alone: typeof adminOf = [];
  for (const org of adminOf) {
    const others = await trx
      .selectFrom('memberships')
      .innerJoin('roles', 'roles.id', 'memberships.role_id')
      .select([
        sql<number>`count(*)::int`.as('members'),
        sql<number>`count(*) filter (where roles.name = 'admin')::int`.as('admins'),
      ])
      .where('memberships.organization_id', '=', org.id)
      .where('memberships.user_id', '!=', user.id)
      .executeTakeFirstOrThrow();
    if (others.members === 0) alone.push(org);
    else if (others.admins === 0) blocking.push(org.name);
  }
  if (blocking.length > 0) {
    const names = blocking.map((n) => `"${n}"`).join(', ');
    throw new AppError('CONFLICT', {
      detail:
        options.by === 'owner'
          ? `You are the last admin of ${names}; make another member an admin first`
          : `${user.username} is the last admin of ${names}; make another member an admin first`,
    });
  }
  for (const org of alone) {
    await trx.deleteFrom('organizations').where('id', '=', org.id).execute();
    await recordAudit(
      trx,
      {
        action: 'organization_deleted',
        userId: options.by === 'owner' ? user.id : options.actorId,
        organizationId: org.id,
        details: { uuid: org.uuid, reason: options.by === 'owner' ? 'owner_deleted' : 'owner_deleted_by_admin' },
      },
      context,
    );
  }
  const sessions = await revokeUserSessions(
    services,
    user.id,
    { reason: options.by === 'owner' ? 'account_deleted' : 'admin' },
    trx,
  );
  return { sessionsRevoked: sessions.length, organizationsDeleted: alone.map((o) => o.uuid) };
}
