import { AppError } from '../domain/errors.ts';

/**
 * Bounds how many password hashes run at once (memory: ~19 MiB each for
 * argon2id) and how many wait. Past the queue limit the caller is told to come
 * back later rather than letting memory and latency grow without bound.
 */
export class HashPool {
  readonly concurrency: number;
  readonly queueLimit: number;
  #running = 0;
  #completed = 0;
  #rejected = 0;
  /** Moving average of one task's duration, to tell refused callers when to come back. */
  #averageMs = 0;
  readonly #waiting: Array<() => void> = [];
  readonly #onWait: ((seconds: number) => void) | undefined;

  /** `onWait` hears how long each task waited for a slot (for the queue-wait metric). */
  constructor(concurrency: number, queueLimit: number, onWait?: (seconds: number) => void) {
    this.concurrency = concurrency;
    this.queueLimit = queueLimit;
    this.#onWait = onWait;
  }

  get running(): number {
    return this.#running;
  }

  /** Hashes finished since start, for metrics and for tests that prove a hash ran. */
  get completed(): number {
    return this.#completed;
  }

  get queued(): number {
    return this.#waiting.length;
  }

  /** Tasks refused because the queue was full. */
  get rejected(): number {
    return this.#rejected;
  }

  /** Seconds until the queue has drained at the current pace: at least 1, at most 30. */
  retryAfterSeconds(): number {
    const drainMs = ((this.#waiting.length + 1) * this.#averageMs) / this.concurrency;
    return Math.min(30, Math.max(1, Math.ceil(drainMs / 1000)));
  }

  /**
   * Refuses at once when a task would be refused, so that a flow can shed
   * load before spending database round trips on a request that cannot be served.
   */
  assertCapacity(): void {
    if (this.#running >= this.concurrency && this.#waiting.length >= this.queueLimit) {
      this.#rejected++;
      throw new AppError('SERVICE_UNAVAILABLE', {
        detail: 'Too many password checks in progress',
        retryAfter: this.retryAfterSeconds(),
      });
    }
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    const queuedAt = performance.now();
    if (this.#running >= this.concurrency) {
      this.assertCapacity();
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running++;
    }
    const startedAt = performance.now();
    this.#onWait?.((startedAt - queuedAt) / 1000);
    try {
      return await task();
    } finally {
      const took = performance.now() - startedAt;
      this.#averageMs = this.#completed === 0 ? took : this.#averageMs * 0.8 + took * 0.2;
      this.#completed++;
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter, so `running` never dips.
      if (next) next();
      else this.#running--;
    }
  }
}
