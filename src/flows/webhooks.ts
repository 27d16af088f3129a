/**
 * Webhook endpoints superusers register (`/admin/webhooks`), and the replay
 * of past events. Delivery itself is infra/webhooks.ts.
 */

import type { Selectable } from 'kysely';
import type { WebhookEndpointsTable } from '../db/schema.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { isUuid } from '../domain/identifiers.ts';
import { DEFAULT_PAGE_SIZE, decodeCursor, type Page, pageOf } from '../domain/paging.ts';
import type { RequestContext } from '../domain/request-context.ts';
import {
  WEBHOOK_EVENT_TYPES,
  WEBHOOK_SECRET_RULE,
  webhookSecretBytes,
  webhookUrlProblem,
} from '../domain/webhook-events.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { encryptEndpointSecret, newWebhookSecret, replayEvents, webhookKeys } from '../infra/webhooks.ts';

export interface WebhookEndpointInput {
  url?: unknown;
  events?: unknown;
  secret?: unknown;
}

/** An endpoint as superusers see it: never its secret, which only the creation answer shows. */
export interface WebhookEndpointView {
  id: string;
  url: string;
  /** Event types sent to it; empty: every type. */
  events: string[];
  created_at: string;
}

export interface WebhookEndpointCreated extends WebhookEndpointView {
  secret: string;
}

function endpointView(row: Selectable<WebhookEndpointsTable>): WebhookEndpointView {
  return { id: row.uuid, url: row.url, events: row.events, created_at: row.created_at.toISOString() };
}

function validate(input: WebhookEndpointInput, production: boolean) {
  const errors: FieldError[] = [];
  let url = '';
  if (input.url === undefined || input.url === null) {
    errors.push({ field: 'url', message: 'Field is required', code: 'required' });
  } else if (typeof input.url !== 'string') {
    errors.push({ field: 'url', message: 'Must be a string', code: 'type' });
  } else {
    url = input.url.trim();
    const problem = webhookUrlProblem(url, production);
    if (problem) errors.push({ field: 'url', message: problem, code: 'url' });
  }
  let events: string[] = [];
  if (input.events !== undefined && input.events !== null) {
    if (!Array.isArray(input.events) || !input.events.every((e) => typeof e === 'string')) {
      errors.push({ field: 'events', message: 'Must be an array of event types', code: 'type' });
    } else {
      const unknown = input.events.filter((e) => !(WEBHOOK_EVENT_TYPES as readonly string[]).includes(e));
      if (unknown.length > 0) {
        errors.push({
          field: 'events',
          message: `Unknown event types: ${unknown.join(', ')}; known: ${WEBHOOK_EVENT_TYPES.join(', ')}`,
          code: 'enum',
        });
      } else events = [...new Set(input.events as string[])];
    }
  }
  let secret: string | undefined;
  if (input.secret !== undefined && input.secret !== null) {
    if (typeof input.secret !== 'string' || !webhookSecretBytes(input.secret)) {
      errors.push({ field: 'secret', message: `Must be ${WEBHOOK_SECRET_RULE}`, code: 'pattern' });
    } else secret = input.secret;
  }
  if (errors.length > 0) {
    throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  }
  return { url, events, secret: secret ?? newWebhookSecret() };
}

/**
 * Registers a receiver; its secret (given, or made here) is in the answer and
 * stored encrypted. Audited with the URL's origin only: a path may hold a token.
 */
export async function createWebhookEndpoint(
  services: Services,
  input: WebhookEndpointInput,
  context: RequestContext,
  actorUserId: number | null,
): Promise<WebhookEndpointCreated> {
  const valid = validate(input, services.config.environment === 'production');
  const keys = webhookKeys(services.config);
  const uuid = crypto.randomUUID();
  const row = await services.db.transaction().execute(async (trx) => {
    const created = await trx
      .insertInto('webhook_endpoints')
      .values({
        uuid,
        url: valid.url,
        events: valid.events,
        secret_ciphertext: encryptEndpointSecret(keys, uuid, valid.secret),
        key_id: keys.id,
        created_by: actorUserId,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(
      trx,
      {
        action: 'webhook_endpoint_created',
        userId: actorUserId,
        details: { endpoint_uuid: uuid, origin: new URL(valid.url).origin, events: valid.events },
      },
      context,
    );
    return created;
  });
  return { ...endpointView(row), secret: valid.secret };
}

export async function listWebhookEndpoints(
  services: Services,
  query: { cursor?: string | undefined; limit?: number | undefined } = {},
): Promise<Page<WebhookEndpointView>> {
  const limit = query.limit ?? DEFAULT_PAGE_SIZE;
  const after = decodeCursor(query.cursor);
  let q = services.db.selectFrom('webhook_endpoints').selectAll();
  if (after !== undefined) q = q.where('id', '<', after);
  const rows = await q
    .orderBy('id', 'desc')
    .limit(limit + 1)
    .execute();
  return pageOf(rows, limit, endpointView);
}

/** Removes a receiver with its pending deliveries. Audited. NOT_FOUND for an unknown id. */
export async function deleteWebhookEndpoint(
  services: Services,
  id: string,
  context: RequestContext,
  actorUserId: number | null,
): Promise<void> {
  const notFound = new AppError('NOT_FOUND', { detail: 'No such webhook endpoint' });
  if (!isUuid(id)) throw notFound;
  await services.db.transaction().execute(async (trx) => {
    const deleted = await trx
      .deleteFrom('webhook_endpoints')
      .where('uuid', '=', id.toLowerCase())
      .returning(['uuid', 'url'])
      .executeTakeFirst();
    if (!deleted) throw notFound;
    await recordAudit(
      trx,
      {
        action: 'webhook_endpoint_deleted',
        userId: actorUserId,
        details: { endpoint_uuid: deleted.uuid, origin: new URL(deleted.url).origin },
      },
      context,
    );
  });
}

/** Queues again the events since `since` for every receiver; returns the number of deliveries queued. */
export async function replayWebhooks(services: Services, since: Date): Promise<number> {
  const queued = await replayEvents(services.db, services.config, since);
  services.webhooks.kick();
  return queued;
}
