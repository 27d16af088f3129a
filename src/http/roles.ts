import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { createRole, deleteRole, listRoles, updateRole } from '../flows/roles.ts';
import { requireOrgPermission } from './org-guard.ts';
import { OrganizationParams, security } from './organizations.ts';
import { problems } from './schemas.ts';

const PermissionList = Type.Array(Type.String({ maxLength: 65 }), {
  maxItems: 200,
  description:
    'Permissions from docs/organizations.md (`members:read`, `resources:use`…) and those the host application declared',
});

const RoleSchema = Type.Object({
  name: Type.String(),
  permissions: Type.Array(Type.String()),
  built_in: Type.Boolean({ description: '`admin`, `user` and `viewer`: never changed or deleted' }),
});

const RoleParams = Type.Object({
  uuid: Type.String({ description: 'Organization uuid' }),
  name: Type.String({ description: 'Role name' }),
});

const CreateBody = Type.Object(
  {
    name: Type.String({
      description: 'A lowercase letter, then 1–31 lowercase letters, digits, `_` or `-`; not a built-in name',
    }),
    permissions: PermissionList,
  },
  { additionalProperties: true },
);

const UpdateBody = Type.Object(
  // Optional here so that an unknown (404) or built-in (403) role is named before a missing list (422).
  { permissions: Type.Optional(PermissionList) },
  { additionalProperties: true, description: 'Only `permissions` (required); any other field is refused with 422' },
);

/** Custom roles per organization: members with `members:read` list them, `members:manage` changes them. */
export const roleRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;
  const tags = ['organizations'];

  app.get(
    '/organizations/:uuid/roles',
    {
      onRequest: requireOrgPermission('members:read'),
      schema: {
        tags,
        summary: "The organization's roles: built-in, then custom (any member with members:read)",
        security,
        params: OrganizationParams,
        response: { 200: Type.Array(RoleSchema), ...problems(401, 403, 404) },
      },
    },
    async (request) => listRoles(services, request.membership),
  );

  app.post(
    '/organizations/:uuid/roles',
    {
      onRequest: requireOrgPermission('members:manage'),
      schema: {
        tags,
        summary: 'Create a custom role (members:manage)',
        description:
          'A name taken by a built-in or custom role: 409 ROLE_EXISTS. An unknown permission: 422. A permission the caller lacks: 403.',
        security,
        params: OrganizationParams,
        body: CreateBody,
        response: { 201: RoleSchema, ...problems(400, 401, 403, 404, 409, 413, 415, 422) },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await createRole(services, request.membership, request.body, request.caller)),
  );

  app.patch(
    '/organizations/:uuid/roles/:name',
    {
      onRequest: requireOrgPermission('members:manage'),
      schema: {
        tags,
        summary: "Replace a custom role's permissions (members:manage)",
        description: 'Built-in roles: 403 ROLE_BUILT_IN. Unknown role: 404.',
        security,
        params: RoleParams,
        body: UpdateBody,
        response: { 200: RoleSchema, ...problems(400, 401, 403, 404, 413, 415, 422) },
      },
    },
    async (request) => updateRole(services, request.membership, request.params.name, request.body, request.caller),
  );

  app.delete(
    '/organizations/:uuid/roles/:name',
    {
      onRequest: requireOrgPermission('members:manage'),
      schema: {
        tags,
        summary: 'Delete a custom role no member or pending invitation holds (members:manage)',
        description: 'Built-in roles: 403 ROLE_BUILT_IN. Held by a member or pending invitation: 409 ROLE_IN_USE.',
        security,
        params: RoleParams,
        response: { 204: Type.Null({ description: 'No content' }), ...problems(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await deleteRole(services, request.membership, request.params.name, request.caller);
      return reply.code(204).send(null);
    },
  );
};
