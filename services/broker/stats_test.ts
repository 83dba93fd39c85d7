import assert from "node:assert/strict";
import { RATE_WINDOW_SECONDS, ScopeStats } from "./stats.ts";

Deno.test("stats: rates cover the last window; old seconds drop out, counters keep everything", () => {
  const since = 1_000_000;
  const stats = new ScopeStats(since);
  const at = (s: number) => since + s * 1000;
  // Several publishes in one second, then one in the next (the per-second bucket is reused).
  const realNow = Date.now;
  try {
    for (const s of [0.1, 0.5, 0.9, 1.2]) {
      Date.now = () => at(s);
      stats.recordPublish(1, 2, 0, 100, 5);
    }
    let snap = stats.snapshot(at(10));
    assert.equal(snap.samples, 8);
    assert.deepEqual(snap.rates, { batches: 0.4, samples: 0.8, bytes: 40 });
    // A full window later the first two seconds have left the rates, not the counters.
    Date.now = () => at(RATE_WINDOW_SECONDS + 1.5);
    stats.recordPublish(1, 1, 0, 10, 5);
    snap = stats.snapshot(at(RATE_WINDOW_SECONDS + 1.5));
    assert.equal(snap.batches, 5);
    assert.deepEqual(snap.rates, {
      batches: round(1 / RATE_WINDOW_SECONDS),
      samples: round(1 / RATE_WINDOW_SECONDS),
      bytes: round(10 / RATE_WINDOW_SECONDS),
    });
    // The same second again: added to its bucket.
    Date.now = () => at(RATE_WINDOW_SECONDS + 1.7);
    stats.recordPublish(1, 1, 0, 10, 5);
    assert.equal(stats.snapshot(at(RATE_WINDOW_SECONDS + 1.7)).rates.samples, round(2 / 60));
    assert.deepEqual(stats.snapshot(at(10_000)).rates, { batches: 0, samples: 0, bytes: 0 });
    assert.equal(stats.snapshot().publish_latency_ms.count, 6);
  } finally {
    Date.now = realNow;
  }
});

function round(n: number) {
  return Math.round(n * 100) / 100;
}
