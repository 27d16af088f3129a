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

describe('range API circuit breaker and offline fallback', () => {
  const apiBreached = `Rb8%${randomBytes(6).toString('hex')}Tk^`;
  let server: Awaited<ReturnType<typeof startRangeServer>>;

  before(async () => {
    server = await startRangeServer({ breached: { [apiBreached]: 5 } });
  });
  after(() => server.close());

  function countingFallback(breached: string) {
    const asked: string[] = [];
    return {
      asked,
      checker: {
        isBreached: async (password: string) => {
          asked.push(password);
          return password === breached;
        },
      },
    };
  }

  test('after N failures the API is skipped for the cool-down, then one request tries it again', async () => {
    const { log, logs, metrics } = serviceDeps();
    const offlineBreached = strongPassword();
    const fallback = countingFallback(offlineBreached);
    let now = 1_000_000;
    const checker = new PwnedPasswordsChecker({
      apiUrl: server.url,
      failClosed: true,
      fallback: fallback.checker,
      circuitFailures: 2,
      circuitCooldownMs: 30_000,
      now: () => now,
      log,
      metrics,
    });
    server.requests.length = 0;
    server.mode = 'error';
    try {
      // Two failures: each asked the API, each answered by the fallback (no 503 despite fail-closed).
      assert.equal(await checker.isBreached(strongPassword()), false);
      assert.equal(checker.circuit, 'closed');
      assert.equal(await checker.isBreached(offlineBreached), true);
      assert.equal(checker.circuit, 'open');
      assert.equal(server.requests.length, 2);
      // Open: ten checks, no request; the fallback answers each.
      for (let i = 0; i < 10; i++) assert.equal(await checker.isBreached(strongPassword()), false);
      assert.equal(await checker.isBreached(offlineBreached), true);
      assert.equal(server.requests.length, 2, 'no request while the circuit is open');
      assert.equal(fallback.asked.length, 13);
      // Cool-down over, API still down: one trial request, and the circuit opens again at once.
      now += 30_000;
      assert.equal(checker.circuit, 'half-open');
      assert.equal(await checker.isBreached(strongPassword()), false);
      assert.equal(server.requests.length, 3);
      assert.equal(checker.circuit, 'open');
      assert.equal(await checker.isBreached(strongPassword()), false);
      assert.equal(server.requests.length, 3);
      // Cool-down over, API back: the trial succeeds and closes the circuit.
      now += 30_000;
      server.mode = 'ok';
      assert.equal(await checker.isBreached(apiBreached), true);
      assert.equal(checker.circuit, 'closed');
      assert.equal(await checker.isBreached(strongPassword()), false);
      assert.equal(server.requests.length, 5);
    } finally {
      server.mode = 'ok';
    }
    const messages = logs.lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    assert.ok(messages.some((m) => m.level === 40 && /not asked for 30 s, the offline index answers/.test(m.msg)));
    assert.ok(messages.some((m) => m.level === 30 && /answers again/.test(m.msg)));
    assert.ok(!logs.lines.some((l) => l.includes(offlineBreached) || l.includes(apiBreached)));
  });

  test('an API that hangs costs one timeout, then nothing while the circuit is open', async () => {
    const { log, metrics } = serviceDeps();
    const checker = new PwnedPasswordsChecker({
      apiUrl: server.url,
      timeoutMs: 300,
      failClosed: false,
      circuitFailures: 1,
      log,
      metrics,
    });
    server.requests.length = 0;
    server.mode = 'hang';
    try {
      const first = performance.now();
      assert.equal(await checker.isBreached(strongPassword()), false);
      assert.ok(performance.now() - first >= 250);
      const second = performance.now();
      for (let i = 0; i < 20; i++) assert.equal(await checker.isBreached(strongPassword()), false);
      assert.ok(performance.now() - second < 250, 'open circuit answers without waiting');
      assert.equal(server.requests.length, 1);
    } finally {
      server.mode = 'ok';
    }
  });

  test('the defaults: 3 failures, 30 s cool-down (HIBP_CIRCUIT_FAILURES, HIBP_CIRCUIT_COOLDOWN_SECONDS)', () => {
    const config = testConfig();
    assert.equal(config.hibpCircuitFailures, 3);
    assert.equal(config.hibpCircuitCooldownSeconds, 30);
  });

  test('registration: the API when it answers, the BREACH_CORPUS_PATH index once it is gone; the mode is logged', async () => {
    const own = await startRangeServer({ breached: { [apiBreached]: 5 } });
    let ownClosed = false;
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-breach-fallback-'));
    const indexBreached = `Wc3&${randomBytes(6).toString('hex')}Hn*`;
    // A second one, whose range the API was never asked for (a cached range answers as the API did).
    const indexBreachedLater = `Gd4&${randomBytes(6).toString('hex')}Jp*`;
    writeFileSync(join(dir, 'corpus.txt'), `${sha1Hex(indexBreached)}:12\n${sha1Hex(indexBreachedLater)}:3\n`);
    buildBreachIndex(join(dir, 'corpus.txt'), join(dir, 'corpus.idx'));
    const logs = logCapture();
    const app = await startApp(
      {
        BREACH_CHECK: 'api',
        HIBP_API_URL: own.url,
        BREACH_CORPUS_PATH: join(dir, 'corpus.idx'),
        HIBP_CIRCUIT_FAILURES: '1',
        LOG_LEVEL: 'info',
      },
      { logger: { stream: logs.stream } },
    );
    const register = (password: string) =>
      app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser({ password }) });
    try {
      const mode = logs.lines.map((l) => JSON.parse(l)).find((l) => l.breach_check);
      assert.equal(mode?.breach_check, 'api');
      assert.equal(mode?.fallback, 'offline index');
      assert.match(
        mode?.msg,
        /^breach check: Pwned Passwords range API at http:\/\/127\.0\.0\.1:\d+, .*the index answers$/,
      );
      // The API answers: its breached password is refused; the index is only the API's stand-in.
      assert.equal(json(await register(apiBreached)).code, 'PASSWORD_BREACHED');
      assert.equal((await register(indexBreached)).statusCode, 201);
      const asked = own.requests.length;
      await own.close();
      ownClosed = true;
      // The API is gone: the index answers; after the first failure the API is not asked.
      const refused = await register(indexBreachedLater);
      assert.equal(refused.statusCode, 422, refused.body);
      assert.equal(json(refused).code, 'PASSWORD_BREACHED');
      for (let i = 0; i < 3; i++) assert.equal((await register(strongPassword())).statusCode, 201);
      assert.equal(own.requests.length, asked, 'a closed server receives nothing');
    } finally {
      await app.close();
      if (!ownClosed) await own.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
