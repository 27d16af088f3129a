import { isDeepStrictEqual } from 'node:util';
import { type SelectQueryBuilder, sql } from 'kysely';
import type { Database, User } from '../db/schema.ts';
import { checkMetadata } from '../domain/account-rules.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { canonicalUuid, normalizeIdentifier } from '../domain/identifiers.ts';
import { DEFAULT_PAGE_SIZE, decodeCursor, type Page, pageOf } from '../domain/paging.ts';
import { type RequestContext, SYSTEM_CONTEXT } from '../domain/request-context.ts';
import { isStorableText } from '../domain/text.ts';
import { type UserBody, userBody } from '../domain/user-view.ts';
import { type AuditAction, type AuditLogView, recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { unlockAccount } from '../infra/lockout.ts';
import { revokeUserSessions } from '../infra/sessions.ts';
import { findUserByIdentifier } from '../infra/users.ts';
import { resetMfaAsAdmin } from './mfa.ts';
import { assertAcceptablePassword, validateRegistration } from './register.ts';

/** Who performs an administrative action: a superuser over the API, an operator at the CLI, or the host application. */
export interface AdminActor {
  /** The superuser's id; null at the CLI and for the host. */
  userId: number | null;
  via: 'api' | 'cli' | 'host';
}

/** A user as superusers see it. */
export interface AdminUserView extends UserBody {
  is_superuser: boolean;
  last_login_at: string | null;
  user_metadata: Record<string, unknown>;
  app_metadata: Record<string, unknown>;
}

export function adminUserView(user: User): AdminUserView {
  return {
    ...userBody(user),
    is_superuser: user.is_superuser,
    last_login_at: user.last_login_at?.toISOString() ?? null,
    user_metadata: user.user_metadata,
    app_metadata: user.app_metadata,
  };
}

export interface SuperuserInput {
  email: string;
  username: string;
  password: string;
  first_name?: string | undefined;
  last_name?: string | undefined;
}

/**
 * Makes a superuser: the registration field rules and the full password
 * policy apply; the address counts as verified (an operator vouches for it).
 */
export async function createSuperuser(
  services: Services,
  input: SuperuserInput,
  context: RequestContext,
): Promise<AdminUserView> {
  const valid = validateRegistration({
    email: input.email,
    username: input.username,
    password: input.password,
    first_name: input.first_name,
    last_name: input.last_name,
  });
  await assertAcceptablePassword(services, valid.password, { username: valid.username, email: valid.email });
  if (await findUserByIdentifier(services.db, valid.email)) throw new AppError('EMAIL_TAKEN');
  if (await findUserByIdentifier(services.db, valid.username)) throw new AppError('USERNAME_TAKEN');
  const passwordHash = await services.hasher.hash(valid.password);
  const now = services.clock.now();
  const user = await services.db.transaction().execute(async (trx) => {
    const user = await trx
      .insertInto('users')
      .values({
        email: valid.email,
        username: valid.username,
        password_hash: passwordHash,
        first_name: valid.firstName,
        last_name: valid.lastName,
        is_superuser: true,
        email_verified_at: now,
        password_changed_at: now,
        created_at: now,
        updated_at: now,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await trx.insertInto('password_history').values({ user_id: user.id, password_hash: passwordHash }).execute();
    await recordAudit(
      trx,
      { action: 'superuser_created', userId: user.id, details: { username: user.username, via: 'cli' } },
      context,
    );
    return user;
  });
  return adminUserView(user);
}

export interface AdminUserChanges {
  is_active?: boolean | undefined;
  /** Clear the login lockout of the account, from every source. */
  unlock?: boolean | undefined;
  /** Replace the stored object (checked here: a JSON object of at most METADATA_MAX_BYTES). */
  app_metadata?: unknown;
  user_metadata?: unknown;
}

type MetadataField = 'app_metadata' | 'user_metadata';

/** The metadata a change sets, checked; VALIDATION_ERROR lists each bad field. */
export function metadataChanges(changes: AdminUserChanges): Partial<Record<MetadataField, Record<string, unknown>>> {
  const valid: Partial<Record<MetadataField, Record<string, unknown>>> = {};
  const errors: FieldError[] = [];
  for (const field of ['app_metadata', 'user_metadata'] as const) {
    if (changes[field] === undefined) continue;
    const check = checkMetadata(changes[field], field);
    if (check.ok) valid[field] = check.value;
    else errors.push(check.error);
  }
  if (errors.length > 0) throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  return valid;
}

/**
 * Enables, disables or unlocks a user. Disabling revokes every session at
 * once (access tokens included). Audited as `admin_user_updated` with the
 * actor and what changed.
 */
export async function updateUserAsAdmin(
  services: Services,
  target: User,
  changes: AdminUserChanges,
  actor: AdminActor,
  context: RequestContext,
): Promise<AdminUserView> {
  if (changes.is_active === false && actor.userId === target.id) {
    throw new AppError('CONFLICT', { detail: 'You cannot disable your own account' });
  }
  const metadata = metadataChanges(changes);
  const now = services.clock.now();
  const applied: Record<string, unknown> = {};
  if (changes.unlock) {
    // Lockouts live in Redis and their own table, outside this transaction; clearing is idempotent.
    applied.unlocked = await unlockAccount(services, target, { byUserId: actor.userId, via: actor.via }, context);
  }
  const updated = await services.db.transaction().execute(async (trx) => {
    let user = target;
    if (changes.is_active !== undefined && changes.is_active !== target.is_active) {
      user = await trx
        .updateTable('users')
        .set({ is_active: changes.is_active, updated_at: now })
        .where('id', '=', target.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      applied.is_active = changes.is_active;
      if (!changes.is_active) {
        const revoked = await revokeUserSessions(services, target.id, { reason: 'account_disabled' }, trx);
        applied.sessions_revoked = revoked.length;
      }
    }
    // Names only: metadata values never reach the audit log.
    const fields = (Object.keys(metadata) as MetadataField[]).filter(
      (field) => !isDeepStrictEqual(metadata[field], user[field]),
    );
    if (fields.length > 0) {
      const set: Partial<Record<MetadataField, string>> = {};
      for (const field of fields) set[field] = JSON.stringify(metadata[field]);
      user = await trx
        .updateTable('users')
        .set({ ...set, updated_at: now })
        .where('id', '=', target.id)
        .returningAll()
        .executeTakeFirstOrThrow();
    }
    const requested = { is_active: changes.is_active, unlock: changes.unlock };
    await recordAudit(
      trx,
      {
        action: 'admin_user_updated',
        userId: target.id,
        details: { by_user_id: actor.userId, via: actor.via, requested, applied, fields },
      },
      context,
    );
    return user;
  });
  return adminUserView(updated);
}

/** The user a path names; NOT_FOUND for an unknown or malformed uuid. */
export async function userByUuid(services: Services, uuid: string): Promise<User> {
  const id = canonicalUuid(uuid);
  const target = id && (await services.db.selectFrom('users').selectAll().where('uuid', '=', id).executeTakeFirst());
  if (!target) throw new AppError('NOT_FOUND', { detail: 'No such user' });
  return target;
}

/** `updateUserAsAdmin` for the user a path names; NOT_FOUND for an unknown or malformed uuid. */
export async function updateUserByUuid(
  services: Services,
  uuid: string,
  changes: AdminUserChanges,
  actor: AdminActor,
  context: RequestContext,
): Promise<AdminUserView> {
  return updateUserAsAdmin(services, await userByUuid(services, uuid), changes, actor, context);
}

/** `POST /admin/users/{uuid}/mfa/reset`; NOT_FOUND for an unknown or malformed uuid. */
export async function resetMfaByUuid(
  services: Services,
  uuid: string,
  actor: AdminActor,
  context: RequestContext,
): Promise<boolean> {
  return resetMfaAsAdmin(services, await userByUuid(services, uuid), actor, context);
}

/** Reads by superusers are audited too: who looked at whose data, and with which filters (after a successful read). */
async function readAsAdmin<T>(
  services: Services,
  action: Extract<AuditAction, 'admin_users_viewed' | 'admin_audit_logs_viewed' | 'admin_login_attempts_viewed'>,
  viewer: { actor: AdminActor; context: RequestContext; filters: object; known: readonly string[] },
  read: () => Promise<T>,
): Promise<T> {
  const result = await read();
  await recordAudit(
    services.db,
    { action, userId: viewer.actor.userId, details: { filters: recordedFilters(viewer.filters, viewer.known) } },
    viewer.context,
  );
  return result;
}

/**
 * The filters as the audit row keeps them: the route's own parameters only (a
 * query string may carry any other name and value, NUL included, which a
 * `jsonb` column refuses), and text only when it can be stored.
 */
function recordedFilters(filters: object, known: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(filters).filter(
      ([key, value]) =>
        known.includes(key) && value !== undefined && (typeof value !== 'string' || isStorableText(value)),
    ),
  );
}

/** `%`, `_` and `\` are literal in a search term. */
function likePattern(term: string): string {
  return `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export interface UserQuery {
  search?: string | undefined;
  /** Part of the email, case-insensitively. */
  email?: string | undefined;
  /** Part of the username, case-insensitively. */
  username?: string | undefined;
  /** Members of this organization (uuid). */
  organization?: string | undefined;
  /** As `search`. */
  q?: string | undefined;
  is_active?: boolean | undefined;
  cursor?: string | undefined;
  limit?: number | undefined;
}

/** The filters of `GET /admin/users` beyond `search`: `email`, `username` (parts), `organization` (members of). */
function filterUsers<Q extends SelectQueryBuilder<Database, 'users', User>>(q: Q, query: UserQuery): Q {
  let filtered = q;
  const email = query.email?.trim();
  if (email) filtered = filtered.where('email', 'like', likePattern(email.toLowerCase())) as Q;
  const username = query.username?.trim();
  if (username) filtered = filtered.where('username', 'like', likePattern(username.toLowerCase())) as Q;
  if (query.organization !== undefined) {
    const organization = canonicalUuid(query.organization) ?? '00000000-0000-0000-0000-000000000000';
    filtered = filtered.where((eb) =>
      eb.exists(
        eb
          .selectFrom('memberships')
          .innerJoin('organizations', 'organizations.id', 'memberships.organization_id')
          .select('memberships.id')
          .whereRef('memberships.user_id', '=', 'users.id')
          .where('organizations.uuid', '=', organization),
      ),
    ) as Q;
  }
  return filtered;
}

/** `GET /admin/users`, audited as `admin_users_viewed`. */
export async function listUsers(
  services: Services,
  query: UserQuery,
  actor: AdminActor,
  context: RequestContext,
): Promise<Page<AdminUserView>> {
  return readAsAdmin(
    services,
    'admin_users_viewed',
    {
      actor,
      context,
      filters: query,
      known: ['search', 'is_active', 'cursor', 'limit', 'email', 'username', 'organization', 'q'],
    },
    async () => {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE;
      const after = decodeCursor(query.cursor);
      let q = services.db.selectFrom('users').selectAll();
      for (const term of [query.search?.trim(), query.q?.trim()]) {
        if (!term) continue;
        const pattern = likePattern(term.toLowerCase());
        q = q.where((eb) =>
          eb.or([
            eb('email', 'like', pattern),
            eb('username', 'like', pattern),
            eb(sql`lower(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))`, 'like', pattern),
          ]),
        );
      }
      if (query.is_active !== undefined) q = q.where('is_active', '=', query.is_active);
      q = filterUsers(q, query);
      if (after !== undefined) q = q.where('id', '<', after);
      const rows = await q
        .orderBy('id', 'desc')
        .limit(limit + 1)
        .execute();
      return pageOf(rows, limit, adminUserView);
    },
  );
}

export interface AuditLogQuery {
  action?: string | undefined;
  since?: string | undefined;
  user?: string | undefined;
  cursor?: string | undefined;
  limit?: number | undefined;
}

/** `GET /admin/audit-logs`, audited as `admin_audit_logs_viewed`. */
export async function listAuditLogs(
  services: Services,
  query: AuditLogQuery,
  actor: AdminActor,
  context: RequestContext,
): Promise<Page<AuditLogView>> {
  return readAsAdmin(
    services,
    'admin_audit_logs_viewed',
    { actor, context, filters: query, known: ['action', 'since', 'user', 'cursor', 'limit'] },
    async () => {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE;
      const after = decodeCursor(query.cursor);
      let q = services.db
        .selectFrom('audit_logs as a')
        .leftJoin('users as u', 'u.id', 'a.user_id')
        .leftJoin('organizations as o', 'o.id', 'a.organization_id')
        .select([
          'a.id',
          'a.action',
          'u.uuid as user_uuid',
          'o.uuid as organization_uuid',
          'a.ip_address',
          'a.user_agent',
          'a.details',
          'a.created_at',
        ]);
      if (query.action) q = q.where('a.action', '=', query.action);
      if (query.since) q = q.where('a.created_at', '>=', new Date(query.since));
      if (query.user) q = q.where('u.uuid', '=', query.user);
      if (after !== undefined) q = q.where('a.id', '<', after);
      const rows = await q
        .orderBy('a.id', 'desc')
        .limit(limit + 1)
        .execute();
      return pageOf(rows, limit, (r) => ({ ...r, created_at: r.created_at.toISOString() }));
    },
  );
}

export interface LoginAttemptView {
  id: number;
  identifier: string;
  user_uuid: string | null;
  ip_address: string | null;
  user_agent: string | null;
  success: boolean;
  failure_reason: string | null;
  attempted_at: string;
}

export interface LoginAttemptQuery {
  since?: string | undefined;
  identifier?: string | undefined;
  success?: boolean | undefined;
  cursor?: string | undefined;
  limit?: number | undefined;
}

/** `GET /admin/login-attempts`, audited as `admin_login_attempts_viewed`. */
export async function listLoginAttempts(
  services: Services,
  query: LoginAttemptQuery,
  actor: AdminActor,
  context: RequestContext,
): Promise<Page<LoginAttemptView>> {
  return readAsAdmin(
    services,
    'admin_login_attempts_viewed',
    { actor, context, filters: query, known: ['since', 'identifier', 'success', 'cursor', 'limit'] },
    async () => {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE;
      const after = decodeCursor(query.cursor);
      let q = services.db
        .selectFrom('login_attempts as l')
        .leftJoin('users as u', 'u.id', 'l.user_id')
        .select([
          'l.id',
          'l.identifier',
          'u.uuid as user_uuid',
          'l.ip_address',
          'l.user_agent',
          'l.success',
          'l.failure_reason',
          'l.attempted_at',
        ]);
      if (query.since) q = q.where('l.attempted_at', '>=', new Date(query.since));
      if (query.identifier) q = q.where('l.identifier', '=', normalizeIdentifier(query.identifier));
      if (query.success !== undefined) q = q.where('l.success', '=', query.success);
      if (after !== undefined) q = q.where('l.id', '<', after);
      const rows = await q
        .orderBy('l.id', 'desc')
        .limit(limit + 1)
        .execute();
      return pageOf(rows, limit, (r) => ({ ...r, attempted_at: r.attempted_at.toISOString() }));
    },
  );
}

/**
 * The host application's `app.gatehouse.setAppMetadata(userUuid, metadata)`:
 * replaces the user's `app_metadata`, with the rules of the admin API
 * (NOT_FOUND, VALIDATION_ERROR); audited as `admin_user_updated` via `host`.
 */
export async function setAppMetadata(
  services: Services,
  userUuid: string,
  metadata: Record<string, unknown>,
): Promise<AdminUserView> {
  return updateUserByUuid(
    services,
    userUuid,
    { app_metadata: metadata },
    { userId: null, via: 'host' },
    SYSTEM_CONTEXT,
  );
}
