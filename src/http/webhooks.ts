import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { MAX_WEBHOOK_URL_LENGTH, WEBHOOK_EVENT_TYPES, WEBHOOK_SECRET_RULE } from '../domain/webhook-events.ts';
import { createWebhookEndpoint, deleteWebhookEndpoint, listWebhookEndpoints } from '../flows/webhooks.ts';
import { requireSuperuser } from './auth-guard.ts';
import { problems } from './schemas.ts';

const endpointProperties = {
  id: Type.String({ format: 'uuid' }),
  url: Type.String(),
  events: Type.Array(Type.String(), { description: 'Event types sent to it; empty: every type' }),
  created_at: Type.String({ format: 'date-time' }),
};

const WebhookEndpoint = Type.Object(endpointProperties, { description: 'A webhook receiver, without its secret' });

const WebhookEndpointCreated = Type.Object(
  {
    ...endpointProperties,
    secret: Type.String({
      description: 'Signs every delivery (Standard Webhooks). Shown this once; stored encrypted',
    }),
  },
  { description: 'The registered receiver and its signing secret' },
);

const security: Record<string, string[]>[] = [{ bearer: [] }, { oauth2: [] }];
const tags = ['administration'];

/** `/admin/webhooks…`: receivers of signed events (docs/webhooks.md). Superusers only. */
export const webhookRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('preHandler', requireSuperuser);

  app.post(
    '/admin/webhooks',
    {
      schema: {
        tags,
        summary: 'Register a webhook endpoint',
        description: `Events are POSTed to \`url\` as JSON \`{"type", "timestamp", "data"}\`, signed after the Standard Webhooks specification (headers webhook-id, webhook-timestamp, webhook-signature). \`https\` is required in production (http only on a loopback host). The \`secret\` (${WEBHOOK_SECRET_RULE}) is made here unless given, and shown in this answer only. Audited as \`webhook_endpoint_created\`.`,
        security,
        body: Type.Object({
          url: Type.String({ maxLength: MAX_WEBHOOK_URL_LENGTH, description: 'Absolute http(s) URL' }),
          events: Type.Optional(
            Type.Array(Type.Enum(WEBHOOK_EVENT_TYPES), {
              maxItems: WEBHOOK_EVENT_TYPES.length,
              description: 'Event types to send; omitted or empty: every type',
            }),
          ),
          secret: Type.Optional(Type.String({ maxLength: 200, description: WEBHOOK_SECRET_RULE })),
        }),
        response: { 201: WebhookEndpointCreated, ...problems(400, 401, 403, 413, 415, 422) },
      },
    },
    async (request, reply) => {
      const created = await createWebhookEndpoint(app.gatehouse, request.body, request.caller, request.auth.userId);
      return reply.code(201).header('cache-control', 'no-store').send(created);
    },
  );

  app.get(
    '/admin/webhooks',
    {
      schema: {
        tags,
        summary: 'List webhook endpoints',
        description:
          'Newest first, without secrets. Cursor pagination. WEBHOOK_URLS are configuration, not listed here.',
        security,
        querystring: Type.Object({
          cursor: Type.Optional(Type.String({ maxLength: 64, description: 'next_cursor of the previous page' })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50 })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(WebhookEndpoint),
            next_cursor: Type.Union([Type.String(), Type.Null()], {
              description: 'Pass as `cursor` to get the next page; null on the last page',
            }),
          }),
          ...problems(400, 401, 403, 422),
        },
      },
    },
    async (request) => listWebhookEndpoints(app.gatehouse, request.query),
  );

  app.delete(
    '/admin/webhooks/:id',
    {
      schema: {
        tags,
        summary: 'Delete a webhook endpoint',
        description:
          'Stops deliveries to it at once; its pending deliveries go. Audited as `webhook_endpoint_deleted`.',
        security,
        params: Type.Object({ id: Type.String({ description: 'id of the endpoint' }) }),
        response: { 204: Type.Null(), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      await deleteWebhookEndpoint(app.gatehouse, request.params.id, request.caller, request.auth.userId);
      return reply.code(204).send(null);
    },
  );
};
