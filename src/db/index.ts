import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import pg from 'pg';
import { DEFAULT_POOL_SIZE } from '../config.ts';
import * as initial from './migrations/0001_initial.ts';
import * as auditChain from './migrations/0002_audit_chain.ts';
import * as scaleIndexes from './migrations/0003_scale_indexes.ts';
import * as accountView from './migrations/0004_account_view.ts';
import * as housekeepingIndexes from './migrations/0005_housekeeping_indexes.ts';
import { PGliteDialect } from './pglite-dialect.ts';
import { PreparingClient } from './prepared.ts';
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

/**
 * `postgres://…` → a pg pool; `memory://` → an in-memory PGlite;
 * anything else (or nothing) → PGlite persisted in that directory.
 */
export async function openDatabase(
  url: string | undefined,
  dataDir: string,
  options: { poolSize?: number } = {},
): Promise<DatabaseHandle> {
  if (url && /^postgres(ql)?:\/\//.test(url)) {
    const pool = new pg.Pool({
      Client: PreparingClient,
      connectionString: url,
      max: options.poolSize ?? DEFAULT_POOL_SIZE,
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
  let dir: string | undefined;
  if (url === 'memory://') dir = undefined;
  else if (url?.startsWith('pglite://')) dir = url.slice('pglite://'.length);
  else if (url) dir = url;
  else dir = `${dataDir}/pglite`;
  if (dir) mkdirSync(dir, { recursive: true });
  const pglite = await PGlite.create(dir, {
    parsers: { [INT8]: (v: string) => Number(v), [NUMERIC]: (v: string) => Number(v) },
  });
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
  return { db, kind: 'pglite', ping: () => ping(db), close: () => db.destroy() };
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
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** Applies every pending migration; safe to run from several processes at once. */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider, allowUnorderedMigrations: true });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error;
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
