import assert from "node:assert/strict";
import { FleetState } from "./fleet.ts";

const T = 1_700_000_000;

Deno.test("fleet: a metric missing from a sample is carried forward, then stale past the keep-alive window", () => {
  const fleet = new FleetState();
  const sample = (t: number, metrics: Record<string, number>) => ({
    agent_id: "web-1",
    hostname: "h1",
    timestamp: t,
    metrics,
    interval: 1,
    keepalive: 12,
  });
  fleet.applySample(sample(T, { cpu: 5, disk: 40 }), T * 1000);
  fleet.applySample(sample(T + 1, { cpu: 6 }), (T + 1) * 1000);
  let row = fleet.row("web-1", (T + 2) * 1000)!;
  assert.equal(row.health, "unknown");
  assert.deepEqual(row.metrics.disk, { value: 40, t: T, stale_at: T + 15, stale: false });
  assert.equal(row.stale_window_s, 15);
  row = fleet.row("web-1", (T + 20) * 1000)!;
  assert.equal(row.metrics.disk.stale, true);
  assert.deepEqual(fleet.sparklines("web-1").cpu, { t: [T, T + 1], v: [5, 6] });
});

Deno.test("fleet: health and the heartbeat's details; a dead agent's values are stale at once", () => {
  const fleet = new FleetState();
  fleet.applySample(
    { agent_id: "web-1", hostname: "h1", timestamp: T, metrics: { cpu: 5 } },
    T * 1000,
  );
  fleet.applyHealth("web-1", {
    status: "alive",
    last_seen: T + 1,
    details: {
      version: "1.2.3",
      status: "degraded",
      reasons: ["plugin spike failed: boom", "invalid config at /monitor/config/web-1"],
      plugins: [{ name: "spike", state: "failed", reason: "boom" }, { name: "x" }],
      config_source: "own",
      config_revision: 7,
    },
  }, (T + 1) * 1000);
  let row = fleet.row("web-1", (T + 2) * 1000)!;
  assert.equal(row.health, "alive");
  assert.equal(row.version, "1.2.3");
  assert.equal(row.last_seen, T + 1);
  assert.deepEqual(row.plugins, [
    { name: "spike", state: "failed", reason: "boom" },
    { name: "x", state: "unknown" },
  ]);
  assert.deepEqual(row.config_problems, ["invalid config at /monitor/config/web-1"]);
  assert.equal(row.metrics.cpu.stale, false);
  fleet.applyHealth("web-1", { status: "dead", last_seen: T + 1 }, (T + 3) * 1000);
  row = fleet.row("web-1", (T + 3) * 1000)!;
  assert.equal(row.health, "dead");
  assert.equal(row.metrics.cpu.stale, true);
  fleet.applyAlert({
    agent_id: "web-1",
    metric: "cpu",
    value: 99,
    threshold: 80,
    state: "firing",
    timestamp: T,
  });
  assert.equal(fleet.row("web-1")!.firing.length, 1);
  fleet.applyAlert({
    agent_id: "web-1",
    metric: "cpu",
    value: 10,
    threshold: 80,
    state: "resolved",
    timestamp: T + 5,
  });
  assert.equal(fleet.row("web-1")!.firing.length, 0);
});
