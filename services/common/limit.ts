/**
 * A concurrency limit for asynchronous work: at most `max` calls of the
 * returned function run at once, the rest wait in arrival order. Used where
 * a burst of events (thousands of agents connecting at once) would
 * otherwise become a burst of concurrent calls on one client connection.
 *
 * Invariant: the number of started and not yet settled calls never exceeds
 * `max`, and calls start in the order they were made.
 *
 * @example
 * ```ts
 * import { concurrencyLimit } from "./limit.ts";
 *
 * const limited = concurrencyLimit(2);
 * const results = await Promise.all([1, 2, 3].map((n) => limited(async () => n * 2)));
 * console.log(results); // [2, 4, 6]
 * ```
 *
 * @module
 */

/** Runs `fn` when fewer than the limit's `max` calls are running; settles as `fn` does. */
export type Limited = <T>(fn: () => Promise<T>) => Promise<T>;

/** A function that runs at most `max` (an integer >= 1) of its calls at a time. */
export function concurrencyLimit(max: number): Limited {
  if (!Number.isInteger(max) || max < 1) {
    throw new RangeError(`concurrencyLimit: expected an integer >= 1, got ${max}`);
  }
  let running = 0;
  const waiting: Array<() => void> = [];
  // A finished call hands its slot straight to the first waiter (running stays
  // the same), so a call made between the hand-over and the waiter's start
  // cannot take the slot too.
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else running--;
  };
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (running >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    else running++;
    try {
      return await fn();
    } finally {
      release();
    }
  };
}
