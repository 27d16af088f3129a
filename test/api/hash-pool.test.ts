import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { AppError } from '../../src/domain/errors.ts';
import { HashPool } from '../../src/infra/hash-pool.ts';
import { lockoutSubject } from '../../src/infra/lockout.ts';
import { json, newUser, startApp, testConfig, uniqueName } from '../helpers.ts';

/** A task the test finishes by hand. */
function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await nextTurn();
}

describe('bounded hashing', () => {
  test('at most `concurrency` tasks run; the next wait in a bounded queue; past it SERVICE_UNAVAILABLE', async () => {
    const pool = new HashPool(2, 1);
    let running = 0;
    let peak = 0;
    const gates = [gate(), gate(), gate()];
    const runs = gates.map((g) =>
      pool.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await g.promise;
        running--;
      }),
    );
    await until(() => pool.running === 2 && pool.queued === 1);
    await assert.rejects(
      pool.run(async () => {}),
      (error: unknown) => {
        assert.ok(error instanceof AppError);
        assert.equal(error.code, 'SERVICE_UNAVAILABLE');
        assert.ok((error.options.retryAfter ?? 0) >= 1);
        return true;
      },
    );
    assert.equal(pool.rejected, 1);
    for (const g of gates) g.open();
    await Promise.all(runs);
    assert.equal(peak, 2);
    assert.equal(pool.running, 0);
    assert.equal(pool.completed, 3);
  });

  test('a hundred tasks through a pool of three never run more than three at once', async () => {
    const pool = new HashPool(3, 1000);
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 100 }, () =>
        pool.run(async () => {
          running++;
          peak = Math.max(peak, running);
          await nextTurn();
          running--;
        }),
      ),
    );
    assert.equal(peak, 3);
    assert.equal(pool.completed, 100);
  });

  test('a failing task frees its slot', async () => {
    const pool = new HashPool(1, 0);
    await assert.rejects(
      pool.run(async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(pool.running, 0);
    assert.equal(await pool.run(async () => 42), 42);
  });

  test('HASH_CONCURRENCY defaults to the number of cores', async () => {
    const { availableParallelism } = await import('node:os');
    assert.equal(testConfig({ HASH_CONCURRENCY: undefined }).hashConcurrency, availableParallelism());
  });

  test('registration answers 503 SERVICE_UNAVAILABLE with Retry-After when the hashing queue is full', async () => {
    const app = await startApp({ HASH_CONCURRENCY: '1', HASH_QUEUE_LIMIT: '1' });
    const busy = gate();
    try {
      const pool = app.gatehouse.hashPool;
      // Occupy the only hashing slot, then let one registration queue behind it.
      const occupied = pool.run(() => busy.promise);
      const queued = app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      await until(() => pool.queued === 1);

      const refused = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      assert.equal(refused.statusCode, 503, refused.body);
      assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
      const body = json(refused);
      assert.equal(body.code, 'SERVICE_UNAVAILABLE');
      const retryAfter = Number(refused.headers['retry-after']);
      assert.ok(retryAfter >= 1 && retryAfter <= 30);
      assert.equal(body.retry_after, retryAfter);

      busy.open();
      await occupied;
      assert.equal((await queued).statusCode, 201, 'the queued request is served once a slot frees');
      assert.equal((await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() })).statusCode, 201);
    } finally {
      busy.open();
      await app.close();
    }
  });

  test('login sheds load before any database work: 503 with Retry-After, no attempt recorded or counted', async () => {
    const app = await startApp({ HASH_CONCURRENCY: '1', HASH_QUEUE_LIMIT: '0' });
    const busy = gate();
    try {
      const occupied = app.gatehouse.hashPool.run(() => busy.promise);
      const identifier = uniqueName('shed');
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/login/json',
        payload: { username: identifier, password: 'Whatever-1!' },
      });
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(json(res).code, 'SERVICE_UNAVAILABLE');
      assert.ok(Number(res.headers['retry-after']) >= 1);
      const attempts = await app.gatehouse.db
        .selectFrom('login_attempts')
        .select('id')
        .where('identifier', '=', identifier)
        .execute();
      assert.equal(attempts.length, 0);
      const { lockout } = app.gatehouse;
      assert.equal(
        (await lockout.check(lockoutSubject(undefined, identifier))).failures,
        0,
        'a shed request is not a failure',
      );
      busy.open();
      await occupied;
      const after = await app.inject({
        method: 'POST',
        url: '/api/v1/login/json',
        payload: { username: identifier, password: 'Whatever-1!' },
      });
      assert.equal(after.statusCode, 401);
    } finally {
      busy.open();
      await app.close();
    }
  });
});
