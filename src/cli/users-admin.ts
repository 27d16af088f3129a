import type { User } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { type AdminActor, listUsers } from '../flows/admin.ts';
import {
  createUserAsAdmin,
  deleteUserAsAdmin,
  exportUserAsAdmin,
  listSessionsAsAdmin,
  revokeSessionsAsAdmin,
  SET_PASSWORD_LINK_HOURS,
  sendPasswordResetAsAdmin,
  setSuperuserAsAdmin,
} from '../flows/admin-users.ts';
import type { Services } from '../infra/container.ts';
import { findUserByIdentifier } from '../infra/users.ts';
import { readStdinLine } from './prompt.ts';
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

/** The operator at the CLI: no user, no client address. */
const OPERATOR: AdminActor = { userId: null, via: 'cli' };

/** Application refusals (taken email, password policy, last admin …) as a one-line failure, exit 1. */
async function asOperator<T>(work: (services: Services) => Promise<T>): Promise<T> {
  return withServices(work).catch((error: unknown) => {
    if (error instanceof AppError) throw new CliError(describeAppError(error));
    throw error;
  });
}

function onePositional(positionals: string[], what = 'email or username'): string {
  if (positionals.length !== 1 || !positionals[0]?.trim()) {
    throw new CliError(`expected exactly one ${what}, got ${positionals.length}`, EXIT_USAGE);
  }
  return positionals[0];
}

async function targetUser(services: Services, login: string): Promise<User> {
  const user = await findUserByIdentifier(services.db, login);
  if (!user) throw new CliError(`no user with email or username "${login}"`);
  return user;
}

const who = (user: { username: string; email: string }) => `${user.username} <${user.email}>`;

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

export const usersCreateCommand: Command = {
  name: 'users create',
  summary: 'Create a user (mailed a link to choose a password when none is given)',
  usage: 'gatehouse users create <email> <username> [--password-stdin] [--verified] [options]',
  help: `Creates an active user. The registration rules, the password policy and the
breach check apply; a taken email or username is refused.

Without --password-stdin the user has no password yet and is mailed a link to
choose one (valid ${SET_PASSWORD_LINK_HOURS} hours; following it also confirms the address).
With a password and without --verified, the verification mail goes as at
registration (when REQUIRE_EMAIL_VERIFICATION is on).

Options:
  --password-stdin      read the password from the first line of stdin
  --verified            the address counts as verified
  --first-name NAME, --last-name NAME
  --language CODE       BCP 47 tag for the user's mails, e.g. es (default en)

Audited as admin_user_created (via: cli).

Example:
  printf '%s\\n' "$PASSWORD" | gatehouse users create ana@example.com ana --password-stdin --verified`,
  async run(args) {
    const { values, positionals } = parseCommandLine(
      args,
      {
        'password-stdin': { type: 'boolean' },
        verified: { type: 'boolean' },
        'first-name': { type: 'string' },
        'last-name': { type: 'string' },
        language: { type: 'string' },
      },
      true,
    );
    if (positionals.length !== 2) {
      throw new CliError(`expected an email and a username, got ${positionals.length} argument(s)`, EXIT_USAGE);
    }
    const [email, username] = positionals as [string, string];
    const password = values['password-stdin'] ? await readStdinLine() : undefined;
    const user = await asOperator((services) =>
      createUserAsAdmin(
        services,
        {
          email,
          username,
          password,
          email_verified: values.verified === true,
          first_name: values['first-name'],
          last_name: values['last-name'],
          language_code: values.language,
        },
        OPERATOR,
        CLI_CONTEXT,
      ),
    );
    process.stdout.write(`User ${who(user)} created (uuid ${user.uuid}).\n`);
    if (password === undefined) process.stdout.write('A link to choose a password has been mailed to them.\n');
    return EXIT_OK;
  },
};

export const usersDeleteCommand: Command = {
  name: 'users delete',
  summary: 'Delete a user and everything that is theirs alone',
  usage: 'gatehouse users delete <email-or-username>',
  help: `The rules of an account's own deletion: refused while the user is the last
admin of an organization that has other members; organizations the user is
alone in are deleted with them; every session is revoked at once.
Audited as admin_user_deleted (via: cli).`,
  async run(args) {
    const { positionals } = parseCommandLine(args, {}, true);
    const login = onePositional(positionals);
    const user = await asOperator(async (services) => {
      const user = await targetUser(services, login);
      await deleteUserAsAdmin(services, user, OPERATOR, CLI_CONTEXT);
      return user;
    });
    process.stdout.write(`Deleted: ${who(user)}\n`);
    return EXIT_OK;
  },
};

export const usersResetPasswordCommand: Command = {
  name: 'users reset-password',
  summary: 'Mail a user a link to reset their password',
  usage: 'gatehouse users reset-password <email-or-username>',
  help: `Mails the forgot-password link (valid 1 hour, once; older links stop working).
A disabled account is refused. Audited as admin_password_reset_sent (via: cli).`,
  async run(args) {
    const { positionals } = parseCommandLine(args, {}, true);
    const login = onePositional(positionals);
    const user = await asOperator(async (services) => {
      const user = await targetUser(services, login);
      await sendPasswordResetAsAdmin(services, user, OPERATOR, CLI_CONTEXT);
      return user;
    });
    process.stdout.write(`Password reset link mailed: ${who(user)}\n`);
    return EXIT_OK;
  },
};

export const usersSuperuserCommand: Command = {
  name: 'users superuser',
  summary: 'Set (--on) or clear (--off) the superuser flag of a user',
  usage: 'gatehouse users superuser <email-or-username> --on|--off',
  help: `A superuser may use the administration API. Clearing the flag of the last
active superuser is refused. Audited as admin_superuser_changed (via: cli).`,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, { on: { type: 'boolean' }, off: { type: 'boolean' } }, true);
    const login = onePositional(positionals);
    if (values.on === values.off) throw new CliError('give exactly one of --on and --off', EXIT_USAGE);
    const on = values.on === true;
    const user = await asOperator(async (services) =>
      setSuperuserAsAdmin(services, await targetUser(services, login), on, OPERATOR, CLI_CONTEXT),
    );
    process.stdout.write(`${on ? 'Superuser' : 'No longer a superuser'}: ${who(user)}\n`);
    return EXIT_OK;
  },
};

export const usersSessionsCommand: Command = {
  name: 'users sessions',
  summary: "List a user's live sessions",
  usage: 'gatehouse users sessions <email-or-username> [--json]',
  help: `Newest first: id, kind, created, last used, client address and user agent.
--json prints the items of GET /api/v1/sessions. Audited as admin_sessions_viewed (via: cli).`,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, { json: { type: 'boolean' } }, true);
    const login = onePositional(positionals);
    const sessions = await asOperator(async (services) =>
      listSessionsAsAdmin(services, await targetUser(services, login), OPERATOR, CLI_CONTEXT),
    );
    if (values.json) {
      process.stdout.write(json(sessions));
      return EXIT_OK;
    }
    if (sessions.length === 0) process.stdout.write('No live sessions.\n');
    for (const s of sessions) {
      process.stdout.write(
        `${s.id}  ${s.kind.padEnd(7)}  created ${s.created_at}  last used ${s.last_used_at}  ${s.ip_address ?? '-'}  ${s.user_agent ?? '-'}\n`,
      );
    }
    return EXIT_OK;
  },
};

export const usersRevokeSessionsCommand: Command = {
  name: 'users revoke-sessions',
  summary: 'Sign a user out everywhere (or out of one session)',
  usage: 'gatehouse users revoke-sessions <email-or-username> [--session ID]',
  help: `Revokes every live session of the user, or only --session ID (an id
\`gatehouse users sessions\` lists). Refresh tokens stop at once, access tokens on
every instance from their next request. Audited as admin_sessions_revoked (via: cli).`,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, { session: { type: 'string' } }, true);
    const login = onePositional(positionals);
    const session = values.session ?? null;
    const { user, revoked } = await asOperator(async (services) => {
      const user = await targetUser(services, login);
      return { user, revoked: await revokeSessionsAsAdmin(services, user, session, OPERATOR, CLI_CONTEXT) };
    });
    if (!revoked) throw new CliError(`no live session ${session} of ${who(user)}`);
    process.stdout.write(
      session === null ? `Every session revoked: ${who(user)}\n` : `Session ${session} revoked: ${who(user)}\n`,
    );
    return EXIT_OK;
  },
};

export const usersSearchCommand: Command = {
  name: 'users search',
  summary: 'Find users by part of their email, username or name, or by organization',
  usage: 'gatehouse users search [TERM] [--email PART] [--username PART] [--organization UUID] [options]',
  help: `Newest first. TERM matches part of the email, username or name; the options
narrow further (they combine). Case-insensitive.

Options:
  --email PART, --username PART
  --organization UUID   members of that organization
  --limit N             1-100 (default 50)
  --cursor CURSOR       the next page (printed after a full page)
  --json                the page as GET /api/v1/admin/users answers it

Audited as admin_users_viewed (via: cli).`,
  async run(args) {
    const { values, positionals } = parseCommandLine(
      args,
      {
        email: { type: 'string' },
        username: { type: 'string' },
        organization: { type: 'string' },
        limit: { type: 'string' },
        cursor: { type: 'string' },
        json: { type: 'boolean' },
      },
      true,
    );
    if (positionals.length > 1) throw new CliError('expected at most one search term', EXIT_USAGE);
    const limit = values.limit === undefined ? undefined : Number(values.limit);
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 100)) {
      throw new CliError('--limit must be a whole number from 1 to 100', EXIT_USAGE);
    }
    const organization = values.organization;
    if (
      organization !== undefined &&
      !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(organization)
    ) {
      throw new CliError('--organization must be an organization uuid', EXIT_USAGE);
    }
    const page = await asOperator((services) =>
      listUsers(
        services,
        {
          q: positionals[0],
          email: values.email,
          username: values.username,
          organization,
          limit,
          cursor: values.cursor,
        },
        OPERATOR,
        CLI_CONTEXT,
      ),
    );
    if (values.json) {
      process.stdout.write(json(page));
      return EXIT_OK;
    }
    if (page.items.length === 0) process.stdout.write('No users found.\n');
    for (const u of page.items) {
      const flags = [
        u.is_superuser ? 'superuser' : '',
        u.is_active ? '' : 'disabled',
        u.email_verified ? '' : 'unverified',
      ].filter(Boolean);
      process.stdout.write(`${u.uuid}  ${who(u)}${flags.length > 0 ? `  [${flags.join(', ')}]` : ''}\n`);
    }
    if (page.next_cursor) process.stdout.write(`More: --cursor ${page.next_cursor}\n`);
    return EXIT_OK;
  },
};

export const usersExportCommand: Command = {
  name: 'users export',
  summary: "Print a user's data as JSON",
  usage: 'gatehouse users export <email-or-username>',
  help: `Prints {"profile", "organizations", "sessions", "audit_logs"} to stdout, as
GET /api/v1/admin/users/{uuid}/export answers it: no password hash, token hash
or second-factor secret. Audited as admin_user_exported (via: cli).

Example:
  gatehouse users export ana@example.com > ana.json`,
  async run(args) {
    const { positionals } = parseCommandLine(args, {}, true);
    const login = onePositional(positionals);
    const data = await asOperator(async (services) =>
      exportUserAsAdmin(services, await targetUser(services, login), OPERATOR, CLI_CONTEXT),
    );
    process.stdout.write(json(data));
    return EXIT_OK;
  },
};
