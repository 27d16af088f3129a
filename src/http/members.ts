import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { changeMemberRole, listMembers, removeMember } from '../flows/members.ts';
import { requireOrgPermission } from './org-guard.ts';
import { security } from './organizations.ts';
import { problems, RoleSchema } from './schemas.ts';

const Member = Type.Object({
  user_uuid: Type.String({ format: 'uuid' }),
  username: Type.String(),
  email: Type.String(),
  first_name: Type.Union([Type.String(), Type.Null()]),
  last_name: Type.Union([Type.String(), Type.Null()]),
  role: RoleSchema,
  joined_at: Type.String({ format: 'date-time' }),
});

const MemberParams = Type.Object({
  uuid: Type.String({ description: 'Organization uuid' }),
  user_uuid: Type.String({ description: "The member's user uuid" }),
});

const RoleBody = Type.Object(
  { role: Type.String({ description: '`admin`, `user`, `viewer` or a custom role of the organization' }) },
  { additionalProperties: true },
);

export const memberRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;
  const tags = ['organizations'];

  app.get(
    '/organizations/:uuid/members',
    {
      onRequest: requireOrgPermission('members:read'),
      schema: {
        tags,
        summary: 'Members and their roles (any member)',
        security,
        params: Type.Object({ uuid: Type.String() }),
        response: { 200: Type.Array(Member), ...problems(401, 404) },
      },
    },
    async (request) => listMembers(services, request.membership),
  );

  app.patch(
    '/organizations/:uuid/members/:user_uuid',
    {
      onRequest: requireOrgPermission('members:manage'),
      schema: {
        tags,
        summary: "Change a member's role (admin)",
        description: 'The last admin cannot be demoted: 409 CONFLICT.',
        security,
        params: MemberParams,
        body: RoleBody,
        response: { 200: Member, ...problems(400, 401, 403, 404, 409, 413, 415, 422) },
      },
    },
    async (request) =>
      changeMemberRole(services, request.membership, request.params.user_uuid, request.body, request.caller),
  );

  app.delete(
    '/organizations/:uuid/members/:user_uuid',
    {
      onRequest: requireOrgPermission('organization:read'),
      schema: {
        tags,
        summary: 'Remove a member (admin), or leave (any member, with their own uuid)',
        description: 'The last admin can be neither removed nor leave: 409 CONFLICT.',
        security,
        params: MemberParams,
        response: { 204: Type.Null({ description: 'No content' }), ...problems(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await removeMember(services, request.membership, request.params.user_uuid, request.caller);
      return reply.code(204).send(null);
    },
  );
};
