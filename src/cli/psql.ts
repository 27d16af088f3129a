import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { openSqlEndpoint } from '../db/index.ts';
import { CliError, type Command, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, readConfig } from './shared.ts';

export const psqlCommand: Command = {
  name: 'psql',
  summary: 'An SQL prompt on the database in use (embedded or DATABASE_URL)',
  usage: 'gatehouse psql [-c SQL]… [psql options]',
  help: `Opens psql on the database this configuration uses: DATABASE_URL, or the
embedded database — through the running server's socket, or opened by this
command when no server runs. Every argument goes to psql (\`-c SQL\` runs one
statement and prints its rows). Without a psql on PATH, a built-in prompt
takes over: it understands -c/--command and reads statements ending in ";"
from standard input (\\q quits).

Example:
  gatehouse psql -c 'select action, created_at from audit_logs order by id desc limit 5'`,
  async run(args) {
    const config = readConfig();
    let endpoint: Awaited<ReturnType<typeof openSqlEndpoint>>;
    try {
      endpoint = await openSqlEndpoint(config.databaseUrl, config.dataDir);
    } catch (error) {
      throw new CliError(`cannot open the database: ${error instanceof Error ? error.message : String(error)}`);
    }
    try {
      const psql = onPath('psql');
      if (psql) return await runPsql(psql, [...endpoint.psqlArgs, ...args]);
      return await builtinPrompt(endpoint.client, args);
    } finally {
      await endpoint.close();
    }
  },
};

function onPath(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}

/** psql in the foreground; this process keeps serving the embedded socket meanwhile, so no sync spawn. */
function runPsql(psql: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(psql, args, { stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (code) => resolve(code ?? EXIT_FAILURE));
  });
}

function commands(args: string[]): string[] {
  const sql: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '-c' || arg === '--command') {
      const next = args[++i];
      if (next === undefined) throw new CliError(`${arg} needs an SQL statement`, EXIT_USAGE);
      sql.push(next);
    } else if (arg.startsWith('--command=')) {
      sql.push(arg.slice('--command='.length));
    } else {
      throw new CliError(`without psql on PATH only -c SQL is understood, not ${arg}`, EXIT_USAGE);
    }
  }
  return sql;
}

async function builtinPrompt(connection: pg.ClientConfig, args: string[]): Promise<number> {
  const statements = commands(args);
  const client = new pg.Client(connection);
  await client.connect();
  try {
    if (statements.length > 0) {
      for (const statement of statements) {
        if (!(await runAndPrint(client, statement))) return EXIT_FAILURE;
      }
      return EXIT_OK;
    }
    const prompt = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
    prompt.setPrompt('gatehouse=# ');
    let buffer = '';
    if (process.stdin.isTTY) prompt.prompt();
    for await (const line of prompt) {
      if (buffer === '' && /^\s*\\q\s*$/.test(line)) break;
      buffer += `${line}\n`;
      if (/;\s*$/.test(line)) {
        await runAndPrint(client, buffer);
        buffer = '';
      }
      if (process.stdin.isTTY) prompt.prompt();
    }
    prompt.close();
    return EXIT_OK;
  } finally {
    await client.end();
  }
}

/** Runs one statement and prints it as psql's aligned format does; false when it failed. */
async function runAndPrint(client: pg.Client, statement: string): Promise<boolean> {
  let result: pg.QueryResult;
  try {
    result = await client.query({ text: statement, rowMode: 'array' });
  } catch (error) {
    process.stderr.write(`ERROR:  ${error instanceof Error ? error.message : String(error)}\n`);
    return false;
  }
  for (const one of Array.isArray(result) ? (result as pg.QueryResult[]) : [result]) {
    process.stdout.write(formatResult(one));
  }
  return true;
}

function formatResult(result: pg.QueryResult): string {
  if (result.fields.length === 0) {
    const count = result.command === 'INSERT' ? `0 ${result.rowCount ?? 0}` : `${result.rowCount ?? ''}`;
    return `${result.command} ${count}`.trim().concat('\n');
  }
  const names = result.fields.map((f) => f.name);
  const rows = (result.rows as unknown[][]).map((row) => row.map((cell) => text(cell)));
  const numeric = result.fields.map((f) => NUMERIC_TYPES.has(f.dataTypeID));
  const widths = names.map((name, i) => Math.max(name.length, ...rows.map((row) => (row[i] as string).length)));
  const header = names.map((name, i) => center(name, widths[i] as number)).join(' | ');
  const rule = widths.map((w) => '-'.repeat(w + 2)).join('+');
  const lines = rows.map((row) =>
    row
      .map((cell, i) => (numeric[i] ? cell.padStart(widths[i] as number) : cell.padEnd(widths[i] as number)))
      .join(' | '),
  );
  const count = `(${rows.length} ${rows.length === 1 ? 'row' : 'rows'})`;
  return [` ${header} `, rule, ...lines.map((l) => ` ${l} `.trimEnd()), count, ''].join('\n').concat('\n');
}

const NUMERIC_TYPES = new Set([20, 21, 23, 26, 700, 701, 1700]);

function text(cell: unknown): string {
  if (cell === null || cell === undefined) return '';
  if (cell instanceof Date) return cell.toISOString();
  if (typeof cell === 'object') return JSON.stringify(cell);
  return String(cell);
}

function center(value: string, width: number): string {
  const left = Math.floor((width - value.length) / 2);
  return ' '.repeat(left) + value.padEnd(width - left);
}
