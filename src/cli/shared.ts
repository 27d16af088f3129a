import { type ParseArgsConfig, parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { pino } from 'pino';
import { type Config, ConfigError, loadConfig } from '../config.ts';
import { type DatabaseHandle, migrateToLatest, openDatabase } from '../db/index.ts';
import type { AppError } from '../domain/errors.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { createServices, type Services } from '../infra/container.ts';

/** One `gatehouse <words…>` command. */
export interface Command {
  /** The words that name it, e.g. `users unlock`. */
  name: string;
  summary: string;
  /** Full `--help` text after the usage line. */
  help: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

export const EXIT_OK = 0;
/** The command ran and found a problem (bad password, tampered log, unknown user). */
export const EXIT_FAILURE = 1;
/** The command line itself is wrong. */
export const EXIT_USAGE = 2;
/** EX_CONFIG from sysexits.h, as the server uses. */
const EXIT_CONFIG = 78;

/** An expected failure: printed as one line, no stack. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = EXIT_FAILURE) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Audit rows written by the CLI say so; there is no client address. */
export const CLI_CONTEXT: RequestContext = { ip: null, userAgent: 'gatehouse-cli' };

/** `util.parseArgs` with strict checking, its errors turned into usage errors. */
export function parseCommandLine<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    throw new CliError(error instanceof Error ? error.message : String(error), EXIT_USAGE);
  }
}

export function readConfig(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(`invalid configuration: ${error.message}`, EXIT_CONFIG);
    throw error;
  }
}

async function openConfiguredDatabase(config: Config): Promise<DatabaseHandle> {
  try {
    const database = await openDatabase(config.databaseUrl, config.dataDir, {
      poolSize: config.databasePoolSize,
      role: 'client',
    });
    if (!(await database.ping())) {
      await database.close();
      throw new Error('it does not answer');
    }
    return database;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CliError(`cannot open the database (DATABASE_URL): ${reason}`);
  }
}

/** The database alone, migrated or not. */
export async function withDatabase<T>(
  options: { migrate: boolean },
  work: (database: DatabaseHandle, config: Config) => Promise<T>,
): Promise<T> {
  const config = readConfig();
  const database = await openConfiguredDatabase(config);
  try {
    if (options.migrate) await migrateToLatest(database.db);
    return await work(database, config);
  } finally {
    await database.close();
  }
}

/** The same services the server runs with, on a migrated database, closed afterwards. */
export async function withServices<T>(work: (services: Services) => Promise<T>): Promise<T> {
  return withDatabase({ migrate: true }, async (database, config) => {
    const log = pino({ level: config.logLevel === 'info' ? 'warn' : config.logLevel }, pino.destination(2));
    const services = await createServices(config, database, log);
    try {
      return await work(services);
    } finally {
      // Seals the audit rows this command wrote.
      await services.close();
    }
  });
}

/** An application refusal (password policy, taken email …) as readable lines. */
export function describeAppError(error: AppError): string {
  const lines = [error.detail];
  for (const issue of error.options.issues ?? []) lines.push(`  - ${issue}`);
  for (const field of error.options.errors ?? []) lines.push(`  - ${field.field}: ${field.message}`);
  if (error.options.recommendation) lines.push(error.options.recommendation);
  return lines.join('\n');
}

export interface Progress {
  start(total: number): void;
  update(done: number): void;
  stop(): void;
}

/** A progress bar on a terminal (stderr), silence when piped or in CI logs. */
export function progress(label: string): Progress {
  if (!process.stderr.isTTY) return { start() {}, update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  return {
    start: (total) => bar.start(total, 0),
    update: (done) => bar.update(done),
    stop: () => bar.stop(),
  };
}
