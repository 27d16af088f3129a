import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildBreachIndex, type CorpusFormat } from '../infra/breach-index.ts';
import { CliError, type Command, EXIT_OK, EXIT_USAGE, parseCommandLine, progress, readConfig } from './shared.ts';

const FORMATS = ['auto', 'sha1', 'plain'] as const;

export const breachImportCommand: Command = {
  name: 'breach import',
  summary: 'Build the offline breached-password index from a corpus file',
  usage: 'gatehouse breach import FILE [--output PATH] [--format auto|sha1|plain]',
  help: `Reads FILE, either the Pwned Passwords download format (one "SHA1:COUNT" per
line, sorted or not; lines with count 0 are padding and skipped) or plain
passwords (one per line), and writes a compact on-disk index: about 5 bytes
per distinct hash, looked up with one small read per password.

Options:
  --output PATH   where to write the index (default: BREACH_CORPUS_PATH, else
                  DATA_DIR/breach-index.bin); replaced atomically
  --format F      auto (default: detected from the first line), sha1 or plain

Then run the server with BREACH_CHECK=offline BREACH_CORPUS_PATH=PATH.`,
  async run(args) {
    const { values, positionals } = parseCommandLine(
      args,
      { output: { type: 'string', short: 'o' }, format: { type: 'string', default: 'auto' } },
      true,
    );
    if (positionals.length !== 1) throw new CliError('expected exactly one FILE to import', EXIT_USAGE);
    const input = positionals[0] as string;
    const format = values.format as (typeof FORMATS)[number];
    if (!FORMATS.includes(format)) throw new CliError(`--format must be one of ${FORMATS.join(', ')}`, EXIT_USAGE);
    if (!existsSync(input)) throw new CliError(`${input}: no such file`);
    const config = readConfig();
    const output = resolve(values.output ?? config.breachCorpusPath ?? join(config.dataDir, 'breach-index.bin'));

    const bars = { reading: progress('Reading'), writing: progress('Writing') };
    let phase: keyof typeof bars | undefined;
    const result = buildBreachIndex(input, output, {
      format: format as CorpusFormat | 'auto',
      onProgress: ({ phase: next, done, total }) => {
        if (phase !== next) {
          if (phase) bars[phase].stop();
          phase = next;
          bars[next].start(total);
        }
        bars[next].update(done);
      },
    });
    if (phase) bars[phase].stop();

    const perHash = result.entries > 0 ? (result.bytes / result.entries).toFixed(2) : '0';
    process.stdout.write(
      `Indexed ${result.entries} distinct hashes from ${result.lines} ${result.format} lines` +
        `${result.skipped > 0 ? ` (${result.skipped} skipped: malformed or count 0)` : ''}.\n` +
        `Wrote ${output}: ${result.bytes} bytes, ${perHash} bytes per hash.\n` +
        `Use it with BREACH_CHECK=offline BREACH_CORPUS_PATH=${output}\n`,
    );
    return EXIT_OK;
  },
};
