import type { Clock } from '../../src/infra/clock.ts';

/** The app's clock, moved by the test instead of by waiting. */
export interface TestClock extends Clock {
  /** Moves the time forward (or back, for a negative `ms`). */
  advance(ms: number): void;
  /** Sets the time. */
  set(date: Date): void;
}

/**
 * A clock that stands still at `start` (default: the moment it is made)
 * until the test moves it with `advance` or `set`.
 */
export function testClock(start: Date = new Date()): TestClock {
  let now = start.getTime();
  return {
    now: () => new Date(now),
    advance: (ms) => {
      now += ms;
    },
    set: (date) => {
      now = date.getTime();
    },
  };
}
