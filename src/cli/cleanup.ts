import { purgeExpired } from '../infra/housekeeping.ts';
import { type Command, EXIT_OK, parseCommandLine, withDatabase } from './shared.ts';

export const cleanupCommand: Command = {
  name: 'cleanup',
  summary: 'Delete expired sessions, spent tokens and records past their retention, once',
  usage: 'gatehouse cleanup [--json]',
  help: `Runs the pass the server runs every HOUSEKEEPING_INTERVAL_MINUTES: deletes
sessions and one-time tokens a day past their expiry or use, lockout rows whose
failures are forgotten, login attempts older than LOGIN_ATTEMPTS_RETENTION_DAYS
and delivered or failed mail older than MAIL_RETENTION_DAYS. The audit log is
never deleted. Safe to run while servers are running.

Options:
  --json   print the number of rows deleted per table as one JSON object`,
  async run(args) {
    const { values } = parseCommandLine(args, { json: { type: 'boolean' } });
    const purged = await withDatabase({ migrate: true }, (database, config) =>
      purgeExpired(database.db, new Date(), {
        loginAttemptsDays: config.loginAttemptsRetentionDays,
        mailDays: config.mailRetentionDays,
      }),
    );
    if (values.json) {
      process.stdout.write(`${JSON.stringify(purged)}\n`);
    } else {
      const lines = Object.entries(purged).map(([table, count]) => `  ${table}: ${count}`);
      process.stdout.write(`Deleted:\n${lines.join('\n')}\n`);
    }
    return EXIT_OK;
  },
};
