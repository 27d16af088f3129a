/**
 * An example host application: it mounts Gatehouse and adds its own
 * organization-scoped routes, guarded by Gatehouse's role guard.
 *
 *   POST /api/v1/organizations/{uuid}/scan   role `user` (or admin) → 202
 *   GET  /api/v1/organizations/{uuid}/scans  role `viewer` or above → 200
 *   POST /api/v1/organizations/{uuid}/scans/{scan_uuid}/cancel
 *        permission `scans:cancel`, the app's own: admins, and custom roles holding it → 200
 *
 * Run it with `node examples/scan-app/server.ts`. It imports Gatehouse from this
 * repository's sources; an installed application imports the same names from
 * 'gatehouse-auth'.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Generated } from 'kysely';
import { type Migration, Migrator } from 'kysely/migration';
import { type Static, Type } from 'typebox';
import gatehouse, { AppError, type Config, requireOrgRole, requirePermission, sendProblem } from '../../src/plugin.ts';
import * as scanRequests from './migrations/0001_scan_requests.ts';

interface ScanRequestsTable {
  id: Generated<number>;
  uuid: Generated<string>;
  organization_id: number;
  requested_by: number | null;
  target: string;
  protocol_filter: string | null;
  status: Generated<string>;
  created_at: Generated<Date>;
}

/** The host's migrations run after Gatehouse's, with their own bookkeeping tables. */
async function migrateScanApp(db: FastifyInstance['gatehouse']['db']): Promise<void> {
  const migrations: Record<string, Migration> = { '0001_scan_requests': scanRequests };
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableName: 'scan_app_migrations',
    migrationLockTableName: 'scan_app_migrations_lock',
  });
  const { error } = await migrator.migrateToLatest();
  if (error) throw error;
}

const ScanBody = Type.Object(
  {
    target: Type.String({
      minLength: 1,
      maxLength: 253,
      pattern:
        '^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$',
      description: 'A host name such as example.com',
    }),
    protocol_filter: Type.Optional(
      Type.String({ pattern: '^[a-z0-9_-]{1,32}$', description: 'Only scan this protocol, e.g. sui' }),
    ),
  },
  { additionalProperties: false },
);

const ScanRequest = Type.Object({
  uuid: Type.String({ format: 'uuid' }),
  organization_uuid: Type.String({ format: 'uuid' }),
  target: Type.String(),
  protocol_filter: Type.Union([Type.String(), Type.Null()]),
  status: Type.String(),
  requested_by: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
});

const OrganizationParams = Type.Object({ uuid: Type.String() });
const ScanParams = Type.Object({ uuid: Type.String(), scan_uuid: Type.String() });

export interface ScanAppOptions {
  config: Config;
  logger?: FastifyServerOptions['logger'];
}

export async function buildScanApp(options: ScanAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? { level: options.config.logLevel },
    // Gatehouse opens the database and migrates while it registers: allow more than the default 10 s.
    pluginTimeout: 120_000,
    // Bodies as sent: 123 is not a string and unknown fields are refused, not dropped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true } },
  });
  // The host answers its own errors in the same problem+json shape as Gatehouse.
  app.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));

  // `scans:cancel` is this app's own permission: organization admins hold it and can put it in custom roles.
  await app.register(gatehouse, { config: options.config, permissions: ['scans:cancel'] });
  await migrateScanApp(app.gatehouse.db);
  const db = app.gatehouse.db.withTables<{ scan_requests: ScanRequestsTable }>();

  app.post<{ Params: Static<typeof OrganizationParams>; Body: Static<typeof ScanBody> }>(
    '/api/v1/organizations/:uuid/scan',
    {
      // Before the body is even read: 401 without a token, 404 for non-members, 403 below `user`.
      onRequest: requireOrgRole('user'),
      schema: { params: OrganizationParams, body: ScanBody, response: { 202: ScanRequest } },
    },
    async (request, reply) => {
      const { membership, auth } = request;
      const row = await db
        .insertInto('scan_requests')
        .values({
          organization_id: membership.organizationId,
          requested_by: membership.userId,
          target: request.body.target.toLowerCase(),
          protocol_filter: request.body.protocol_filter ?? null,
        })
        .returning(['uuid', 'target', 'protocol_filter', 'status', 'created_at'])
        .executeTakeFirstOrThrow();
      return reply.code(202).send({
        ...row,
        organization_uuid: membership.organizationUuid,
        requested_by: auth.userUuid,
        created_at: row.created_at.toISOString(),
      });
    },
  );

  app.get<{ Params: Static<typeof OrganizationParams> }>(
    '/api/v1/organizations/:uuid/scans',
    {
      onRequest: requireOrgRole('viewer'),
      schema: { params: OrganizationParams, response: { 200: Type.Array(ScanRequest) } },
    },
    async (request) => {
      const rows = await db
        .selectFrom('scan_requests as s')
        .leftJoin('users as u', 'u.id', 's.requested_by')
        .select(['s.uuid', 's.target', 's.protocol_filter', 's.status', 's.created_at', 'u.uuid as requested_by'])
        .where('s.organization_id', '=', request.membership.organizationId)
        .orderBy('s.id', 'desc')
        .limit(100)
        .execute();
      return rows.map((r) => ({
        ...r,
        organization_uuid: request.membership.organizationUuid,
        created_at: r.created_at.toISOString(),
      }));
    },
  );

  app.post<{ Params: Static<typeof ScanParams> }>(
    '/api/v1/organizations/:uuid/scans/:scan_uuid/cancel',
    {
      onRequest: requirePermission('scans:cancel'),
      schema: { params: ScanParams, response: { 200: ScanRequest } },
    },
    async (request) => {
      const { membership } = request;
      const uuid = request.params.scan_uuid.toLowerCase();
      const row = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(uuid)
        ? await db
            .updateTable('scan_requests')
            .set({ status: 'cancelled' })
            .where('uuid', '=', uuid)
            .where('organization_id', '=', membership.organizationId)
            .returning(['uuid', 'target', 'protocol_filter', 'status', 'created_at', 'requested_by'])
            .executeTakeFirst()
        : undefined;
      if (!row) throw new AppError('NOT_FOUND', { detail: 'Scan not found' });
      const requester =
        row.requested_by === null
          ? undefined
          : await db.selectFrom('users').select('uuid').where('id', '=', row.requested_by).executeTakeFirst();
      return {
        ...row,
        organization_uuid: membership.organizationUuid,
        requested_by: requester?.uuid ?? null,
        created_at: row.created_at.toISOString(),
      };
    },
  );

  return app;
}
