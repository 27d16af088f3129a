/**
 * The README's walkthrough runs top to bottom as printed, against a fresh
 * `npm start` on the embedded default: its shell blocks are taken from
 * README.md between the walkthrough markers and run in one bash, in a
 * directory whose ./data is the server's. Every curl in it must be answered
 * below 400, so the README cannot drift from the service again.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, waitUntil } from '../support/ports.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** The ```sh blocks between `<!-- walkthrough:start -->` and `<!-- walkthrough:end -->`. */
function walkthroughBlocks(readme: string): string[] {
  const start = readme.indexOf('<!-- walkthrough:start -->');
  const end = readme.indexOf('<!-- walkthrough:end -->');
  assert.ok(start >= 0 && end > start, 'README.md marks its walkthrough');
  return [...readme.slice(start, end).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] as string);
}

describe('the README walkthrough', () => {
  let dir: string;
  let server: ChildProcess;
  let base: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-readme-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    // As the quick start: the development default, embedded database in ./data, mail to ./data/mail.
    server = spawn(process.execPath, [join(ROOT, 'src/main.ts')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, PORT: String(port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    server.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    await waitUntil(
      `gatehouse on ${base}`,
      async () => {
        if (server.exitCode !== null) throw new Error(`gatehouse exited: ${stderr}`);
        return (await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1_000) })).ok;
      },
      90_000,
    );
  });
  after(async () => {
    if (server && server.exitCode === null) {
      const exited = once(server, 'exit');
      server.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('every block runs in order, as printed, and every request succeeds', async () => {
    const blocks = walkthroughBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'));
    assert.ok(blocks.length >= 8, `found ${blocks.length} blocks`);
    const statuses = join(dir, 'statuses.log');
    const script = [
      'set -euo pipefail',
      // `npx gatehouse` as from the repository (the walkthrough runs in the server's directory here).
      `npx() { if [ "$1" = gatehouse ]; then shift; node ${JSON.stringify(join(ROOT, 'bin/gatehouse.mjs'))} "$@"; else command npx "$@"; fi; }`,
      // curl as printed, and each answer's status noted; a status of 400 or more stops the walkthrough,
      // except where the README itself says the answer is an error (`# 401 …` on the same line).
      `curl() { local out status; out=$(command curl -w '\\n%{http_code}' "$@"); status=\${out##*$'\\n'}; printf '%s' "\${out%$'\\n'*}"; echo "$status" >> ${JSON.stringify(statuses)}; if [ "$status" -ge 400 ] && [ -z "\${EXPECT_ERROR:-}" ]; then echo "HTTP $status for: $*" >&2; return 1; fi; }`,
      ...blocks.map((block) =>
        block
          .replaceAll('http://localhost:8000', base)
          .split('\n')
          .map((line) => {
            const expected = /#\s*(4\d\d) [A-Z_]+/.exec(line);
            return expected ? `EXPECT_ERROR=${expected[1]} ${line}` : line;
          })
          .join('\n'),
      ),
    ].join('\n');
    writeFileSync(join(dir, 'walkthrough.sh'), script);
    const run = spawn('bash', [join(dir, 'walkthrough.sh')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    run.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    run.stderr?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const [code] = (await once(run, 'exit')) as [number | null];
    assert.equal(code, 0, out);
    const seen = readFileSync(statuses, 'utf8').trim().split('\n');
    const printedCurls = blocks.join('\n').match(/curl -s/g)?.length ?? 0;
    assert.equal(seen.length, printedCurls, `every curl of the README ran (${seen.join(' ')})`);
    assert.ok(seen.includes('201'), 'registrations answered 201');
    assert.equal(seen.filter((s) => s === '401').length, 2, 'the two requests the README says are refused, were');
    assert.match(out, /\(\d+ rows?\)/, 'gatehouse psql printed rows');
  });
});
