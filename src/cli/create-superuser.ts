import { AppError } from '../domain/errors.ts';
import { createSuperuser } from '../flows/admin.ts';
import { ask, askHidden, readStdinLine } from './prompt.ts';
import {
  CLI_CONTEXT,
  CliError,
  type Command,
  describeAppError,
  EXIT_OK,
  EXIT_USAGE,
  parseCommandLine,
  withServices,
} from './shared.ts';

export const createSuperuserCommand: Command = {
  name: 'create-superuser',
  summary: 'Create a superuser account (can use the administration API)',
  usage: 'gatehouse create-superuser [--email EMAIL] [--username NAME] [--password-stdin] [options]',
  help: `Creates an active superuser whose email counts as verified. The
registration rules and the full password policy (and breach check) apply.
On a terminal, missing values are prompted for (the password twice, hidden).

Options:
  --email EMAIL         the account's email address
  --username NAME       3-50 letters, digits, - or _
  --password-stdin      read the password from the first line of stdin
  --password PASSWORD   the password on the command line (visible to other
                        local users in the process list; prefer the above)
  --first-name NAME, --last-name NAME

Example:
  printf '%s\\n' "$ADMIN_PASSWORD" | gatehouse create-superuser \\
    --email admin@example.com --username admin --password-stdin`,
  async run(args) {
    const { values } = parseCommandLine(args, {
      email: { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      'password-stdin': { type: 'boolean' },
      'first-name': { type: 'string' },
      'last-name': { type: 'string' },
    });
    const interactive = process.stdin.isTTY === true;
    const required = async (value: string | undefined, flag: string, question: string) => {
      if (value !== undefined) return value;
      if (!interactive) throw new CliError(`--${flag} is required when not run on a terminal`, EXIT_USAGE);
      return ask(question);
    };
    if (values.password !== undefined && values['password-stdin']) {
      throw new CliError('use either --password or --password-stdin, not both', EXIT_USAGE);
    }
    const email = await required(values.email, 'email', 'Email: ');
    const username = await required(values.username, 'username', 'Username: ');
    let password = values.password;
    if (values['password-stdin']) password = await readStdinLine();
    if (password === undefined) {
      if (!interactive) throw new CliError('--password-stdin is required when not run on a terminal', EXIT_USAGE);
      password = await askHidden('Password: ');
      if ((await askHidden('Password (again): ')) !== password) throw new CliError('the passwords do not match');
    } else if (values.password !== undefined) {
      process.stderr.write('warning: --password is visible in the process list; prefer --password-stdin\n');
    }

    const user = await withServices((services) =>
      createSuperuser(
        services,
        { email, username, password, first_name: values['first-name'], last_name: values['last-name'] },
        CLI_CONTEXT,
      ),
    ).catch((error: unknown) => {
      if (error instanceof AppError) throw new CliError(describeAppError(error));
      throw error;
    });
    process.stdout.write(`Superuser ${user.username} <${user.email}> created (uuid ${user.uuid}).\n`);
    return EXIT_OK;
  },
};
