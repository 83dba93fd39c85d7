import assert from "node:assert/strict";
import { join } from "node:path";
import { HistoryStore } from "./history.ts";

const T0 = 1_700_000_000; // a minute boundary plus 20 s: 1700000000 % 60 = 20

async function withDir(fn: (dir: string) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "history-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function sample(t: number, metrics: Record<string, number>, agent = "web-1") {
  return { agent_id: agent, hostname: agent, timestamp: t, metrics };
}

Deno.test("history: raw points are read back in order, once per sample time, only for the agent", () =>
  withDir((dir) => {
    let now = (T0 + 100) * 1000;
    const h = HistoryStore.open(join(dir, "h.db"), { now: () => now });
    h.append(sample(T0 + 2, { cpu: 20, memory: 50 }));
    h.append(sample(T0, { cpu: 10 }));
    h.append(sample(T0, { cpu: 10 })); // the same sample consumed twice
    h.append(sample(T0 + 1, { cpu: 99 }, "web-2"));
    const got = h.query("web-1", T0 - 10, T0 + 10);
    assert.deepEqual(got.cpu, { t: [T0, T0 + 2], v: [10, 20] });
    assert.deepEqual(got.memory, { t: [T0 + 2], v: [50] });
    assert.deepEqual(h.query("web-1", T0 - 10, T0 + 10, ["cpu"]).memory, undefined);
    assert.deepEqual(h.agentIds(), ["web-1", "web-2"]);
    assert.deepEqual(h.metricsOf("web-1"), ["cpu", "memory"]);
    now += 1;
    h.close();
  }));

Deno.test("history: long ranges read per-minute rollups (min, avg, max), also for minutes not rolled up yet", () =>
  withDir((dir) => {
    const base = 1_700_000_040; // 40 s before a minute boundary (1700000040 % 60 = 0)
    let now = (base + 600) * 1000;
    const h = HistoryStore.open(join(dir, "h.db"), { now: () => now });
    for (let i = 0; i < 120; i += 10) h.append(sample(base + i, { cpu: i }));
    h.maintain(); // rolls up both minutes (the clock is 10 minutes later)
    h.append(sample(base + 125, { cpu: 7 })); // a third minute, not rolled up
    const got = h.query("web-1", base - 86400, base + 200).cpu;
    assert.deepEqual(got.t, [base, base + 60, base + 120]);
    assert.deepEqual(got.min, [0, 60, 7]);
    assert.deepEqual(got.max, [50, 110, 7]);
    assert.deepEqual(got.v, [25, 85, 7]);
    now += 1;
    h.close();
  }));

Deno.test("history: points survive closing and opening again; minutes not rolled up before are rolled up after", () =>
  withDir((dir) => {
    const base = 1_700_000_040;
    const now = (base + 30) * 1000;
    const path = join(dir, "h.db");
    const a = HistoryStore.open(path, { now: () => now });
    a.append(sample(base + 1, { cpu: 1 }));
    a.append(sample(base + 2, { cpu: 3 }));
    a.close(); // the minute is the current one: not rolled up
    const later = (base + 3600) * 1000;
    const b = HistoryStore.open(path, { now: () => later });
    assert.deepEqual(b.query("web-1", base, base + 10).cpu, { t: [base + 1, base + 2], v: [1, 3] });
    b.maintain();
    const rolled = b.query("web-1", base - 86400, base + 10).cpu;
    assert.deepEqual([rolled.t, rolled.v, rolled.min, rolled.max], [[base], [2], [1], [3]]);
    b.close();
  }));

Deno.test("history: prune drops raw points past raw retention and rollups past rollup retention", () =>
  withDir((dir) => {
    const base = 1_700_000_040;
    let now = base * 1000;
    const h = HistoryStore.open(join(dir, "h.db"), {
      now: () => now,
      rawRetentionHours: 1,
      rollupRetentionDays: 1,
    });
    h.append(sample(base, { cpu: 5 }));
    h.append(sample(base + 2 * 3600, { cpu: 6 }));
    now = (base + 2 * 3600 + 120) * 1000;
    h.maintain();
    // The first raw point is gone; its rollup is still there.
    assert.deepEqual(h.query("web-1", base - 86400, base + 3 * 3600).cpu.t, [base, base + 7200]);
    assert.deepEqual(h.query("web-1", base - 10, base + 10).cpu, { t: [], v: [] });
    now = (base + 2 * 86400) * 1000;
    h.maintain();
    assert.deepEqual(h.query("web-1", base - 10, base + 3 * 86400).cpu.t, []);
    h.close();
  }));

Deno.test("history: the size bound drops the oldest raw points first and warns", () =>
  withDir((dir) => {
    const base = 1_700_000_040;
    let now = base * 1000;
    const warnings: string[] = [];
    const h = HistoryStore.open(join(dir, "h.db"), {
      now: () => now,
      maxSizeMb: 0.5,
      onWarning: (m) => warnings.push(m),
    });
    for (let i = 0; i < 6 * 3600; i++) {
      h.append(sample(base + i, { cpu: Math.sin(i), memory: i, "disk read": i * 3 }));
    }
    now = (base + 6 * 3600) * 1000;
    h.maintain();
    assert.ok(h.sizeBytes() <= 0.5 * 1024 * 1024, `size ${h.sizeBytes()}`);
    assert.ok(warnings.some((w) => w.includes("max_size_mb")), warnings.join("\n"));
    const recent = h.query("web-1", base + 6 * 3600 - 600, base + 6 * 3600).cpu;
    assert.ok(recent.t.length > 500, "the newest raw points are kept");
    h.close();
  }));

Deno.test("history: alerts are kept from firing to resolved", () =>
  withDir((dir) => {
    const now = (T0 + 100) * 1000;
    const h = HistoryStore.open(join(dir, "h.db"), { now: () => now });
    const alert = { agent_id: "web-1", metric: "cpu", threshold: 80 };
    h.recordAlert({ ...alert, value: 91, state: "firing", timestamp: T0 });
    h.recordAlert({ ...alert, metric: "memory", value: 95, state: "firing", timestamp: T0 + 5 });
    h.recordAlert({ ...alert, value: 40, state: "resolved", timestamp: T0 + 30 });
    assert.deepEqual(h.alerts(), [
      { ...alert, metric: "memory", start: T0 + 5, end: null, value: 95, end_value: null },
      { ...alert, start: T0, end: T0 + 30, value: 91, end_value: 40 },
    ]);
    h.close();
  }));

Deno.test("history: with a most number of points, minute rollups merge into wider buckets", () =>
  withDir((dir) => {
    const base = 1_700_000_040; // a minute boundary
    const now = (base + 7200) * 1000;
    const h = HistoryStore.open(join(dir, "h.db"), { now: () => now });
    // 10 minutes, two samples each: i and i + 100.
    for (let i = 0; i < 10; i++) {
      h.append(sample(base + i * 60, { cpu: i }));
      h.append(sample(base + i * 60 + 30, { cpu: i + 100 }));
    }
    h.maintain();
    const all = h.query("web-1", base - 86400, base + 3600).cpu;
    assert.equal(all.t.length, 10);
    const merged = h.query("web-1", base - 86400, base + 3600, undefined, false, 5).cpu;
    assert.ok(merged.t.length <= 5 + 1, `${merged.t.length} points`);
    // Every sample counted once: the weighted average of the buckets is the overall average.
    const counts = merged.t.map((t, i) => {
      const end = merged.t[i + 1] ?? Infinity;
      return [...Array(10).keys()].filter((m) => base + m * 60 >= t && base + m * 60 < end).length *
        2;
    });
    const total = counts.reduce((a, b) => a + b, 0);
    assert.equal(total, 20);
    const avg = merged.v.reduce((a, v, i) => a + v * counts[i], 0) / total;
    assert.ok(Math.abs(avg - 54.5) < 1e-6, `average ${avg}`);
    assert.equal(Math.max(...merged.max!), 109);
    assert.equal(Math.min(...merged.min!), 0);
    h.close();
  }));
