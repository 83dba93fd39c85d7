/**
 * Exponential backoff with jitter for reconnecting to the broker.
 *
 * Delay n is a random value in `[base/2, base]` with `base = min(cap,
 * initial * factor^n)` ("equal jitter"): agents that lost the same broker do
 * not all come back at the same instant, and the delay never exceeds the cap.
 *
 * @module
 */

/** Options of {@linkcode Backoff}. */
export interface BackoffOptions {
  /** First delay (ms), default 500. */
  initialMs?: number;
  /** Largest delay (ms), default 30000. */
  maxMs?: number;
  /** Growth per attempt, default 2. */
  factor?: number;
  /** Random source in [0, 1), default Math.random. */
  random?: () => number;
}

/** Computes successive reconnect delays. */
export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  #random: () => number;
  #attempt = 0;

  /** @param options delays and random source */
  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 30_000;
    this.factor = options.factor ?? 2;
    this.#random = options.random ?? Math.random;
  }

  /** Attempts since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The next delay (ms); grows until the cap. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.#attempt);
    this.#attempt++;
    return Math.round(base / 2 + this.#random() * (base / 2));
  }

  /** Starts over from the initial delay (after a healthy connection). */
  reset(): void {
    this.#attempt = 0;
  }
}
