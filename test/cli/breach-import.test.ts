import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BreachIndex } from '../../src/infra/breach-index.ts';
import { sha1Hex } from '../fixtures/pwned-range-server.ts';
import { runCli } from './support.ts';

describe('gatehouse breach import', () => {
  let dir: string;
  let env: Record<string, string>;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-breach-cli-'));
    env = { ENVIRONMENT: 'test', SECRET_KEY: randomBytes(32).toString('base64url'), DATA_DIR: dir };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('imports a Pwned Passwords file and says how to use the index', async () => {
    const input = join(dir, 'pwned-passwords-sha1.txt');
    writeFileSync(
      input,
      [`${sha1Hex('hunter2')}:17043`, `${sha1Hex('swordfish')}:9000`, `${sha1Hex('x')}:0`].join('\r\n'),
    );
    const output = join(dir, 'index.bin');
    const res = await runCli(['breach', 'import', input, '--output', output], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /Indexed 2 distinct hashes from 3 sha1 lines \(1 skipped/);
    assert.match(res.stdout, /bytes per hash/);
    assert.match(res.stdout, new RegExp(`BREACH_CHECK=offline BREACH_CORPUS_PATH=${output}`));
    const index = BreachIndex.open(output);
    try {
      assert.equal(await index.contains('hunter2'), true);
      assert.equal(await index.contains('x'), false);
    } finally {
      index.close();
    }
  });

  test('plain passwords go to BREACH_CORPUS_PATH when no --output is given', async () => {
    const input = join(dir, 'rockyou-sample.txt');
    writeFileSync(input, 'letmein\ndragon\n');
    const output = join(dir, 'from-env.bin');
    const res = await runCli(['breach', 'import', input, '--format', 'plain'], { ...env, BREACH_CORPUS_PATH: output });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /Indexed 2 distinct hashes from 2 plain lines/);
    assert.ok(existsSync(output));
  });

  test('wrong use exits 2 with a message; a missing file exits 1', async () => {
    const usage = await runCli(['breach', 'import'], env);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /exactly one FILE/);
    const format = await runCli(['breach', 'import', 'x.txt', '--format', 'ntlm'], env);
    assert.equal(format.code, 2);
    assert.match(format.stderr, /--format must be one of auto, sha1, plain/);
    const missing = await runCli(['breach', 'import', join(dir, 'nope.txt')], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such file/);
  });
});
