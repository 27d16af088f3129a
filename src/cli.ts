/**
 * `gatehouse <command>`: the operator's tool. Reads the same configuration as
 * the server (environment and `.env`). Exit codes: 0 done, 1 the command
 * found a problem, 2 bad command line, 78 bad configuration.
 */
import { readFileSync } from 'node:fs';
import { auditVerifyCommand } from './cli/audit-verify.ts';
import { breachImportCommand } from './cli/breach-import.ts';
import { cleanupCommand } from './cli/cleanup.ts';
import {
  clientsCreateCommand,
  clientsDeleteCommand,
  clientsListCommand,
  clientsRotateSecretCommand,
} from './cli/clients.ts';
import { createSuperuserCommand } from './cli/create-superuser.ts';
import { keysGenerateCommand, keysRotateCommand } from './cli/keys.ts';
import { migrateCommand } from './cli/migrate.ts';
import { psqlCommand } from './cli/psql.ts';
import { CliError, type Command, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './cli/shared.ts';
import { usersDisableCommand, usersEnableCommand, usersMfaResetCommand, usersUnlockCommand } from './cli/users.ts';
import {
  usersCreateCommand,
  usersDeleteCommand,
  usersExportCommand,
  usersResetPasswordCommand,
  usersRevokeSessionsCommand,
  usersSearchCommand,
  usersSessionsCommand,
  usersSuperuserCommand,
} from './cli/users-admin.ts';
import { webhooksListCommand, webhooksReplayCommand } from './cli/webhooks.ts';

const COMMANDS: readonly Command[] = [
  migrateCommand,
  createSuperuserCommand,
  usersUnlockCommand,
  usersDisableCommand,
  usersEnableCommand,
  usersMfaResetCommand,
  usersCreateCommand,
  usersDeleteCommand,
  usersResetPasswordCommand,
  usersSuperuserCommand,
  usersSessionsCommand,
  usersRevokeSessionsCommand,
  usersSearchCommand,
  usersExportCommand,
  clientsCreateCommand,
  clientsListCommand,
  clientsDeleteCommand,
  clientsRotateSecretCommand,
  auditVerifyCommand,
  cleanupCommand,
  breachImportCommand,
  keysGenerateCommand,
  keysRotateCommand,
  webhooksReplayCommand,
  webhooksListCommand,
  psqlCommand,
];

const isHelp = (arg: string | undefined) => arg === '--help' || arg === '-h';

function overview(commands: readonly Command[], heading = 'Commands:'): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `Usage: gatehouse <command> [options]\n\n${heading}\n${lines.join('\n')}\n\nRun \`gatehouse <command> --help\` for a command's options.\n`;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function runCli(argv: string[]): Promise<number> {
  const [first] = argv;
  if (first === undefined) {
    process.stderr.write(overview(COMMANDS));
    return EXIT_USAGE;
  }
  if (isHelp(first) || first === 'help') {
    process.stdout.write(overview(COMMANDS));
    return EXIT_OK;
  }
  if (first === '--version') {
    process.stdout.write(`${version()}\n`);
    return EXIT_OK;
  }

  const command = COMMANDS.find((c) => c.name === argv.slice(0, 2).join(' ')) ?? COMMANDS.find((c) => c.name === first);
  if (!command) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${first} `));
    if (group.length > 0) {
      const wanted = isHelp(argv[1]);
      const text = overview(group, `Subcommands of ${first}:`);
      if (wanted) process.stdout.write(text);
      else {
        const given = argv[1] === undefined ? 'a subcommand is required' : `unknown subcommand "${argv[1]}"`;
        process.stderr.write(`gatehouse: ${given}\n\n${text}`);
      }
      return wanted ? EXIT_OK : EXIT_USAGE;
    }
    process.stderr.write(`gatehouse: unknown command "${first}"\n\n${overview(COMMANDS)}`);
    return EXIT_USAGE;
  }

  const args = argv.slice(command.name.split(' ').length);
  if (args.some(isHelp)) {
    process.stdout.write(`Usage: ${command.usage}\n\n${command.summary}.\n\n${command.help}\n`);
    return EXIT_OK;
  }
  try {
    return await command.run(args);
  } catch (error) {
    if (error instanceof CliError) {
      process.stderr.write(`gatehouse ${command.name}: ${error.message}\n`);
      if (error.exitCode === EXIT_USAGE) process.stderr.write(`Usage: ${command.usage}\n`);
      return error.exitCode;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`gatehouse ${command.name}: unexpected error: ${message}\n`);
    return EXIT_FAILURE;
  }
}

// What the commands write (keys, the embedded database, a breach index) is readable by this user only.
process.umask(0o077);
process.exitCode = await runCli(process.argv.slice(2));
