import assert from "node:assert/strict";
import { DuplicateFilterPlugin } from "../../plugins/duplicate_filter/mod.ts";
import { DUPLICATE_FILTER_SETTINGS } from "../../plugins/duplicate_filter/mod.ts";
import type { PluginContext } from "../../plugins/api.ts";
import { DEFAULT_AGENT_CONFIG_JSON } from "../config/agent_config.ts";
import {
  AgentStateTable,
  DEFAULT_INTERVAL_SECONDS,
  DEFAULT_KEEPALIVE_SECONDS,
  STALE_GRACE_SECONDS,
} from "./agent_state.ts";
import type { DataMessage } from "./messages.ts";

const message = (
  timestamp: number,
  metrics: Record<string, number>,
  extra: Partial<DataMessage> = {},
): DataMessage => ({
  agent_id: "web-1",
  hostname: "host-1",
  timestamp,
  metrics,
  ...extra,
});

Deno.test("agent_state: the fallback window is the default interval × the filter's default max_silent_intervals", () => {
  assert.equal(DEFAULT_INTERVAL_SECONDS, Number(DEFAULT_AGENT_CONFIG_JSON.interval));
  const maxSilent = DUPLICATE_FILTER_SETTINGS.fields.max_silent_intervals.default;
  assert.equal(
    DEFAULT_KEEPALIVE_SECONDS,
    Number(DEFAULT_AGENT_CONFIG_JSON.interval) * Number(maxSilent),
  );
});

Deno.test("agent_state: a metric held constant for ten minutes behind the real duplicate filter never goes stale", () => {
  // The agent: interval 5 s, duplicate_filter with max_silent_intervals 12 (keep-alive 60 s).
  const filter = new DuplicateFilterPlugin();
  const context: PluginContext = {
    agentId: "web-1",
    hostname: "host-1",
    interval: 5,
    log() {},
    emitAlert() {},
  };
  filter.initialize({ max_silent_intervals: 12 }, context);
  const table = new AgentStateTable();
  let sent = 0;
  let cpuCarried = 0;
  const start = 1_700_000_000;
  for (let t = start; t <= start + 600; t += 5) {
    // cpu constant (a saturated host), memory changing every round.
    const out = filter.run({ timestamp: t, metrics: { cpu: 100, memory: 40 + (t % 7) } });
    if (out) {
      sent++;
      if ("cpu" in out.metrics) cpuCarried++;
      // Arrives one second later.
      table.ingest(message(out.timestamp, out.metrics, { interval: 5, keepalive: 60 }), t + 1);
    }
    // Every second in between, cpu is current with its value.
    for (let s = t + 1; s < t + 6; s++) {
      const values = table.values("web-1", s);
      assert.equal(values.cpu, 100, `cpu missing at +${s - start}s`);
      assert.ok("memory" in values);
    }
  }
  assert.equal(sent, 121);
  // The filter really held cpu back: sent once per 12 samples.
  assert.equal(cpuCarried, 11);
  const snapshot = table.get("web-1", start + 601)!;
  assert.equal(snapshot.metrics.cpu.stale, false);
  assert.equal(snapshot.metrics.cpu.reported_at, start + 600);
  assert.equal(snapshot.keepalive, 60);
  assert.equal(snapshot.stale, false);
});

Deno.test("agent_state: a metric no sample carries goes stale after keep-alive + interval + grace, and only a sample revives it", () => {
  const table = new AgentStateTable();
  const window = 3 + 1 + STALE_GRACE_SECONDS;
  // memory keeps being sent, cpu only once.
  table.ingest(message(100, { cpu: 5, memory: 50 }, { interval: 1, keepalive: 3 }), 100);
  for (let t = 101; t <= 120; t++) {
    table.ingest(message(t, { memory: 50 + t }, { interval: 1, keepalive: 3 }), t);
    const snapshot = table.get("web-1", t)!;
    assert.equal(snapshot.metrics.cpu.stale, t >= 100 + window, `cpu at ${t}`);
    assert.equal(snapshot.metrics.memory.stale, false);
  }
  // Exactly at reported + window.
  const t2 = new AgentStateTable();
  t2.ingest(message(100, { cpu: 5 }, { interval: 1, keepalive: 3 }), 100);
  assert.equal(t2.get("web-1", 100 + window - 0.001)!.metrics.cpu.stale, false);
  assert.equal(t2.get("web-1", 100 + window)!.metrics.cpu.stale, true);
  assert.equal(t2.get("web-1", 100 + window)!.metrics.cpu.stale_at, 100 + window);
  assert.deepEqual(t2.values("web-1", 100 + window), {});
  // The stale value is kept (shown as stale), and a new sample revives it.
  assert.equal(t2.get("web-1", 200)!.metrics.cpu.value, 5);
  assert.equal(t2.get("web-1", 200)!.stale, true);
  t2.ingest(message(200, { cpu: 6 }, { interval: 1, keepalive: 3 }), 200);
  assert.deepEqual(t2.values("web-1", 200.5), { cpu: 6 });
});

Deno.test("agent_state: without keepalive in the sample the default window applies", () => {
  const table = new AgentStateTable();
  table.ingest(message(0, { cpu: 1 }), 0);
  const window = DEFAULT_KEEPALIVE_SECONDS + DEFAULT_INTERVAL_SECONDS + STALE_GRACE_SECONDS;
  assert.equal(table.get("web-1", window - 1)!.metrics.cpu.stale, false);
  assert.equal(table.get("web-1", window)!.metrics.cpu.stale, true);
});

Deno.test("agent_state: re-delivered and late samples never replace newer values", () => {
  const table = new AgentStateTable();
  table.ingest(message(10, { cpu: 10, memory: 1 }), 10);
  table.ingest(message(20, { cpu: 20 }), 20);
  // At-least-once: the first sample again, and an older one arriving late.
  table.ingest(message(10, { cpu: 10, memory: 1 }), 21);
  table.ingest(message(15, { cpu: 15, memory: 2 }), 22);
  const snapshot = table.get("web-1", 23)!;
  assert.equal(snapshot.metrics.cpu.value, 20);
  assert.equal(snapshot.metrics.cpu.reported_at, 20);
  // memory from 15 is newer than memory from 10.
  assert.equal(snapshot.metrics.memory.value, 2);
  assert.equal(snapshot.last_sample, 20);
  assert.equal(snapshot.samples, 4);
});

Deno.test("agent_state: a timestamp in the future counts as now", () => {
  const table = new AgentStateTable();
  table.ingest(message(1000, { cpu: 1 }, { interval: 1, keepalive: 1 }), 100);
  assert.equal(table.get("web-1", 100)!.metrics.cpu.reported_at, 100);
  assert.equal(table.get("web-1", 110)!.metrics.cpu.stale, true);
});

Deno.test("agent_state: heartbeat gone makes every value stale at once; reconnects and heartbeats reset nothing", () => {
  const table = new AgentStateTable();
  table.connection("web-1", true, "host-1");
  table.heartbeat("web-1", true, 99);
  table.ingest(message(100, { cpu: 5 }, { counters: { "disk read": 4096 } }), 100);
  // A disconnect with the heartbeat alive (failing over, broker restart): values stay.
  table.connection("web-1", false);
  assert.deepEqual(table.values("web-1", 110), { cpu: 5 });
  table.connection("web-1", true);
  table.heartbeat("web-1", true, 111);
  assert.deepEqual(table.values("web-1", 112), { cpu: 5 });
  assert.equal(table.get("web-1", 112)!.up, true);
  // The heartbeat expires: stale from then on, counters too.
  table.heartbeat("web-1", false, 120);
  const down = table.get("web-1", 120)!;
  assert.equal(down.up, false);
  assert.equal(down.metrics.cpu.stale, true);
  assert.equal(down.metrics.cpu.stale_at, 120);
  assert.equal(down.counters["disk read"].stale, true);
  assert.equal(down.stale, true);
  // Coming back does not revive old values; a new sample does.
  table.heartbeat("web-1", true, 125);
  assert.deepEqual(table.values("web-1", 126), {});
  table.ingest(message(127, { cpu: 7 }), 127);
  assert.deepEqual(table.values("web-1", 128), { cpu: 7 });
  // A late old sample (re-sent buffer) from before the outage stays stale.
  table.ingest(message(118, { memory: 3 }), 129);
  assert.equal(table.get("web-1", 129)!.metrics.memory.stale, true);
});

Deno.test("agent_state: counters follow their own newest sample; a restart that sends everything again resets nothing", () => {
  const table = new AgentStateTable();
  table.ingest(
    message(1, { cpu: 1, "disk read": 100 }, { counters: { "disk read": 1000 }, keepalive: 60 }),
    1,
  );
  table.ingest(message(2, { cpu: 1 }, { counters: { "disk read": 1100 }, keepalive: 60 }), 2);
  // The agent restarts (a new process: its duplicate filter starts empty and sends everything).
  table.ingest(
    message(10, { cpu: 1, "disk read": 0 }, { counters: { "disk read": 1100 }, keepalive: 60 }),
    10,
  );
  const snapshot = table.get("web-1", 11)!;
  assert.equal(snapshot.counters["disk read"].value, 1100);
  assert.equal(snapshot.counters["disk read"].reported_at, 10);
  assert.equal(snapshot.metrics["disk read"].value, 0);
  assert.equal(snapshot.samples, 3);
  assert.deepEqual(table.ids(), ["web-1"]);
  assert.equal(snapshot.hostname, "host-1");
  assert.equal(snapshot.up, null);
  assert.equal(snapshot.connected, null);
});
