/**
 * Broker statistics: counters per agent and in total, rates over a sliding
 * window and publish latency percentiles over the most recent publishes.
 *
 * @module
 */

/** Plain counters of one agent or of the whole broker. */
export interface Counters {
  /** Batches received and acknowledged. */
  batches: number;
  /** Samples published to the data topic. */
  samples: number;
  /** Alerts published to the alerts topic. */
  alerts: number;
  /** Bytes of JSON published (data and alerts). */
  bytes: number;
  /** Batches received again after they were acknowledged (not re-published). */
  duplicates: number;
  /** Publishes the bus refused (the batch was not acknowledged). */
  publish_failures: number;
  /** Messages refused as malformed (the stream was ended). */
  invalid_messages: number;
  /** Commands sent to agents. */
  commands: number;
  /** Results published (from agents, and errors on their behalf). */
  results: number;
  /** All errors: publish failures, invalid messages, command errors. */
  errors: number;
}

/** A snapshot of one agent's or the whole broker's statistics. */
export interface StatsSnapshot extends Counters {
  /** Per second over the last {@linkcode RATE_WINDOW_SECONDS}. */
  rates: { batches: number; samples: number; bytes: number };
  /** Publish latency in milliseconds over the last {@linkcode LATENCY_WINDOW} publishes. */
  publish_latency_ms: { p50: number | null; p99: number | null; count: number };
}

/** Length of the rate window (seconds). */
export const RATE_WINDOW_SECONDS = 60;
/** Number of publishes the latency percentiles cover. */
export const LATENCY_WINDOW = 1024;

/** Fresh zero counters. */
export function zeroCounters(): Counters {
  return {
    batches: 0,
    samples: 0,
    alerts: 0,
    bytes: 0,
    duplicates: 0,
    publish_failures: 0,
    invalid_messages: 0,
    commands: 0,
    results: 0,
    errors: 0,
  };
}

/** Per-second buckets over a sliding window. */
class RateWindow {
  #buckets = new Map<number, { batches: number; samples: number; bytes: number }>();
  /** The current second's bucket (most adds land in it: no map look-up, no pruning). */
  #second = NaN;
  #current: { batches: number; samples: number; bytes: number } | undefined;

  add(nowMs: number, batches: number, samples: number, bytes: number) {
    const second = Math.floor(nowMs / 1000);
    let bucket = second === this.#second ? this.#current : undefined;
    if (!bucket) {
      bucket = this.#buckets.get(second);
      if (!bucket) this.#buckets.set(second, bucket = { batches: 0, samples: 0, bytes: 0 });
      this.#second = second;
      this.#current = bucket;
      this.#prune(second);
    }
    bucket.batches += batches;
    bucket.samples += samples;
    bucket.bytes += bytes;
  }

  #prune(second: number) {
    for (const key of this.#buckets.keys()) {
      if (key <= second - RATE_WINDOW_SECONDS) {
        this.#buckets.delete(key);
        if (key === this.#second) {
          this.#second = NaN;
          this.#current = undefined;
        }
      }
    }
  }

  rates(nowMs: number, sinceMs: number) {
    const second = Math.floor(nowMs / 1000);
    this.#prune(second);
    let batches = 0, samples = 0, bytes = 0;
    for (const bucket of this.#buckets.values()) {
      batches += bucket.batches;
      samples += bucket.samples;
      bytes += bucket.bytes;
    }
    // Divide by the covered span: the whole window, or less right after start.
    const span = Math.max(1, Math.min(RATE_WINDOW_SECONDS, (nowMs - sinceMs) / 1000));
    const round = (n: number) => Math.round((n / span) * 100) / 100;
    return { batches: round(batches), samples: round(samples), bytes: round(bytes) };
  }
}

/** Ring of the most recent latencies. */
class LatencyWindow {
  #values: number[] = [];
  #next = 0;

  add(ms: number) {
    if (this.#values.length < LATENCY_WINDOW) this.#values.push(ms);
    else this.#values[this.#next] = ms;
    this.#next = (this.#next + 1) % LATENCY_WINDOW;
  }

  percentiles() {
    if (this.#values.length === 0) return { p50: null, p99: null, count: 0 };
    const sorted = [...this.#values].sort((a, b) => a - b);
    const pick = (q: number) => {
      const index = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
      return Math.round(sorted[Math.max(0, index)] * 100) / 100;
    };
    return { p50: pick(0.5), p99: pick(0.99), count: sorted.length };
  }
}

/** Statistics of one scope (one agent, or the total). */
export class ScopeStats {
  /** The counters, updated in place. */
  readonly counters: Counters = zeroCounters();
  #rates = new RateWindow();
  #latency = new LatencyWindow();
  readonly #since: number;
  readonly #onPublish: ((ms: number) => void) | undefined;

  /**
   * @param sinceMs when counting started (Unix ms)
   * @param onPublish also told each publish latency (ms), e.g. for a histogram
   */
  constructor(sinceMs = Date.now(), onPublish?: (ms: number) => void) {
    this.#since = sinceMs;
    this.#onPublish = onPublish;
  }

  /** Records a published and acknowledged group of batches. */
  recordPublish(batches: number, samples: number, alerts: number, bytes: number, ms: number) {
    this.counters.batches += batches;
    this.counters.samples += samples;
    this.counters.alerts += alerts;
    this.counters.bytes += bytes;
    this.#rates.add(Date.now(), batches, samples, bytes);
    this.#latency.add(ms);
    this.#onPublish?.(ms);
  }

  /** Increments one counter (`errors` too when the counter is an error). */
  count(counter: keyof Counters, by = 1) {
    this.counters[counter] += by;
    if (counter === "publish_failures" || counter === "invalid_messages") {
      this.counters.errors += by;
    }
  }

  /** A copy of the counters with rates and latency percentiles. */
  snapshot(nowMs = Date.now()): StatsSnapshot {
    return {
      ...this.counters,
      rates: this.#rates.rates(nowMs, this.#since),
      publish_latency_ms: this.#latency.percentiles(),
    };
  }
}
