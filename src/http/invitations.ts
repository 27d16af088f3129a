import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { acceptInvitation, createInvitation, listPendingInvitations, revokeInvitation } from '../flows/invitations.ts';
import { requireUser } from './auth-guard.ts';
import { requireOrgPermission } from './org-guard.ts';
import { OrganizationParams, OrganizationSchema, security } from './organizations.ts';
import { problems, RoleSchema } from './schemas.ts';

const Invitation = Type.Object({
  uuid: Type.String({ format: 'uuid' }),
  organization_uuid: Type.String({ format: 'uuid' }),
  email: Type.String(),
  role: RoleSchema,
  invited_by: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  expires_at: Type.String({ format: 'date-time' }),
});

const InviteBody = Type.Object(
  {
    email: Type.String({ description: 'Who is invited; they accept with an account verified for this address' }),
    role: Type.String({ description: '`admin`, `user`, `viewer` or a custom role of the organization' }),
  },
  { additionalProperties: true },
);

const TokenBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 512, description: 'The token from the mailed link' }) },
  { additionalProperties: true },
);

export const invitationRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;
  const tags = ['organizations'];

  app.post(
    '/organizations/:uuid/invitations',
    {
      config: { rateLimit: 'invitations' },
      onRequest: requireOrgPermission('invitations:manage'),
      schema: {
        tags,
        summary: 'Invite someone by email (admin)',
        description:
          'Mails a single-use link `PUBLIC_URL/accept-invitation?token=…`, valid 7 days. Inviting the same address again replaces its pending invitation.',
        security,
        params: OrganizationParams,
        body: InviteBody,
        response: { 201: Invitation, ...problems(400, 401, 403, 404, 409, 413, 415, 422, 429) },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await createInvitation(services, request.membership, request.body, request.caller)),
  );

  app.get(
    '/organizations/:uuid/invitations',
    {
      onRequest: requireOrgPermission('invitations:manage'),
      schema: {
        tags,
        summary: 'Pending invitations (admin)',
        security,
        params: OrganizationParams,
        response: { 200: Type.Array(Invitation), ...problems(401, 403, 404) },
      },
    },
    async (request) => listPendingInvitations(services, request.membership),
  );

  app.delete(
    '/organizations/:uuid/invitations/:invitation_uuid',
    {
      onRequest: requireOrgPermission('invitations:manage'),
      schema: {
        tags,
        summary: 'Revoke a pending invitation (admin)',
        description: 'Its link stops working. 404 when it is unknown or no longer pending.',
        security,
        params: Type.Object({ uuid: Type.String(), invitation_uuid: Type.String() }),
        response: { 204: Type.Null({ description: 'No content' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      await revokeInvitation(services, request.membership, request.params.invitation_uuid, request.caller);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/invitations/accept',
    {
      preHandler: requireUser,
      schema: {
        tags,
        summary: 'Accept an invitation',
        description:
          "The caller's verified email must be the invited address (403 otherwise). Unknown, used, revoked or expired tokens: 422 TOKEN_INVALID_OR_EXPIRED.",
        security,
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: TokenBody,
        response: { 200: OrganizationSchema, ...problems(400, 401, 403, 409, 413, 415, 422) },
      },
    },
    async (request) => acceptInvitation(services, request.auth, request.body.token, request.caller),
  );
};
