/**
 * Bounded waits shared by the services, the contract suites and the tests:
 * an abortable sleep, a deadline on a promise, and a poll loop. Each clears
 * its timers however it ends, and a wait that gives up names what it waited
 * for and for how long.
 *
 * @module
 */

/**
 * Resolves after `ms` (at once when `ms <= 0`), or earlier when `signal`
 * aborts. Never rejects; clears its timer and listener either way.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Settles as `promise` does, or rejects with `timed out after <ms> ms waiting
 * for <what>` when it has not settled within `ms`. Clears its timer either
 * way (`promise` itself is not cancelled).
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A value {@linkcode waitUntil} keeps polling on. */
export type Falsy = undefined | null | false | 0 | "";

/** Options of {@linkcode waitUntil}. */
export interface WaitOptions {
  /** Pause between two checks (ms). Default 20. */
  intervalMs?: number;
  /** Appended to the timeout message after `: ` when not empty, e.g. what was seen so far. */
  detail?: () => string;
}

/**
 * Calls `check` until it returns a truthy value, pausing `intervalMs` between
 * calls, and resolves with that value. After `ms` it rejects with `timed out
 * after <ms> ms waiting for <what>` (and `: <detail()>` when given and not
 * empty).
 */
export async function waitUntil<T>(
  check: () => T | Falsy | Promise<T | Falsy>,
  ms: number,
  what: string,
  options: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + ms;
  while (true) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) {
      const more = options.detail?.() ?? "";
      throw new Error(`timed out after ${ms} ms waiting for ${what}${more ? `: ${more}` : ""}`);
    }
    await sleep(options.intervalMs ?? 20);
  }
}
