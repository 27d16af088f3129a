import { migrateToLatest } from '../db/index.ts';
import { type Command, EXIT_OK, parseCommandLine, withDatabase } from './shared.ts';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'Apply pending database migrations',
  usage: 'gatehouse migrate',
  help: `Applies every pending migration to DATABASE_URL (embedded PGlite in DATA_DIR when unset).
Safe to run from several processes at once; the server also migrates at start.`,
  async run(args) {
    parseCommandLine(args, {});
    const applied = await withDatabase({ migrate: false }, (database) => migrateToLatest(database.db));
    if (applied.length === 0) process.stdout.write('The database is up to date.\n');
    else process.stdout.write(`Applied ${applied.length} migration(s): ${applied.join(', ')}\n`);
    return EXIT_OK;
  },
};
