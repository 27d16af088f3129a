import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { requireService } from '../helpers.ts';
import { freePort } from './ports.ts';

const run = promisify(execFile);

/** The newest installed server's bin directory (Debian layout), or PG_BIN. */
function serverBinaries(): string | undefined {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

/** Why a throwaway cluster cannot be made here (skip reason), or false; throws in CI. */
export function postgresUnavailable(): string | false {
  return requireService('PostgreSQL server binaries (initdb, pg_ctl)', serverBinaries() !== undefined);
}

/**
 * A PostgreSQL cluster of its own on a spare loopback port, for tests that
 * stop, restart or kill the database: the machine's shared server is never
 * touched. initdb refuses to run as root, so as root the cluster belongs to
 * the `postgres` OS user.
 */
export class ThrowawayPostgres {
  readonly port: number;
  readonly #dir: string;
  readonly #bin: string;
  readonly #asPostgres: boolean;

  private constructor(dir: string, port: number, bin: string, asPostgres: boolean) {
    this.#dir = dir;
    this.port = port;
    this.#bin = bin;
    this.#asPostgres = asPostgres;
  }

  static async start(): Promise<ThrowawayPostgres> {
    const bin = serverBinaries();
    if (!bin) throw new Error('PostgreSQL server binaries not found (set PG_BIN)');
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-pg-'));
    const asPostgres = userInfo().uid === 0;
    if (asPostgres) {
      const { stdout } = await run('id', ['-u', 'postgres']);
      const { stdout: gid } = await run('id', ['-g', 'postgres']);
      await chown(dir, Number(stdout.trim()), Number(gid.trim()));
    }
    const cluster = new ThrowawayPostgres(dir, await freePort(), bin, asPostgres);
    await cluster.#exec('initdb', [
      '-D',
      cluster.#data,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--no-locale',
      '-N',
    ]);
    await cluster.resume();
    return cluster;
  }

  get #data(): string {
    return join(this.#dir, 'data');
  }

  /** A URL for database `name` (default `postgres`). */
  url(name = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${name}`;
  }

  /** A new empty database in this cluster; returns its URL. */
  async createDatabase(name: string): Promise<string> {
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    try {
      await client.query(`create database ${name}`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  /** Starts (or starts again) the server and waits until it accepts connections. */
  async resume(): Promise<void> {
    await this.#pgCtl([
      'start',
      '-w',
      '-t',
      '30',
      '-l',
      join(this.#dir, 'server.log'),
      '-o',
      `-p ${this.port} -k ${this.#dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`,
    ]);
  }

  /** A clean, fast shutdown: open sessions are terminated (57P01), new connections refused. */
  async stop(): Promise<void> {
    await this.#pgCtl(['stop', '-w', '-m', 'fast']);
  }

  /** Stops and removes the cluster. */
  async destroy(): Promise<void> {
    await this.#pgCtl(['stop', '-w', '-m', 'immediate']).catch(() => {});
    await rm(this.#dir, { recursive: true, force: true });
  }

  #pgCtl(args: string[]): Promise<unknown> {
    return this.#exec('pg_ctl', ['-D', this.#data, ...args]);
  }

  async #exec(program: string, args: string[]): Promise<void> {
    const path = join(this.#bin, program);
    const [command, argv] = this.#asPostgres ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
    try {
      await run(command, argv, { timeout: 60_000 });
    } catch (error) {
      const { stderr } = error as { stderr?: string };
      throw new Error(`${program} ${args[0] ?? ''} failed: ${stderr ?? (error as Error).message}`);
    }
  }
}
