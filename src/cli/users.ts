import { AppError } from '../domain/errors.ts';
import { type AdminUserChanges, updateUserAsAdmin } from '../flows/admin.ts';
import { resetMfaAsAdmin } from '../flows/mfa.ts';
import { findUserByIdentifier } from '../infra/users.ts';
import {
  CLI_CONTEXT,
  CliError,
  type Command,
  describeAppError,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  parseCommandLine,
  withServices,
} from './shared.ts';

function userCommand(
  verb: 'unlock' | 'disable' | 'enable',
  summary: string,
  details: string,
  changes: AdminUserChanges,
  done: string,
): Command {
  return {
    name: `users ${verb}`,
    summary,
    usage: `gatehouse users ${verb} <email-or-username>`,
    help: `${details}\nAudited as admin_user_updated (via: cli).`,
    async run(args) {
      const { positionals } = parseCommandLine(args, {}, true);
      if (positionals.length !== 1 || !positionals[0]?.trim()) {
        throw new CliError(`expected exactly one email or username, got ${positionals.length}`, EXIT_USAGE);
      }
      const login = positionals[0];
      return withServices(async (services) => {
        const user = await findUserByIdentifier(services.db, login);
        if (!user) throw new CliError(`no user with email or username "${login}"`);
        try {
          await updateUserAsAdmin(services, user, changes, { userId: null, via: 'cli' }, CLI_CONTEXT);
        } catch (error) {
          if (error instanceof AppError) throw new CliError(describeAppError(error), EXIT_FAILURE);
          throw error;
        }
        process.stdout.write(`${done}: ${user.username} <${user.email}>\n`);
        return EXIT_OK;
      });
    },
  };
}

export const usersUnlockCommand = userCommand(
  'unlock',
  'Clear the login lockout of a user',
  'Clears the lockout (and the failure counts) of the account, from every source.',
  { unlock: true },
  'Unlocked',
);

export const usersDisableCommand = userCommand(
  'disable',
  'Disable a user and revoke all their sessions',
  'Sets is_active to false: login answers 403 ACCOUNT_DISABLED and every session\nis revoked at once, access tokens included.',
  { is_active: false },
  'Disabled',
);

export const usersEnableCommand = userCommand(
  'enable',
  'Enable a disabled user',
  'Sets is_active to true; the user can log in again.',
  { is_active: true },
  'Enabled',
);

export const usersMfaResetCommand: Command = {
  name: 'users mfa-reset',
  summary: "Turn a user's second factor off",
  usage: 'gatehouse users mfa-reset <email-or-username>',
  help: 'For a user who lost their authenticator app and backup codes: removes the TOTP\nsecret and the backup codes; the password alone signs in again. The user is mailed.\nAudited as mfa_reset_by_admin (via: cli).',
  async run(args) {
    const { positionals } = parseCommandLine(args, {}, true);
    if (positionals.length !== 1 || !positionals[0]?.trim()) {
      throw new CliError(`expected exactly one email or username, got ${positionals.length}`, EXIT_USAGE);
    }
    const login = positionals[0];
    return withServices(async (services) => {
      const user = await findUserByIdentifier(services.db, login);
      if (!user) throw new CliError(`no user with email or username "${login}"`);
      const removed = await resetMfaAsAdmin(services, user, { userId: null, via: 'cli' }, CLI_CONTEXT);
      process.stdout.write(
        removed
          ? `Second factor turned off: ${user.username} <${user.email}>\n`
          : `No second factor was on: ${user.username} <${user.email}>\n`,
      );
      return EXIT_OK;
    });
  },
};
