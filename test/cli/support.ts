import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type DatabaseHandle, migrateToLatest, openDatabase } from '../../src/db/index.ts';

export interface IsolatedDatabase {
  /** A DATABASE_URL nobody else uses: a fresh PGlite directory, or a fresh database on PostgreSQL. */
  url: string;
  /** A scratch DATA_DIR for the same test. */
  dataDir: string;
  cleanup(): Promise<void>;
}

/**
 * A database of the test's own, so that tampering with the audit chain or
 * counting users never meets other tests' rows. On PostgreSQL (DATABASE_URL
 * set) it is a new database on that server, dropped afterwards.
 */
export async function isolatedDatabase(): Promise<IsolatedDatabase> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-test-'));
  const base = process.env.DATABASE_URL;
  if (!base || !/^postgres(ql)?:\/\//.test(base)) {
    return {
      url: `pglite://${join(dataDir, 'pglite')}`,
      dataDir,
      cleanup: async () => rmSync(dataDir, { recursive: true, force: true }),
    };
  }
  const name = `gatehouse_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    dataDir,
    cleanup: async () => {
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** An isolated database, opened and migrated in this process; `close()` closes and drops it. */
export async function openIsolatedDatabase(): Promise<{
  isolated: IsolatedDatabase;
  database: DatabaseHandle;
  close(): Promise<void>;
}> {
  const isolated = await isolatedDatabase();
  const database = await openDatabase(isolated.url, isolated.dataDir);
  await migrateToLatest(database.db);
  return {
    isolated,
    database,
    close: async () => {
      await database.close();
      await isolated.cleanup();
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli.ts');

/** Runs `node src/cli.ts …` as a child process, as an operator would. */
export function runCli(args: string[], env: Record<string, string | undefined>, input?: string): Promise<CliResult> {
  return runNode([CLI, ...args], env, input);
}

/** Runs `node <args>` (Node 24, this process's own binary) with exactly `env`. */
export function runNode(
  args: string[],
  env: Record<string, string | undefined>,
  input?: string,
  cwd?: string,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}
