import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { AppError } from '../../src/domain/errors.ts';
import { createAbuseMetrics } from '../../src/infra/abuse-metrics.ts';
import { AnyBreachChecker, CommonPasswordChecker, PwnedPasswordsChecker, parseRange } from '../../src/infra/breach.ts';
import { BreachIndex, buildBreachIndex } from '../../src/infra/breach-index.ts';
import { createMetrics } from '../../src/infra/metrics.ts';
import { sha1Hex, startRangeServer } from '../fixtures/pwned-range-server.ts';
import { json, logCapture, newUser, startApp, strongPassword, testConfig } from '../helpers.ts';

function serviceDeps() {
  const logs = logCapture();
  const metrics = createAbuseMetrics(createMetrics({ defaultMetrics: false }));
  return { logs, log: pino({ level: 'info' }, logs.stream), metrics };
}

async function counterValue(counter: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> {
  return (await counter.get()).values.reduce((sum, v) => sum + v.value, 0);
}

describe('Pwned Passwords range API checker', () => {
  const breached = strongPassword();
  const padded = strongPassword();
  let server: Awaited<ReturnType<typeof startRangeServer>>;

  before(async () => {
    server = await startRangeServer({ breached: { [breached]: 42 }, padded: [padded] });
  });
  after(() => server.close());

  test('sends only the 5-character SHA-1 prefix, with Add-Padding and a User-Agent', async () => {
    const { log, metrics } = serviceDeps();
    const checker = new PwnedPasswordsChecker({ apiUrl: server.url, failClosed: false, log, metrics });
    server.requests.length = 0;
    assert.equal(await checker.isBreached(breached), true);
    assert.equal(server.requests.length, 1);
    const request = server.requests[0];
    assert.equal(request?.prefix, sha1Hex(breached).slice(0, 5));
    assert.match(request?.prefix ?? '', /^[0-9A-F]{5}$/);
    assert.equal(request?.headers['add-padding'], 'true');
    assert.ok(String(request?.headers['user-agent']).length > 0);
  });

  test('a password absent from its range is not breached, and padded count-0 lines are ignored', async () => {
    const { log, metrics } = serviceDeps();
    const checker = new PwnedPasswordsChecker({ apiUrl: server.url, failClosed: false, log, metrics });
    assert.equal(await checker.isBreached(strongPassword()), false);
    assert.equal(await checker.isBreached(padded), false);
  });

  test('ranges are cached: repeated and concurrent lookups of one prefix send one request', async () => {
    const { log, metrics } = serviceDeps();
    const checker = new PwnedPasswordsChecker({ apiUrl: server.url, failClosed: false, log, metrics });
    server.requests.length = 0;
    const results = await Promise.all([checker.isBreached(breached), checker.isBreached(breached)]);
    assert.deepEqual(results, [true, true]);
    assert.equal(await checker.isBreached(breached), true);
    assert.equal(server.requests.length, 1);
    assert.equal(await counterValue(metrics.breachApiRequests), 1);
  });

  test('the API down fails open by default: accepted, one warning line, a metric', async () => {
    const { log, logs, metrics } = serviceDeps();
    const checker = new PwnedPasswordsChecker({ apiUrl: server.url, failClosed: false, log, metrics });
    server.mode = 'error';
    try {
      assert.equal(await checker.isBreached(breached), false);
      assert.equal(await checker.isBreached(strongPassword()), false);
    } finally {
      server.mode = 'ok';
    }
    assert.equal(await counterValue(metrics.breachCheckFailures), 2);
    const warnings = logs.lines.map((l) => JSON.parse(l)).filter((l) => l.level === 40);
    assert.equal(warnings.length, 1, 'one warning per minute, not one per request');
    assert.match(warnings[0].msg, /breach API unavailable/);
    assert.equal(warnings[0].policy, 'fail_open');
    assert.ok(!logs.lines.some((l) => l.includes(breached) || l.includes(sha1Hex(breached))));
  });

  test('an API that does not answer within the timeout counts as down', async () => {
    const { log, metrics } = serviceDeps();
    const checker = new PwnedPasswordsChecker({
      apiUrl: server.url,
      timeoutMs: 200,
      failClosed: false,
      log,
      metrics,
    });
    server.mode = 'hang';
    try {
      assert.equal(await checker.isBreached(breached), false);
    } finally {
      server.mode = 'ok';
    }
    assert.equal(await counterValue(metrics.breachCheckFailures), 1);
  });

  test('the default timeout is 2 seconds (HIBP_TIMEOUT_MS)', () => {
    assert.equal(testConfig().hibpTimeoutMs, 2000);
  });

  test('fail-closed refuses with 503 SERVICE_UNAVAILABLE and a retry time', async () => {
    const { log, metrics } = serviceDeps();
    const checker = new PwnedPasswordsChecker({ apiUrl: server.url, failClosed: true, log, metrics });
    server.mode = 'error';
    try {
      await assert.rejects(checker.isBreached(strongPassword()), (error: unknown) => {
        assert.ok(error instanceof AppError);
        assert.equal(error.code, 'SERVICE_UNAVAILABLE');
        assert.ok((error.options.retryAfter ?? 0) > 0);
        return true;
      });
    } finally {
      server.mode = 'ok';
    }
  });

  test('a failed range is not cached: the next lookup asks again', async () => {
    const { log, metrics } = serviceDeps();
    const checker = new PwnedPasswordsChecker({ apiUrl: server.url, failClosed: false, log, metrics });
    server.mode = 'error';
    assert.equal(await checker.isBreached(breached), false);
    server.mode = 'ok';
    assert.equal(await checker.isBreached(breached), true);
  });

  test('parseRange keeps suffixes with a count above 0 and rejects lines that are not SUFFIX:COUNT', () => {
    const a = 'A'.repeat(35);
    const b = 'b'.repeat(35);
    const c = 'C'.repeat(35);
    assert.equal(parseRange(`${c}:3\r\n${a}:0\r\n${b}:12\r\n`), `${'B'.repeat(35)}${c}`);
    assert.equal(parseRange(''), '');
    assert.throws(() => parseRange('<html>busy</html>'));
    assert.throws(() => parseRange(`${a}:x`));
  });
});

describe('registration with BREACH_CHECK=api', () => {
  const breached = `Zq7!${randomBytes(6).toString('hex')}Pw#`;
  let server: Awaited<ReturnType<typeof startRangeServer>>;

  before(async () => {
    server = await startRangeServer({ breached: { [breached]: 7 } });
  });
  after(() => server.close());

  const register = (app: Awaited<ReturnType<typeof startApp>>, password: string) =>
    app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser({ password }) });

  test('a password the range API knows answers 422 PASSWORD_BREACHED', async () => {
    const app = await startApp({ BREACH_CHECK: 'api', HIBP_API_URL: server.url });
    try {
      const res = await register(app, breached);
      assert.equal(res.statusCode, 422, res.body);
      assert.equal(json(res).code, 'PASSWORD_BREACHED');
      assert.equal((await register(app, strongPassword())).statusCode, 201);
    } finally {
      await app.close();
    }
  });

  test('with the API down, fail-open registers and fail-closed answers 503 with Retry-After', async () => {
    const open = await startApp({ BREACH_CHECK: 'api', HIBP_API_URL: server.url });
    const closed = await startApp({ BREACH_CHECK: 'api', HIBP_API_URL: server.url, BREACH_FAIL_CLOSED: 'true' });
    server.mode = 'error';
    try {
      assert.equal((await register(open, strongPassword())).statusCode, 201);
      const res = await register(closed, strongPassword());
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(json(res).code, 'SERVICE_UNAVAILABLE');
      assert.ok(Number(res.headers['retry-after']) > 0);
    } finally {
      server.mode = 'ok';
      await open.close();
      await closed.close();
    }
  });
});

describe('offline breach index', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-breach-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('imports the Pwned Passwords download format, unsorted, CRLF, any case; count 0 and junk are skipped', async () => {
    const known = ['correct horse battery staple', 'Tr0ub4dor&3', strongPassword()];
    const padding = strongPassword();
    const lines = [
      `${sha1Hex(known[1] as string)}:12`,
      `${sha1Hex(known[0] as string).toLowerCase()}:3`,
      `${sha1Hex(padding)}:0`,
      'not a hash line',
      `${sha1Hex(known[2] as string)}`,
      `${sha1Hex(known[1] as string)}:12`,
    ];
    const input = join(dir, 'pwned.txt');
    writeFileSync(input, lines.join('\r\n'));
    const output = join(dir, 'pwned.idx');
    const result = buildBreachIndex(input, output);
    assert.equal(result.format, 'sha1');
    assert.equal(result.lines, 6);
    assert.equal(result.skipped, 2);
    assert.equal(result.entries, 3, 'the duplicate is stored once');
    assert.equal(result.bytes, statSync(output).size);

    const index = BreachIndex.open(output);
    try {
      for (const password of known) assert.equal(await index.contains(password), true, password);
      assert.equal(await index.contains(padding), false);
      assert.equal(await index.contains(strongPassword()), false);
    } finally {
      index.close();
    }
  });

  test('imports plain passwords, one per line', async () => {
    const input = join(dir, 'plain.txt');
    writeFileSync(input, 'hunter2\nswordfish\r\n\nMünchen-2024!\nlast line without newline');
    const output = join(dir, 'plain.idx');
    const result = buildBreachIndex(input, output);
    assert.equal(result.format, 'plain');
    assert.equal(result.entries, 4);
    const index = BreachIndex.open(output);
    try {
      for (const password of ['hunter2', 'swordfish', 'München-2024!', 'last line without newline']) {
        assert.equal(await index.contains(password), true, password);
      }
      assert.equal(await index.contains('Hunter2'), false);
      assert.equal(await index.contains(''), false);
    } finally {
      index.close();
    }
  });

  test('every one of 300 000 random hashes is found, and absent ones are not', async () => {
    const count = 300_000;
    const hashes = randomBytes(count * 20);
    const input = join(dir, 'random.txt');
    const text: string[] = [];
    for (let i = 0; i < count; i++) text.push(`${hashes.toString('hex', i * 20, i * 20 + 20).toUpperCase()}:1`);
    writeFileSync(input, text.join('\n'));
    const output = join(dir, 'random.idx');
    const result = buildBreachIndex(input, output, { format: 'sha1' });
    assert.equal(result.entries, count);
    const index = BreachIndex.open(output);
    try {
      assert.ok(index.fanoutBits > 8, 'a bigger corpus gets a finer fan-out table');
      assert.ok(index.bytes / index.entries < 5.2, `${index.bytes / index.entries} bytes per hash`);
      for (let i = 0; i < count; i += 97) {
        assert.equal(await index.containsSha1(hashes.subarray(i * 20, i * 20 + 20)), true, `hash ${i}`);
      }
      for (let i = 0; i < 2000; i++) assert.equal(await index.containsSha1(randomBytes(20)), false);
    } finally {
      index.close();
    }
  });

  test('a file that is not an index, or a truncated one, is refused with a message saying how to build one', () => {
    const notIndex = join(dir, 'not-an-index.txt');
    writeFileSync(notIndex, 'password\n123456\n');
    assert.throws(() => BreachIndex.open(notIndex), /not a Gatehouse breach index.*gatehouse breach import/);

    const input = join(dir, 'small.txt');
    writeFileSync(input, 'alpha\nbeta\ngamma\n');
    const output = join(dir, 'small.idx');
    buildBreachIndex(input, output);
    truncateSync(output, statSync(output).size - 3);
    assert.throws(() => BreachIndex.open(output), /truncated or damaged/);
  });

  test('the import replaces the output atomically and leaves no temporary files', () => {
    const input = join(dir, 'atomic.txt');
    writeFileSync(input, 'one\ntwo\n');
    const output = join(dir, 'atomic.idx');
    writeFileSync(output, 'old contents');
    buildBreachIndex(input, output);
    assert.equal(readFileSync(output).subarray(0, 8).toString('latin1'), 'GHBRIDX1');
    assert.deepEqual(
      readdirSync(dir).filter((name) => name.startsWith('.breach-import-')),
      [],
    );
  });

  test('registration with BREACH_CHECK=offline and BREACH_CORPUS_PATH refuses a password in the index', async () => {
    const breached = `Yw5$${randomBytes(6).toString('hex')}Lm@`;
    const input = join(dir, 'corpus.txt');
    writeFileSync(input, `${createHash('sha1').update(breached).digest('hex').toUpperCase()}:99\n`);
    const output = join(dir, 'corpus.idx');
    buildBreachIndex(input, output);
    const app = await startApp({ BREACH_CHECK: 'offline', BREACH_CORPUS_PATH: output });
    try {
      const refused = await app.inject({
        method: 'POST',
        url: '/api/v1/register',
        payload: newUser({ password: breached }),
      });
      assert.equal(refused.statusCode, 422, refused.body);
      assert.equal(json(refused).code, 'PASSWORD_BREACHED');
      // The bundled common-password list still runs first.
      const common = await app.inject({
        method: 'POST',
        url: '/api/v1/register',
        payload: newUser({ password: 'P@ssw0rd' }),
      });
      assert.equal(common.statusCode, 422);
      const ok = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      assert.equal(ok.statusCode, 201, ok.body);
    } finally {
      await app.close();
    }
  });

  test('a BREACH_CORPUS_PATH that is missing or not an index stops start-up naming the variable', async () => {
    await assert.rejects(
      startApp({ BREACH_CHECK: 'offline', BREACH_CORPUS_PATH: join(dir, 'missing.idx') }),
      /BREACH_CORPUS_PATH/,
    );
    const notIndex = join(dir, 'words.txt');
    writeFileSync(notIndex, 'password\n');
    await assert.rejects(startApp({ BREACH_CHECK: 'offline', BREACH_CORPUS_PATH: notIndex }), /BREACH_CORPUS_PATH/);
  });
});

describe('combined checkers', () => {
  test('AnyBreachChecker answers breached when any checker does, and stops at the first', async () => {
    let asked = 0;
    const counting = {
      isBreached: async () => {
        asked++;
        return false;
      },
    };
    const checker = new AnyBreachChecker([new CommonPasswordChecker(), counting]);
    assert.equal(await checker.isBreached('P@ssw0rd'), true);
    assert.equal(asked, 0);
    assert.equal(await checker.isBreached(strongPassword()), false);
    assert.equal(asked, 1);
  });
});
