import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  createOrganization,
  deleteOrganization,
  getOrganization,
  listOrganizationAuditLogs,
  listOrganizations,
  updateOrganization,
} from '../flows/organizations.ts';
import { requireUser } from './auth-guard.ts';
import { requireOrgPermission } from './org-guard.ts';
import { problems, RoleSchema } from './schemas.ts';

export const OrganizationSchema = Type.Object({
  uuid: Type.String({ format: 'uuid' }),
  name: Type.String(),
  slug: Type.String({ description: 'Unique; derived from the name, with a -2, -3… suffix on collision' }),
  role: RoleSchema,
  require_mfa: Type.Boolean({
    description: 'Members without a second factor get 403 MFA_REQUIRED_BY_ORGANIZATION from its routes',
  }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

const AuditLogEntry = Type.Object({
  id: Type.Integer(),
  action: Type.String(),
  user_uuid: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], {
    description: 'Who acted; null once deleted',
  }),
  organization_uuid: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
  ip_address: Type.Union([Type.String(), Type.Null()]),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  details: Type.Unknown(),
  created_at: Type.String({ format: 'date-time' }),
});

export const OrganizationParams = Type.Object({ uuid: Type.String({ description: 'Organization uuid' }) });

export const security: Record<string, string[]>[] = [{ bearer: [] }, { oauth2: [] }];

const NameBody = Type.Object(
  { name: Type.String({ description: '1–100 characters after trimming' }) },
  { additionalProperties: true },
);

const UpdateBody = Type.Object(
  {
    name: Type.Optional(Type.String({ description: '1–100 characters after trimming' })),
    require_mfa: Type.Optional(
      Type.Boolean({
        description:
          'true: members without a second factor are refused by this organization’s routes; the admin setting it needs one (409 otherwise)',
      }),
    ),
  },
  { additionalProperties: true, description: 'Only `name` and `require_mfa`; any other field is refused with 422' },
);

const AuditQuery = Type.Object({
  action: Type.Optional(Type.String({ maxLength: 64, description: 'Only this action' })),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'Only rows created at or after' })),
  cursor: Type.Optional(Type.String({ maxLength: 64, description: '`next_cursor` of the previous page' })),
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
});

export const organizationRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;
  const tags = ['organizations'];

  app.get(
    '/organizations',
    {
      preHandler: requireUser,
      schema: {
        tags,
        summary: "The caller's organizations, with the caller's role in each",
        security,
        response: { 200: Type.Array(OrganizationSchema), ...problems(401) },
      },
    },
    async (request) => listOrganizations(services, request.auth.userId),
  );

  app.post(
    '/organizations',
    {
      preHandler: requireUser,
      schema: {
        tags,
        summary: 'Create an organization; the caller becomes its admin',
        description:
          'Creates the organization with its default roles (admin, user, viewer). The slug is derived from the name.',
        security,
        body: NameBody,
        response: { 201: OrganizationSchema, ...problems(400, 401, 413, 415, 422) },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await createOrganization(services, request.auth.userId, request.body, request.caller)),
  );

  app.get(
    '/organizations/:uuid',
    {
      onRequest: requireOrgPermission('organization:read'),
      schema: {
        tags,
        summary: 'One organization (any member)',
        description: 'A non-member, like an unknown uuid, gets 404.',
        security,
        params: OrganizationParams,
        response: { 200: OrganizationSchema, ...problems(401, 404) },
      },
    },
    async (request) => getOrganization(services, request.membership),
  );

  app.patch(
    '/organizations/:uuid',
    {
      onRequest: requireOrgPermission('organization:update'),
      schema: {
        tags,
        summary: 'Rename an organization, or require a second factor of its members (admin)',
        description: 'The slug follows the new name unless the name still slugifies to the current slug’s stem.',
        security,
        params: OrganizationParams,
        body: UpdateBody,
        response: { 200: OrganizationSchema, ...problems(400, 401, 403, 404, 409, 413, 415, 422) },
      },
    },
    async (request) => updateOrganization(services, request.membership, request.body, request.caller),
  );

  app.delete(
    '/organizations/:uuid',
    {
      onRequest: requireOrgPermission('organization:delete'),
      schema: {
        tags,
        summary: 'Delete an organization with its roles, memberships and invitations (admin)',
        security,
        params: OrganizationParams,
        response: { 204: Type.Null({ description: 'No content' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      await deleteOrganization(services, request.membership, request.caller);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/organizations/:uuid/audit-logs',
    {
      onRequest: requireOrgPermission('audit:read'),
      schema: {
        tags,
        summary: "The organization's audit trail, newest first (admin)",
        security,
        params: OrganizationParams,
        querystring: AuditQuery,
        response: {
          200: Type.Object({ items: Type.Array(AuditLogEntry), next_cursor: Type.Union([Type.String(), Type.Null()]) }),
          ...problems(400, 401, 403, 404, 422),
        },
      },
    },
    async (request) => listOrganizationAuditLogs(services, request.membership, request.query),
  );
};
