import { verifyAuditChain } from '../infra/audit-chain.ts';
import { type Command, EXIT_FAILURE, EXIT_OK, parseCommandLine, progress, withDatabase } from './shared.ts';

export const auditVerifyCommand: Command = {
  name: 'audit verify',
  summary: 'Check the audit log hash chain for altered, inserted or deleted rows',
  usage: 'gatehouse audit verify [--json]',
  help: `Walks audit_logs in sealing order and recomputes every row's SHA-256 link.
Reports the first row that was altered, inserted or deleted and exits 1;
exits 0 when the chain is intact. Rows written in the last few seconds may
not be sealed yet: they are counted, not checked.

Options:
  --json   print the result as one JSON object`,
  async run(args) {
    const { values } = parseCommandLine(args, { json: { type: 'boolean' } });
    const bar = progress('Verifying');
    const result = await withDatabase({ migrate: false }, (database) =>
      verifyAuditChain(database.db, { onStart: (total) => bar.start(total), onProgress: (done) => bar.update(done) }),
    ).finally(() => bar.stop());

    if (values.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else if (result.ok) {
      process.stdout.write(
        `Audit log intact: ${result.checked} sealed row(s) verified, ${result.unsealed} not sealed yet.\n` +
          `Chain head: seal ${result.head.seq}, hash ${result.head.hash}\n`,
      );
    } else {
      process.stdout.write(`Audit log TAMPERED (${result.problem?.kind}): ${result.problem?.message}\n`);
      process.stdout.write(`${result.checked} row(s) before it verified.\n`);
    }
    return result.ok ? EXIT_OK : EXIT_FAILURE;
  },
};
