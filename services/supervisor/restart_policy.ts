/**
 * When to restart a service that exited unexpectedly: exponential backoff
 * (reset after a run that stayed up long enough) and crash-loop detection
 * (too many crashes within a window stop the retries for that service).
 *
 * @module
 */

/** Settings of a {@linkcode RestartPolicy}. */
export interface RestartPolicyOptions {
  /** First restart delay (ms). Default 500. */
  initialDelayMs?: number;
  /** Largest restart delay (ms). Default 30 000. */
  maxDelayMs?: number;
  /** A run that lasted at least this long resets the delay to the first one (ms). Default 30 000. */
  resetAfterMs?: number;
  /** Crashes within {@linkcode RestartPolicyOptions.crashWindowMs} that make a crash loop. Default 5. */
  crashLimit?: number;
  /** Window of the crash-loop count (ms). Default 60 000. */
  crashWindowMs?: number;
}

/** What to do after a crash. */
export type RestartDecision =
  | { action: "restart"; delayMs: number; crashes: number }
  | { action: "give-up"; crashes: number; windowMs: number };

/** Defaults of {@linkcode RestartPolicyOptions}. */
export const DEFAULT_RESTART_POLICY: Readonly<Required<RestartPolicyOptions>> = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  resetAfterMs: 30_000,
  crashLimit: 5,
  crashWindowMs: 60_000,
});

/**
 * Restart bookkeeping of one service. Pure: the caller passes the clock.
 *
 * ```ts
 * declare const uptimeMs: number; // how long the service ran before it crashed
 * declare function start(): void;
 *
 * const policy = new RestartPolicy();
 * const decision = policy.crashed(Date.now(), uptimeMs);
 * if (decision.action === "restart") setTimeout(start, decision.delayMs);
 * ```
 */
export class RestartPolicy {
  readonly options: Readonly<Required<RestartPolicyOptions>>;
  #crashes: number[] = [];
  #nextDelay: number;

  constructor(options: RestartPolicyOptions = {}) {
    this.options = Object.freeze({ ...DEFAULT_RESTART_POLICY, ...stripUndefined(options) });
    if (this.options.crashLimit < 1) throw new RangeError("crashLimit: expected at least 1");
    this.#nextDelay = this.options.initialDelayMs;
  }

  /**
   * Records a crash at `now` (ms) after a run of `uptimeMs`; returns whether
   * and when to restart.
   */
  crashed(now: number, uptimeMs: number): RestartDecision {
    const { crashWindowMs, crashLimit, resetAfterMs, initialDelayMs, maxDelayMs } = this.options;
    if (uptimeMs >= resetAfterMs) this.#nextDelay = initialDelayMs;
    this.#crashes = this.#crashes.filter((t) => now - t < crashWindowMs);
    this.#crashes.push(now);
    const crashes = this.#crashes.length;
    if (crashes >= crashLimit) return { action: "give-up", crashes, windowMs: crashWindowMs };
    const delayMs = this.#nextDelay;
    this.#nextDelay = Math.min(maxDelayMs, this.#nextDelay * 2);
    return { action: "restart", delayMs, crashes };
  }

  /** Forgets past crashes (a deliberate restart, e.g. after a configuration change). */
  reset(): void {
    this.#crashes = [];
    this.#nextDelay = this.options.initialDelayMs;
  }

  /** Crashes currently counted in the window ending at `now`. */
  recentCrashes(now: number): number {
    return this.#crashes.filter((t) => now - t < this.options.crashWindowMs).length;
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(value).filter(([, v]) => v !== undefined),
  ) as Partial<T>;
}
