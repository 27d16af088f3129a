import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BatchedRead } from '../../src/db/batched-read.ts';

/** A read that records each batch it is asked for and answers when released. */
function recordingRead(answer: (key: string) => string | undefined = (key) => key.toUpperCase()) {
  const batches: string[][] = [];
  const releases: (() => void)[] = [];
  let failWith: Error | undefined;
  const readMany = (keys: string[]) => {
    batches.push(keys);
    return new Promise<Map<string, string>>((resolve, reject) => {
      releases.push(() => {
        if (failWith) return reject(failWith);
        const found = new Map<string, string>();
        for (const key of keys) {
          const value = answer(key);
          if (value !== undefined) found.set(key, value);
        }
        resolve(found);
      });
    });
  };
  return {
    readMany,
    batches,
    releaseAll: () => {
      for (const release of releases.splice(0)) release();
    },
    fail: (error: Error | undefined) => {
      failWith = error;
    },
  };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('BatchedRead', () => {
  test('reads asked for in one turn of the event loop share one call, each answered with its own value', async () => {
    const source = recordingRead();
    const reads = new BatchedRead(source.readMany);
    const answers = Promise.all(['a', 'b', 'c'].map((key) => reads.read(key)));
    await turn();
    assert.deepEqual(source.batches, [['a', 'b', 'c']]);
    source.releaseAll();
    assert.deepEqual(await answers, ['A', 'B', 'C']);
  });

  test('a key asked for twice in one turn is read once and answers both', async () => {
    const source = recordingRead();
    const reads = new BatchedRead(source.readMany);
    const answers = Promise.all([reads.read('a'), reads.read('a')]);
    await turn();
    assert.deepEqual(source.batches, [['a']]);
    source.releaseAll();
    assert.deepEqual(await answers, ['A', 'A']);
  });

  test('a key the read leaves out answers undefined; the others are unaffected', async () => {
    const source = recordingRead((key) => (key === 'gone' ? undefined : key));
    const reads = new BatchedRead(source.readMany);
    const answers = Promise.all([reads.read('gone'), reads.read('here')]);
    await turn();
    source.releaseAll();
    assert.deepEqual(await answers, [undefined, 'here']);
  });

  test('a key asked for while its read is in flight waits for a new read, never the earlier one', async () => {
    const source = recordingRead();
    const reads = new BatchedRead(source.readMany);
    const first = reads.read('a');
    await turn();
    assert.equal(source.batches.length, 1, 'the first read is in flight');
    const second = reads.read('a');
    await turn();
    assert.deepEqual(source.batches, [['a'], ['a']], 'the later request started a read of its own');
    source.releaseAll();
    assert.equal(await first, 'A');
    assert.equal(await second, 'A');
  });

  test('more keys than the batch size are split into several calls', async () => {
    const source = recordingRead();
    const reads = new BatchedRead(source.readMany, 2);
    const answers = Promise.all(['a', 'b', 'c', 'd', 'e'].map((key) => reads.read(key)));
    await turn();
    assert.deepEqual(source.batches, [['a', 'b'], ['c', 'd'], ['e']]);
    source.releaseAll();
    assert.deepEqual(await answers, ['A', 'B', 'C', 'D', 'E']);
  });

  test('a failed read rejects every request of its batch, and later reads run afresh', async () => {
    const source = recordingRead();
    const reads = new BatchedRead(source.readMany);
    const answers = ['a', 'b'].map((key) => reads.read(key));
    await turn();
    source.fail(new Error('connection lost'));
    source.releaseAll();
    for (const answer of answers) await assert.rejects(answer, /connection lost/);

    source.fail(undefined);
    const later = reads.read('a');
    await turn();
    assert.equal(source.batches.length, 2);
    source.releaseAll();
    assert.equal(await later, 'A');
  });
});
