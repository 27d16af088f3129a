interface Waiter<V> {
  resolve(value: V | undefined): void;
  reject(error: unknown): void;
}

/**
 * Coalesces concurrent reads of one kind into one statement. The keys asked
 * for while the event loop handles a burst of requests are read together
 * (`where key = any($1)`), so under load one round trip answers many
 * requests; a request on its own waits only for the end of the current turn
 * of the event loop.
 *
 * Every answer comes from a read that began after it was asked for: a key
 * asked for while a read of it is in flight waits for the next read, so a
 * write committed before the request arrived (a revoked session) is always
 * seen.
 */
export class BatchedRead<K, V> {
  readonly #readMany: (keys: K[]) => Promise<Map<K, V>>;
  readonly #maxBatch: number;
  #pending = new Map<K, Waiter<V>[]>();
  #scheduled = false;

  /** `readMany` answers a batch of distinct keys; a key it leaves out reads as `undefined`. */
  constructor(readMany: (keys: K[]) => Promise<Map<K, V>>, maxBatch = 100) {
    this.#readMany = readMany;
    this.#maxBatch = maxBatch;
  }

  read(key: K): Promise<V | undefined> {
    return new Promise<V | undefined>((resolve, reject) => {
      const waiters = this.#pending.get(key);
      if (waiters) waiters.push({ resolve, reject });
      else this.#pending.set(key, [{ resolve, reject }]);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const pending = this.#pending;
    this.#pending = new Map();
    const keys = [...pending.keys()];
    for (let start = 0; start < keys.length; start += this.#maxBatch) {
      const batch = keys.slice(start, start + this.#maxBatch);
      this.#readMany(batch).then(
        (found) => {
          for (const key of batch) for (const waiter of pending.get(key) ?? []) waiter.resolve(found.get(key));
        },
        (error: unknown) => {
          for (const key of batch) for (const waiter of pending.get(key) ?? []) waiter.reject(error);
        },
      );
    }
  }
}
