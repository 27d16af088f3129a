import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Started } from './support.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BROWSER_FILES = [
  'test/browser/accessibility.test.ts',
  'test/browser/journey.test.ts',
  'test/browser/mfa.test.ts',
];
/**
 * Far more than the files need to start a Gatehouse each and fail (under
 * 40 s on two busy cores); a file held open by a server runs into it.
 */
const DEADLINE_MS = 150_000;
/** Each run's test: longer than the deadline, which ends it with a clearer message. */
const RUN = { timeout: DEADLINE_MS + 60_000 };

interface Run {
  code: number | null;
  /** True when the run had not ended by itself at the deadline and was killed. */
  killed: boolean;
  output: string;
}

/**
 * `node --test` on the Chromium test files in a runner of its own (its own
 * process group, so that a deadline kills the files' processes too), with
 * `env` instead of this run's CI, CHROMIUM_PATH and database settings.
 */
function runBrowserFiles(env: Record<string, string>): Promise<Run> {
  const inherited = { ...process.env };
  for (const name of [
    'NODE_TEST_CONTEXT',
    'CI',
    'CHROMIUM_PATH',
    'DATABASE_URL',
    'REDIS_URL',
    'GATEHOUSE_TEST_OWN_DATABASE',
  ]) {
    delete inherited[name];
  }
  const child = spawn(
    process.execPath,
    ['--test', '--test-reporter=spec', '--test-concurrency=2', '--test-timeout=120000', ...BROWSER_FILES],
    { cwd: ROOT, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output += chunk;
  });
  let killed = false;
  const deadline = setTimeout(() => {
    killed = true;
    process.kill(-(child.pid as number), 'SIGKILL');
  }, DEADLINE_MS);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(deadline);
      resolve({ code, killed, output });
    });
  });
}

function count(text: string, part: string): number {
  return text.split(part).length - 1;
}

/**
 * `npm test` on a machine without Chromium: the browser files skip with one
 * notice saying how to enable them, fail in CI, and never hang, also when
 * the launch fails after Gatehouse is already listening.
 */
describe('browser test files without a working Chromium', () => {
  test(
    'no Chromium: every file skips, the notice of what was skipped and how to enable it printed once',
    RUN,
    async () => {
      const run = await runBrowserFiles({ CHROMIUM_PATH: '/nonexistent' });
      assert.equal(run.killed, false, run.output);
      assert.equal(run.code, 0, run.output);
      assert.equal(count(run.output, 'Browser tests skipped'), 1, run.output);
      assert.match(
        run.output,
        /Browser tests skipped, no Chromium at \/nonexistent: test\/browser\/accessibility\.test\.ts, test\/browser\/email-change\.test\.ts, test\/browser\/email-sign-in\.test\.ts, test\/browser\/journey\.test\.ts, test\/browser\/mfa\.test\.ts, test\/browser\/oidc\.test\.ts, test\/browser\/passkeys\.test\.ts, test\/browser\/sso\.test\.ts\.\nTo run them: apt-get install chromium \(or set CHROMIUM_PATH to a Chromium binary\)\./,
      );
      assert.equal(count(run.output, '# needs Chromium, none at /nonexistent'), BROWSER_FILES.length, run.output);
      assert.match(run.output, /ℹ fail 0/);
    },
  );

  test('no Chromium with CI=true: every file fails, saying why and how to fix it', RUN, async () => {
    const run = await runBrowserFiles({ CHROMIUM_PATH: '/nonexistent', CI: 'true' });
    assert.equal(run.killed, false, `the run did not end by itself:\n${run.output}`);
    assert.equal(run.code, 1, run.output);
    assert.doesNotMatch(run.output, /Browser tests skipped|# needs Chromium/);
    const why =
      'Chromium is required in CI (CI=true), but there is none at /nonexistent: apt-get install chromium (or set CHROMIUM_PATH to a Chromium binary)';
    assert.equal(count(run.output, why), BROWSER_FILES.length, run.output);
  });

  test(
    'a Chromium that fails to launch fails every file, and each process ends with its Gatehouse closed',
    RUN,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'gatehouse-chromium-'));
      const failing = join(dir, 'chromium');
      writeFileSync(failing, '#!/bin/sh\necho "this is no browser" >&2\nexit 1\n');
      chmodSync(failing, 0o755);
      const run = await runBrowserFiles({ CHROMIUM_PATH: failing }).finally(() => rmSync(dir, { recursive: true }));
      assert.equal(run.killed, false, `the run did not end by itself:\n${run.output}`);
      assert.equal(run.code, 1, run.output);
      assert.equal(count(run.output, 'browserType.launch: '), BROWSER_FILES.length, run.output);
      assert.match(run.output, /this is no browser/);
    },
  );

  test('Started closes what did start, the last first, whatever failed before', async () => {
    const started = new Started();
    const closed: string[] = [];
    await started.start(
      async () => 'gatehouse',
      async (name) => {
        closed.push(name);
      },
    );
    await started.start(
      async () => 'mail server',
      async () => {
        throw new Error('the mail server would not stop');
      },
    );
    await started.start(
      async () => 'browser',
      async (name) => {
        closed.push(name);
      },
    );
    await assert.rejects(
      started.start(
        async () => {
          throw new Error('the second browser failed to launch');
        },
        async () => {
          closed.push('never started');
        },
      ),
      /failed to launch/,
    );
    await assert.rejects(started.closeAll(), /the mail server would not stop/);
    assert.deepEqual(closed, ['browser', 'gatehouse']);
    await started.closeAll();
    assert.deepEqual(closed, ['browser', 'gatehouse'], 'nothing is closed twice');
  });
});
