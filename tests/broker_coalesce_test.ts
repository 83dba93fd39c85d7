/**
 * The broker's group commit (services/broker/coalesce.ts) on the real
 * embedded bus: publishes made while one is in flight go out together, in
 * order; a lone publish goes out at once; a failure reaches every caller of
 * its group and nobody else; groups stay under the byte cap.
 */
import assert from "node:assert/strict";
import { coalescingBus } from "../services/broker/coalesce.ts";
import { openBus } from "../services/bus/mod.ts";
import type { Bus, OutgoingMessage } from "../services/bus/types.ts";
import { collect, embeddedPath, GatedBus, tempDir } from "./broker_support.ts";

async function withBus(fn: (gated: GatedBus, bus: Bus) => Promise<void>) {
  const dir = await tempDir("coalesce-test-");
  const inner = await openBus({ backend: "embedded", brokers: [], path: embeddedPath(dir) });
  const gated = new GatedBus(inner);
  try {
    await fn(gated, inner);
  } finally {
    await inner.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const message = (agent: string, n: number): OutgoingMessage => ({
  key: agent,
  value: JSON.stringify({ agent_id: agent, n }),
});

Deno.test("a lone publish goes out at once, as one publish", async () => {
  await withBus(async (gated, inner) => {
    const bus = coalescingBus(gated);
    await bus.publish("data", [message("a", 1), message("a", 2)]);
    assert.deepEqual(gated.attempts, [{ topic: "data", count: 2 }]);
    const seen = await collect(inner, "data");
    try {
      await seen.waitFor((v) => v.length === 2, 5000, "both messages");
    } finally {
      await seen.close();
    }
  });
});

Deno.test("publishes made while one is in flight go out together, in arrival order", async () => {
  await withBus(async (gated, inner) => {
    const bus = coalescingBus(gated);
    const release = gated.hold();
    const first = bus.publish("data", [message("a", 1)]);
    const waiting = [
      bus.publish("data", [message("b", 1), message("b", 2)]),
      bus.publish("data", [message("c", 1)]),
      bus.publish("alerts", [message("c", 9)]),
    ];
    release();
    await Promise.all([first, ...waiting]);
    assert.deepEqual(gated.attempts, [
      { topic: "data", count: 1 },
      { topic: "alerts", count: 1 },
      { topic: "data", count: 3 },
    ]);
    const seen = await collect(inner, "data");
    try {
      const values = await seen.waitFor<{ agent_id: string; n: number }>(
        (v) => v.length === 4,
        5000,
        "four data messages",
      );
      assert.deepEqual(values.map((v) => `${v.agent_id}${v.n}`), ["a1", "b1", "b2", "c1"]);
    } finally {
      await seen.close();
    }
  });
});

Deno.test("a failed group fails each of its callers and no one else", async () => {
  await withBus(async (gated) => {
    const bus = coalescingBus(gated);
    // In flight at once (it passed the gate's failure check synchronously).
    const first = bus.publish("data", [message("a", 1)]);
    gated.failNext(1, new Error("bus refused the group (test)"));
    const grouped = [
      bus.publish("data", [message("b", 1)]),
      bus.publish("data", [message("c", 1)]),
    ];
    await first;
    for (const p of grouped) await assert.rejects(p, /bus refused the group \(test\)/);
    await bus.publish("data", [message("d", 1)]);
    assert.deepEqual(gated.attempts.map((a) => a.count), [1, 2, 1]);
  });
});

Deno.test("groups stay under the byte cap; one large caller still goes alone", async () => {
  await withBus(async (gated) => {
    const bus = coalescingBus(gated, 100);
    const release = gated.hold();
    const first = bus.publish("data", [message("a", 0)]);
    const big = { key: "big", value: "x".repeat(500) };
    const rest = [
      bus.publish("data", [message("b", 1)]),
      bus.publish("data", [message("c", 1)]),
      bus.publish("data", [big]),
      bus.publish("data", [message("d", 1)]),
    ];
    release();
    await Promise.all([first, ...rest]);
    // b and c fit together (about 40 bytes each); the big one alone; d after it.
    assert.deepEqual(gated.attempts.map((a) => a.count), [1, 2, 1, 1]);
  });
});

Deno.test("under load, a group waits out the interval since the last publish started and takes everyone who came meanwhile", async () => {
  await withBus(async (gated) => {
    const bus = coalescingBus(gated, { minIntervalMs: 300 });
    const t0 = performance.now();
    await bus.publish("data", [message("a", 1)]);
    // Right after: waits for the interval, and the publishes made while it waits join it.
    const second = bus.publish("data", [message("b", 1)]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const third = bus.publish("data", [message("c", 1)]);
    await Promise.all([second, third]);
    const waited = performance.now() - t0;
    assert.ok(waited >= 290, `the second group went out after ${waited} ms, expected >= 300`);
    assert.deepEqual(gated.attempts.map((a) => a.count), [1, 2]);
    // Another topic has its own interval: at once.
    const t1 = performance.now();
    await bus.publish("alerts", [message("d", 1)]);
    assert.ok(performance.now() - t1 < 250, "a publish to another topic did not wait");
    // After a quiet interval: at once again.
    await new Promise((resolve) => setTimeout(resolve, 320));
    const t2 = performance.now();
    await bus.publish("data", [message("e", 1)]);
    assert.ok(performance.now() - t2 < 250, "a publish after a quiet interval did not wait");
    assert.deepEqual(gated.attempts.map((a) => `${a.topic}:${a.count}`), [
      "data:1",
      "data:2",
      "alerts:1",
      "data:1",
    ]);
  });
});
