import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AppError } from '../domain/errors.ts';
import {
  type AdminActor,
  listAuditLogs,
  listLoginAttempts,
  listUsers,
  resetMfaByUuid,
  updateUserByUuid,
} from '../flows/admin.ts';
import { requireSuperuser } from './auth-guard.ts';
import { Metadata, problems } from './schemas.ts';

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
  },
  { additionalProperties: true },
);

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
          'Newest first. `search` matches part of the email, username or name, case-insensitively. Cursor pagination.',
        security,
        querystring: Type.Object({
          search: Type.Optional(Type.String({ maxLength: 254 })),
          is_active: Type.Optional(Type.Boolean()),
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
        summary: 'Enable, disable or unlock a user, or set their metadata',
        description:
          'Disabling revokes every session of the user at once. `app_metadata` and `user_metadata` replace the stored objects (JSON objects of at most 4096 bytes, 422 VALIDATION_ERROR otherwise). Audited as `admin_user_updated` (metadata by field name, never its values). A superuser cannot disable their own account (409).',
        security,
        params: Type.Object({ uuid: Type.String() }),
        body: UpdateUserBody,
        response: { 200: AdminUser, ...problems(400, 401, 403, 404, 409, 413, 415, 422) },
      },
    },
    async (request) => {
      const { is_active, unlock, app_metadata, user_metadata } = request.body;
      if (is_active === undefined && !unlock && app_metadata === undefined && user_metadata === undefined) {
        throw new AppError('VALIDATION_ERROR', {
          detail: 'Nothing to change',
          errors: [
            {
              field: 'is_active',
              message: 'Give is_active, unlock: true, app_metadata or user_metadata',
              code: 'required',
            },
          ],
        });
      }
      const changes = { is_active, unlock, app_metadata, user_metadata };
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
};
