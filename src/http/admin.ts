import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AppError } from '../domain/errors.ts';
import {
  type AdminActor,
  listAuditLogs,
  listLoginAttempts,
  listUsers,
  metadataChanges,
  resetMfaByUuid,
  updateUserByUuid,
  userByUuid,
} from '../flows/admin.ts';
import {
  createUserAsAdmin,
  deleteUserAsAdmin,
  exportUserAsAdmin,
  getUserAsAdmin,
  listSessionsAsAdmin,
  revokeSessionsAsAdmin,
  sendPasswordResetAsAdmin,
  setSuperuserAsAdmin,
} from '../flows/admin-users.ts';
import { requireSuperuser } from './auth-guard.ts';
import { Metadata, OptionalText, problems, UserOrganization } from './schemas.ts';
import { SessionView } from './sessions.ts';

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()]);

const AdminUser = Type.Object({
  id: Type.Integer(),
  uuid: Type.String({ format: 'uuid' }),
  email: Type.String(),
  username: Type.String(),
  first_name: Nullable(Type.String()),
  last_name: Nullable(Type.String()),
  name: Nullable(Type.String()),
  language_code: Type.String(),
  is_active: Type.Boolean(),
  is_superuser: Type.Boolean(),
  email_verified: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
  last_login_at: Nullable(Type.String({ format: 'date-time' })),
  user_metadata: Metadata("The user's own JSON object"),
  app_metadata: Metadata('Set by superusers and the host application only'),
});

const AuditLog = Type.Object({
  id: Type.Integer(),
  action: Type.String(),
  user_uuid: Nullable(Type.String({ format: 'uuid' })),
  organization_uuid: Nullable(Type.String({ format: 'uuid' })),
  ip_address: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  details: Type.Record(Type.String(), Type.Unknown()),
  created_at: Type.String({ format: 'date-time' }),
});

const LoginAttempt = Type.Object({
  id: Type.Integer(),
  identifier: Type.String(),
  user_uuid: Nullable(Type.String({ format: 'uuid' })),
  ip_address: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  success: Type.Boolean(),
  failure_reason: Nullable(Type.String()),
  attempted_at: Type.String({ format: 'date-time' }),
});

const pageOf = <T extends Parameters<typeof Type.Array>[0]>(item: T) =>
  Type.Object({
    items: Type.Array(item),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: 'Pass as `cursor` to get the next page; null on the last page',
    }),
  });

const Paging = {
  cursor: Type.Optional(Type.String({ maxLength: 64, description: 'next_cursor of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50 })),
};

const Since = Type.Optional(
  Type.String({ format: 'date-time', description: 'RFC 3339 time, e.g. 2025-06-24T10:30:00Z; newer or equal only' }),
);

const UpdateUserBody = Type.Object(
  {
    is_active: Type.Optional(Type.Boolean({ description: 'false disables the account and revokes its sessions' })),
    unlock: Type.Optional(
      Type.Boolean({ description: 'true clears the login lockout of the account, from every source' }),
    ),
    app_metadata: Type.Optional(
      Type.Unknown({ description: 'A JSON object of at most 4096 bytes; replaces the stored one' }),
    ),
    user_metadata: Type.Optional(
      Type.Unknown({ description: 'A JSON object of at most 4096 bytes; replaces the stored one' }),
    ),
    is_superuser: Type.Optional(
      Type.Boolean({
        description:
          'Sets or clears the superuser flag; clearing it from the last active superuser answers 409 LAST_SUPERUSER',
      }),
    ),
  },
  { additionalProperties: true },
);

const UserFilters = {
  q: Type.Optional(Type.String({ maxLength: 254, description: 'as `search`' })),
  email: Type.Optional(Type.String({ maxLength: 254, description: 'part of the email, case-insensitively' })),
  username: Type.Optional(Type.String({ maxLength: 50, description: 'part of the username, case-insensitively' })),
  organization: Type.Optional(Type.String({ format: 'uuid', description: 'members of this organization' })),
};

const CREATE_FIELDS = [
  'email',
  'username',
  'password',
  'email_verified',
  'first_name',
  'last_name',
  'name',
  'language_code',
];

const CreateUserBody = Type.Object(
  {
    email: Type.String({ description: 'Trimmed, at most 254 characters, stored lower-cased; unique' }),
    username: Type.String({ description: '3–50 letters, digits, - or _; stored lower-cased; unique' }),
    password: Type.Optional(
      Type.String({
        description:
          'Must satisfy the password policy; checked against breach data. Left out: the user is mailed a link to choose one (`account_created`, valid 72 hours), which also confirms the address',
      }),
    ),
    email_verified: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          'true: the address counts as verified. false with a password: the verification mail goes as at registration',
      }),
    ),
    first_name: OptionalText,
    last_name: OptionalText,
    name: OptionalText,
    language_code: Type.Optional(Type.String({ description: 'BCP 47 tag such as en or pt-BR', default: 'en' })),
  },
  { additionalProperties: true },
);

const Uuid = Type.Object({ uuid: Type.String() });

const ExportBody = Type.Object({
  profile: Type.Object(
    {
      ...AdminUser.properties,
      updated_at: Type.String({ format: 'date-time' }),
      password_changed_at: Nullable(Type.String({ format: 'date-time' })),
      has_password: Type.Boolean(),
      mfa_totp: Type.Boolean(),
      identities: Type.Array(
        Type.Object({
          provider: Type.String(),
          email: Nullable(Type.String()),
          email_verified: Type.Boolean(),
          created_at: Type.String({ format: 'date-time' }),
        }),
      ),
      passkeys: Type.Array(
        Type.Object({
          id: Type.String(),
          name: Type.String(),
          created_at: Type.String({ format: 'date-time' }),
          last_used_at: Nullable(Type.String({ format: 'date-time' })),
        }),
      ),
    },
    { description: 'No password hash, token hash or TOTP secret' },
  ),
  organizations: Type.Array(UserOrganization),
  sessions: Type.Array(
    Type.Object({
      id: Type.String({ format: 'uuid' }),
      kind: Type.String(),
      user_agent: Nullable(Type.String()),
      ip_address: Nullable(Type.String()),
      created_at: Type.String({ format: 'date-time' }),
      last_used_at: Type.String({ format: 'date-time' }),
      expires_at: Type.String({ format: 'date-time' }),
      revoked_at: Nullable(Type.String({ format: 'date-time' })),
      revoked_reason: Nullable(Type.String()),
    }),
    { description: 'Every session, revoked ones included, newest first' },
  ),
  audit_logs: Type.Array(
    Type.Object({
      id: Type.Integer(),
      action: Type.String(),
      organization_uuid: Nullable(Type.String({ format: 'uuid' })),
      ip_address: Nullable(Type.String()),
      user_agent: Nullable(Type.String()),
      details: Type.Record(Type.String(), Type.Unknown()),
      created_at: Type.String({ format: 'date-time' }),
    }),
    { description: 'Every audit row whose user_id is the user, newest first' },
  ),
});

const security: Record<string, string[]>[] = [{ bearer: [] }, { oauth2: [] }];

function actor(request: FastifyRequest): AdminActor {
  return { userId: request.auth.userId, via: 'api' };
}

/** `/admin/…`: superusers only (401 without a token, 403 for anyone else). Every call is audited. */
export const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('preHandler', requireSuperuser);

  app.get(
    '/admin/users',
    {
      schema: {
        tags: ['administration'],
        summary: 'List users',
        description:
          'Newest first. `search` (or `q`) matches part of the email, username or name, case-insensitively; `email` and `username` part of that field; `organization` keeps the members of that organization. Filters combine (and). Cursor pagination.',
        security,
        querystring: Type.Object({
          search: Type.Optional(Type.String({ maxLength: 254 })),
          is_active: Type.Optional(Type.Boolean()),
          ...UserFilters,
          ...Paging,
        }),
        response: { 200: pageOf(AdminUser), ...problems(400, 401, 403, 422) },
      },
    },
    async (request) => {
      return listUsers(app.gatehouse, request.query, actor(request), request.caller);
    },
  );

  app.patch(
    '/admin/users/:uuid',
    {
      schema: {
        tags: ['administration'],
        summary: 'Enable, disable or unlock a user; set their metadata; set or clear the superuser flag',
        description:
          'Disabling revokes every session of the user at once. `app_metadata` and `user_metadata` replace the stored objects (JSON objects of at most 4096 bytes, 422 VALIDATION_ERROR otherwise). Audited as `admin_user_updated` (metadata by field name, never its values; `is_superuser`: `admin_superuser_changed`). A superuser cannot disable their own account (409), nor clear the flag of the last active superuser (409 LAST_SUPERUSER).',
        security,
        params: Type.Object({ uuid: Type.String() }),
        body: UpdateUserBody,
        response: { 200: AdminUser, ...problems(400, 401, 403, 404, 409, 413, 415, 422) },
      },
    },
    async (request) => {
      const { is_active, unlock, app_metadata, user_metadata, is_superuser } = request.body;
      if (
        is_active === undefined &&
        !unlock &&
        app_metadata === undefined &&
        user_metadata === undefined &&
        is_superuser === undefined
      ) {
        throw new AppError('VALIDATION_ERROR', {
          detail: 'Nothing to change',
          errors: [
            {
              field: 'is_active',
              message: 'Give is_active, is_superuser, unlock: true, app_metadata or user_metadata',
              code: 'required',
            },
          ],
        });
      }
      const changes = { is_active, unlock, app_metadata, user_metadata };
      // Metadata is checked before the flag changes, so a bad object changes nothing.
      metadataChanges(changes);
      if (is_superuser !== undefined) {
        const target = await userByUuid(app.gatehouse, request.params.uuid);
        const view = await setSuperuserAsAdmin(app.gatehouse, target, is_superuser, actor(request), request.caller);
        if (is_active === undefined && !unlock && app_metadata === undefined && user_metadata === undefined)
          return view;
      }
      return updateUserByUuid(app.gatehouse, request.params.uuid, changes, actor(request), request.caller);
    },
  );

  app.post(
    '/admin/users/:uuid/mfa/reset',
    {
      schema: {
        tags: ['administration'],
        summary: "Turn a user's second factor off",
        description:
          'For a user who lost their authenticator app and backup codes: removes the TOTP secret and the backup codes. Audited as `mfa_reset_by_admin`; the user is mailed. 204 also when none was on.',
        security,
        params: Type.Object({ uuid: Type.String() }),
        response: { 204: Type.Null(), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      await resetMfaByUuid(app.gatehouse, request.params.uuid, actor(request), request.caller);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/admin/audit-logs',
    {
      schema: {
        tags: ['administration'],
        summary: 'Audit log, newest first',
        security,
        querystring: Type.Object({
          action: Type.Optional(Type.String({ maxLength: 64, description: 'e.g. user_registration' })),
          since: Since,
          user: Type.Optional(Type.String({ format: 'uuid', description: 'only rows about this user' })),
          ...Paging,
        }),
        response: { 200: pageOf(AuditLog), ...problems(400, 401, 403, 422) },
      },
    },
    async (request) => {
      return listAuditLogs(app.gatehouse, request.query, actor(request), request.caller);
    },
  );

  app.get(
    '/admin/login-attempts',
    {
      schema: {
        tags: ['administration'],
        summary: 'Login attempts, newest first',
        security,
        querystring: Type.Object({
          since: Since,
          identifier: Type.Optional(Type.String({ maxLength: 320, description: 'username or email as typed' })),
          success: Type.Optional(Type.Boolean()),
          ...Paging,
        }),
        response: { 200: pageOf(LoginAttempt), ...problems(400, 401, 403, 422) },
      },
    },
    async (request) => {
      return listLoginAttempts(app.gatehouse, request.query, actor(request), request.caller);
    },
  );

  app.post(
    '/admin/users',
    {
      schema: {
        tags: ['administration'],
        summary: 'Create a user',
        description:
          'The registration rules apply: password policy and breach check (422 PASSWORD_POLICY, PASSWORD_BREACHED), taken email or username (409 EMAIL_TAKEN, USERNAME_TAKEN). Without `password` the user is mailed a link to choose one. A field not listed answers 422. Audited as `admin_user_created`.',
        security,
        body: CreateUserBody,
        response: { 201: AdminUser, ...problems(400, 401, 403, 409, 413, 415, 422) },
      },
    },
    async (request, reply) => {
      const unknown = Object.keys(request.body).filter((field) => !CREATE_FIELDS.includes(field));
      if (unknown.length > 0) {
        throw new AppError('VALIDATION_ERROR', {
          detail: 'One or more fields are invalid',
          errors: unknown.map((field) => ({ field, message: 'Field cannot be set here', code: 'not_allowed' })),
        });
      }
      const user = await createUserAsAdmin(app.gatehouse, request.body, actor(request), request.caller);
      return reply.code(201).send(user);
    },
  );

  app.get(
    '/admin/users/:uuid',
    {
      schema: {
        tags: ['administration'],
        summary: 'One user',
        description: 'The same body as the items of GET /admin/users. Audited as `admin_users_viewed`.',
        security,
        params: Uuid,
        response: { 200: AdminUser, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const target = await userByUuid(app.gatehouse, request.params.uuid);
      return getUserAsAdmin(app.gatehouse, target, actor(request), request.caller);
    },
  );

  app.delete(
    '/admin/users/:uuid',
    {
      schema: {
        tags: ['administration'],
        summary: 'Delete a user',
        description:
          'The rules of DELETE /me: refused (409 CONFLICT) while the user is the last admin of an organization with other members; organizations the user is alone in go too; every session is revoked at once. A superuser cannot delete their own account here (409 CANNOT_DELETE_SELF). Audited as `admin_user_deleted`.',
        security,
        params: Uuid,
        response: { 204: Type.Null({ description: 'No content' }), ...problems(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const target = await userByUuid(app.gatehouse, request.params.uuid);
      await deleteUserAsAdmin(app.gatehouse, target, actor(request), request.caller);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/admin/users/:uuid/password-reset',
    {
      schema: {
        tags: ['administration'],
        summary: 'Mail the user a password reset link',
        description:
          'The forgot-password mail and link (valid 1 hour, once; older links void). A disabled account answers 409 CONFLICT. Audited as `admin_password_reset_sent`.',
        security,
        params: Uuid,
        response: { 202: Type.Object({ message: Type.String() }), ...problems(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const target = await userByUuid(app.gatehouse, request.params.uuid);
      await sendPasswordResetAsAdmin(app.gatehouse, target, actor(request), request.caller);
      return reply.code(202).send({ message: 'A link to reset the password has been mailed to the user.' });
    },
  );

  app.get(
    '/admin/users/:uuid/sessions',
    {
      schema: {
        tags: ['administration'],
        summary: "A user's live sessions, newest first",
        description: 'The items of GET /sessions. Audited as `admin_sessions_viewed`.',
        security,
        params: Uuid,
        response: { 200: Type.Array(SessionView), ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const target = await userByUuid(app.gatehouse, request.params.uuid);
      return listSessionsAsAdmin(app.gatehouse, target, actor(request), request.caller, request.auth.sessionId);
    },
  );

  app.delete(
    '/admin/users/:uuid/sessions',
    {
      schema: {
        tags: ['administration'],
        summary: 'Revoke every session of a user',
        description:
          'Refresh tokens stop at once, and access tokens on every instance from the next request. Audited as `admin_sessions_revoked`.',
        security,
        params: Uuid,
        response: { 204: Type.Null({ description: 'No content' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const target = await userByUuid(app.gatehouse, request.params.uuid);
      await revokeSessionsAsAdmin(app.gatehouse, target, null, actor(request), request.caller);
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/admin/users/:uuid/sessions/:id',
    {
      schema: {
        tags: ['administration'],
        summary: 'Revoke one session of a user',
        description:
          "`id` as GET /admin/users/{uuid}/sessions lists it. 404 for a session that is not the user's, unknown or already revoked. Audited as `admin_sessions_revoked`.",
        security,
        params: Type.Object({ uuid: Type.String(), id: Type.String() }),
        response: { 204: Type.Null({ description: 'No content' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const target = await userByUuid(app.gatehouse, request.params.uuid);
      const revoked = await revokeSessionsAsAdmin(
        app.gatehouse,
        target,
        request.params.id,
        actor(request),
        request.caller,
      );
      if (!revoked) throw new AppError('NOT_FOUND', { detail: 'No such session' });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/admin/users/:uuid/export',
    {
      schema: {
        tags: ['administration'],
        summary: "Export a user's data",
        description:
          'Profile, organizations, sessions and the audit rows about the user, as JSON; no secrets. Audited as `admin_user_exported`.',
        security,
        params: Uuid,
        response: { 200: ExportBody, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const target = await userByUuid(app.gatehouse, request.params.uuid);
      return exportUserAsAdmin(app.gatehouse, target, actor(request), request.caller);
    },
  );
};
