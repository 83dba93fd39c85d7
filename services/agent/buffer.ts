/**
 * The bounded buffer of batches waiting for the broker's acknowledgement.
 *
 * A batch leaves the buffer only when acknowledged. When adding a batch
 * would exceed the bound, the oldest batches are dropped and counted. The
 * newest batch that was never sent may still take more samples (up to
 * `maxSamples`), so a long outage costs fewer buffer slots.
 *
 * @module
 */
import type { Batch, WireAlert, WireSample } from "../rpc/messages.ts";

/** Counters shown by `status`. */
export interface BufferStats {
  /** Batches waiting for an acknowledgement. */
  batches: number;
  /** Samples in those batches. */
  samples: number;
  /** Alerts in those batches. */
  alerts: number;
  /** Most batches kept. */
  limit: number;
  /** Batches dropped because the bound was exceeded (oldest first), since start. */
  dropped_batches: number;
  /** Samples in the dropped batches. */
  dropped_samples: number;
  /** Alerts in the dropped batches. */
  dropped_alerts: number;
  /** Batches acknowledged since start. */
  acked: number;
  /** Sequence number of the oldest waiting batch, if any. */
  oldest_seq?: number;
  /** Sequence number given to the newest batch (0 before the first). */
  last_seq: number;
}

interface Entry {
  batch: Batch;
  /** True once written to a connection: its contents may no longer change. */
  sealed: boolean;
}

/** Batches with increasing sequence numbers, kept until acknowledged. */
export class BatchBuffer {
  #entries: Entry[] = [];
  #limit: number;
  #maxSamples: number;
  #seq: number;
  #dropped = { batches: 0, samples: 0, alerts: 0 };
  #acked = 0;

  /**
   * @param limit most batches kept (>= 1)
   * @param maxSamples most samples per batch
   * @param firstSeq sequence number of the first batch (default: Unix ms, so a
   *   restarted agent keeps increasing)
   */
  constructor(limit: number, maxSamples: number, firstSeq = Date.now()) {
    this.#limit = Math.max(1, limit);
    this.#maxSamples = Math.max(1, maxSamples);
    this.#seq = firstSeq - 1;
  }

  /** Changes the bound (drops the oldest batches when lowered) and the batch size. */
  resize(limit: number, maxSamples: number): void {
    this.#limit = Math.max(1, limit);
    this.#maxSamples = Math.max(1, maxSamples);
    this.#trim();
  }

  /**
   * Adds samples and alerts: appended to the newest batch when it was never
   * sent and has room, otherwise a new batch with the next sequence number.
   * Returns the batch that holds them.
   */
  add(samples: WireSample[], alerts: WireAlert[]): Batch {
    const last = this.#entries[this.#entries.length - 1];
    if (
      last && !last.sealed && last.batch.samples.length + samples.length <= this.#maxSamples
    ) {
      last.batch.samples.push(...samples);
      last.batch.alerts.push(...alerts);
      return last.batch;
    }
    const batch: Batch = { seq: ++this.#seq, samples: [...samples], alerts: [...alerts] };
    this.#entries.push({ batch, sealed: false });
    this.#trim();
    return batch;
  }

  #trim() {
    while (this.#entries.length > this.#limit) {
      const dropped = this.#entries.shift()!;
      this.#dropped.batches++;
      this.#dropped.samples += dropped.batch.samples.length;
      this.#dropped.alerts += dropped.batch.alerts.length;
    }
  }

  /** Marks a batch as written to a connection (its contents are fixed from now on). */
  seal(seq: number): void {
    const entry = this.#entries.find((e) => e.batch.seq === seq);
    if (entry) entry.sealed = true;
  }

  /**
   * Splits never-sent batches holding more than `maxSamples` samples (the
   * broker announced a smaller limit than the configured one). They get new
   * sequence numbers in the same order; the broker never saw the old ones.
   */
  rechunk(maxSamples: number): void {
    const limit = Math.max(1, maxSamples);
    const firstOpen = this.#entries.findIndex((e) => !e.sealed);
    if (firstOpen < 0) return;
    const open = this.#entries.slice(firstOpen);
    if (open.every((e) => e.batch.samples.length <= limit)) return;
    const rebuilt: Entry[] = [];
    for (const entry of open) {
      const { samples, alerts } = entry.batch;
      for (let i = 0; i < Math.max(1, samples.length); i += limit) {
        rebuilt.push({
          batch: {
            seq: ++this.#seq,
            samples: samples.slice(i, i + limit),
            alerts: i === 0 ? alerts : [],
          },
          sealed: false,
        });
      }
    }
    this.#entries = [...this.#entries.slice(0, firstOpen), ...rebuilt];
    this.#trim();
  }

  /** Removes an acknowledged batch; false when it was not waiting. */
  ack(seq: number): boolean {
    const index = this.#entries.findIndex((e) => e.batch.seq === seq);
    if (index < 0) return false;
    this.#entries.splice(index, 1);
    this.#acked++;
    return true;
  }

  /** Drops one batch on purpose (refused by the broker as invalid); counted as dropped. */
  discard(seq: number): boolean {
    const index = this.#entries.findIndex((e) => e.batch.seq === seq);
    if (index < 0) return false;
    const [entry] = this.#entries.splice(index, 1);
    this.#dropped.batches++;
    this.#dropped.samples += entry.batch.samples.length;
    this.#dropped.alerts += entry.batch.alerts.length;
    return true;
  }

  /** Waiting batches, oldest first. */
  pending(): Batch[] {
    return this.#entries.map((e) => e.batch);
  }

  /** Number of waiting batches. */
  get size(): number {
    return this.#entries.length;
  }

  /** Counters. */
  stats(): BufferStats {
    let samples = 0;
    let alerts = 0;
    for (const e of this.#entries) {
      samples += e.batch.samples.length;
      alerts += e.batch.alerts.length;
    }
    const stats: BufferStats = {
      batches: this.#entries.length,
      samples,
      alerts,
      limit: this.#limit,
      dropped_batches: this.#dropped.batches,
      dropped_samples: this.#dropped.samples,
      dropped_alerts: this.#dropped.alerts,
      acked: this.#acked,
      last_seq: Math.max(0, this.#seq),
    };
    if (this.#entries.length > 0) stats.oldest_seq = this.#entries[0].batch.seq;
    return stats;
  }
}
