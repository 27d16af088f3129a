import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import pg from 'pg';
import { ConfigError, DEFAULT_POOL_SIZE } from '../config.ts';
import {
  claimDirectory,
  EMBEDDED_SOCKET_PORT,
  EmbeddedInUseError,
  type EmbeddedOwner,
  FifoLock,
  readOwner,
  runDirectory,
  serveEmbedded,
} from './embedded.ts';
import * as initial from './migrations/0001_initial.ts';
import * as auditChain from './migrations/0002_audit_chain.ts';
import * as scaleIndexes from './migrations/0003_scale_indexes.ts';
import * as accountView from './migrations/0004_account_view.ts';
import * as housekeepingIndexes from './migrations/0005_housekeeping_indexes.ts';
import * as lockoutSources from './migrations/0006_lockout_sources.ts';
import * as registrationFields from './migrations/0007_registration_fields.ts';
import * as mfa from './migrations/0008_mfa.ts';
import * as passkeys from './migrations/0009_passkeys.ts';
import * as emailSignIn from './migrations/0010_email_sign_in.ts';
import * as oidcProvider from './migrations/0011_oidc_provider.ts';
import * as sso from './migrations/0012_sso.ts';
import * as emailChanges from './migrations/0013_email_changes.ts';
import * as customRoles from './migrations/0014_custom_roles.ts';
import * as claimsMetadata from './migrations/0015_claims_metadata.ts';
import * as webhooks from './migrations/0017_webhooks.ts';
import { PGliteDialect } from './pglite-dialect.ts';
import { PreparingClient } from './prepared.ts';
import { privateDatabaseFiles } from './private-files.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  db: Db;
  kind: 'postgres' | 'pglite';
  /** True when the database answers a trivial query. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

const INT8 = 20;
const NUMERIC = 1700;

export interface OpenOptions {
  poolSize?: number;
  /**
   * For an embedded directory: `server` (the default) owns it and serves it to
   * other processes over a Unix socket; `client` (the CLI) goes through the
   * owner's socket when one runs, and owns the directory itself otherwise.
   */
  role?: 'server' | 'client';
}

/**
 * `postgres://…` → a pg pool; `memory://` → an in-memory PGlite;
 * anything else (or nothing) → PGlite persisted in that directory.
 */
export async function openDatabase(
  url: string | undefined,
  dataDir: string,
  options: OpenOptions = {},
): Promise<DatabaseHandle> {
  if (url && /^postgres(ql)?:\/\//.test(url)) {
    return openPool({ connectionString: url }, options.poolSize ?? DEFAULT_POOL_SIZE, PreparingClient);
  }
  if (url === 'memory://') return openPGlite(undefined);
  const dir = embeddedDirectory(url, dataDir);
  if (options.role === 'client') {
    const owner = await servingOwner(dir);
    // One connection: the owner's backend is one session, whose named statements all clients would share.
    if (owner)
      return openPool(
        { host: owner.socketDir, port: EMBEDDED_SOCKET_PORT, user: 'postgres', database: 'postgres' },
        1,
        pg.Client,
      );
  }
  const claim = claimDirectory(dir);
  try {
    const handle = await openPGlite(dir);
    if (options.role === 'client') return { ...handle, close: () => handle.close().finally(claim.release) };
    const server = await serveEmbedded(handle.pglite, handle.lock, dir);
    claim.publish(server.socketDir);
    return {
      ...handle,
      close: async () => {
        await server.close().finally(() => handle.close().finally(claim.release));
      },
    };
  } catch (error) {
    claim.release();
    throw error;
  }
}

/** Where a PostgreSQL client (psql, pg) reaches the database in use, for as long as it stays open. */
export interface SqlEndpoint {
  /** Connection arguments for `psql`. */
  psqlArgs: string[];
  client: pg.ClientConfig;
  close(): Promise<void>;
}

/**
 * The database in use as a PostgreSQL server: DATABASE_URL itself, or the
 * embedded directory's socket — its running owner's, or one this process
 * serves (owning the directory) until `close()`.
 */
export async function openSqlEndpoint(url: string | undefined, dataDir: string): Promise<SqlEndpoint> {
  if (url && /^postgres(ql)?:\/\//.test(url)) {
    return { psqlArgs: [url], client: { connectionString: url }, close: async () => {} };
  }
  if (url === 'memory://')
    throw new Error('DATABASE_URL=memory:// lives inside one process: there is nothing to connect to');
  const dir = embeddedDirectory(url, dataDir);
  const owner = await servingOwner(dir);
  const handle = owner ? undefined : await openDatabase(url, dataDir, { role: 'server' });
  const socketDir = owner?.socketDir ?? runDirectory(dir);
  const client = { host: socketDir, port: EMBEDDED_SOCKET_PORT, user: 'postgres', database: 'postgres' };
  return {
    psqlArgs: ['-h', socketDir, '-p', String(EMBEDDED_SOCKET_PORT), '-U', 'postgres', '-d', 'postgres'],
    client,
    close: async () => handle?.close(),
  };
}

/** Network errors and PostgreSQL's refusals at connection time (bad password, unknown role or database). */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  '28P01',
  '28000',
  '3D000',
]);

/**
 * A failure to reach the PostgreSQL server of DATABASE_URL → a ConfigError naming DATABASE_URL and the
 * server's host:port (never the password). Any other error is returned as it is.
 */
export function explainConnectionError(error: unknown, url: string | undefined): unknown {
  if (!url || !/^postgres(ql)?:\/\//.test(url) || !(error instanceof Error)) return error;
  const code = (error as { code?: unknown }).code;
  const connecting =
    (typeof code === 'string' && CONNECTION_CODES.has(code)) ||
    /timeout exceeded when trying to connect|Connection terminated/i.test(error.message) ||
    (error instanceof AggregateError && error.errors.some((e) => CONNECTION_CODES.has(String(e?.code))));
  if (!connecting) return error;
  let where = 'the server it names';
  try {
    const parsed = new URL(url);
    where = `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`;
    if (parsed.pathname.length > 1) where += ` (database ${decodeURIComponent(parsed.pathname.slice(1))})`;
  } catch {}
  const reason = (error.message || String(code)).replaceAll(url, '<DATABASE_URL>');
  return new ConfigError(
    'DATABASE_URL',
    `cannot connect to PostgreSQL at ${where}: ${reason}. Check that PostgreSQL runs and that DATABASE_URL (and DATABASE_PASSWORD) are right`,
  );
}

function embeddedDirectory(url: string | undefined, dataDir: string): string {
  if (url?.startsWith('pglite://')) return url.slice('pglite://'.length);
  return url || `${dataDir}/pglite`;
}

/** The owner of an embedded directory, once it serves its socket (a starting owner gets a few seconds). */
async function servingOwner(dir: string): Promise<(EmbeddedOwner & { socketDir: string }) | undefined> {
  for (let waited = 0; waited < 10_000; waited += 100) {
    const owner = readOwner(dir);
    if (!owner) return undefined;
    if (owner.socketDir) return { ...owner, socketDir: owner.socketDir };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const owner = readOwner(dir);
  if (owner) throw new EmbeddedInUseError(dir, owner);
  return undefined;
}

function openPool(
  connection: pg.PoolConfig,
  max: number,
  Client: typeof pg.Client | typeof PreparingClient,
): DatabaseHandle & { pglite?: undefined } {
  const pool = new pg.Pool({
    ...connection,
    Client,
    max,
    connectionTimeoutMillis: 5_000,
    // int8 ids and counts as numbers on both drivers.
    types: {
      getTypeParser: (oid: number, format?: 'text' | 'binary') =>
        oid === INT8 ? Number : (pg.types.getTypeParser(oid, format) as (v: string) => unknown),
    } as pg.CustomTypesConfig,
  });
  // A dropped idle connection must not crash the process.
  pool.on('error', () => {});
  // Nor one dropped while checked out (a restart mid-transaction): its next query fails, the pool discards it.
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, kind: 'postgres', ping: () => ping(db), close: () => db.destroy() };
}

async function openPGlite(dir: string | undefined): Promise<DatabaseHandle & { pglite: PGlite; lock: FifoLock }> {
  const pglite = await PGlite.create({
    ...(dir !== undefined && { fs: privateDatabaseFiles(dir) }),
    parsers: { [INT8]: (v: string) => Number(v), [NUMERIC]: (v: string) => Number(v) },
  });
  const lock = new FifoLock();
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite, lock) });
  const close = async () => {
    await db.destroy();
    // Kysely closes its driver only if it ever ran a query; an instance served to others alone is closed here.
    if (!pglite.closed) await pglite.close();
  };
  return { db, kind: 'pglite', pglite, lock, ping: () => ping(db), close };
}

async function ping(db: Db): Promise<boolean> {
  try {
    await sql`select 1`.execute(db);
    return true;
  } catch {
    return false;
  }
}

const migrations: Record<string, Migration> = {
  '0001_initial': initial,
  '0002_audit_chain': auditChain,
  '0003_scale_indexes': scaleIndexes,
  '0004_account_view': accountView,
  '0005_housekeeping_indexes': housekeepingIndexes,
  '0006_lockout_sources': lockoutSources,
  '0007_registration_fields': registrationFields,
  '0008_mfa': mfa,
  '0009_passkeys': passkeys,
  '0010_email_sign_in': emailSignIn,
  '0011_oidc_provider': oidcProvider,
  '0012_sso': sso,
  '0013_email_changes': emailChanges,
  '0014_custom_roles': customRoles,
  '0015_claims_metadata': claimsMetadata,
  '0017_webhooks': webhooks,
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** Applies every pending migration; safe to run from several processes at once. */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider, allowUnorderedMigrations: true });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error;
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
