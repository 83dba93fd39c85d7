import assert from "node:assert/strict";
import type { AlertEvent, PluginContext } from "../api.ts";
import { ThresholdAlertPlugin } from "./mod.ts";

function harness() {
  const alerts: AlertEvent[] = [];
  const lines: string[] = [];
  const context: PluginContext = {
    agentId: "t",
    hostname: "h",
    interval: 1,
    log: (level, message) => lines.push(`${level} ${message}`),
    emitAlert: (alert) => alerts.push(alert),
  };
  return { alerts, lines, context };
}

Deno.test("threshold_alert: fires after `consecutive` breaches and resolves with hysteresis", () => {
  const { alerts, lines, context } = harness();
  const plugin = new ThresholdAlertPlugin();
  plugin.initialize({ cpu: 80, consecutive: 3, hysteresis: 5 }, context);
  const cpu = [85, 90, 79, 85, 86, 87, 88, 78, 76, 74, 90];
  cpu.forEach((value, i) => {
    const out = plugin.run({ timestamp: i, metrics: { cpu: value } });
    assert.deepEqual(out, { timestamp: i, metrics: { cpu: value } }, "samples pass unchanged");
  });
  assert.deepEqual(alerts, [
    // 85, 90 then 79 resets the count; 85, 86, 87 fire at the third breach.
    { metric: "cpu", value: 87, threshold: 80, state: "firing", timestamp: 5 },
    // 78 and 76 are within the hysteresis band (>= 75): still firing; 74 resolves.
    { metric: "cpu", value: 74, threshold: 80, state: "resolved", timestamp: 9 },
  ]);
  assert.equal(lines.length, 2);
  assert.match(lines[0], /^warn ALERT firing: cpu = 87\.0 above 80/);
  assert.match(lines[1], /^info ALERT resolved: cpu = 74\.0/);
});

Deno.test("threshold_alert: defaults cpu 80, memory 85, disk 90; settings override by metric name", () => {
  const { alerts, context } = harness();
  const plugin = new ThresholdAlertPlugin();
  plugin.initialize({ consecutive: 1, memory: 90 }, context);
  plugin.run({ timestamp: 1, metrics: { cpu: 81, memory: 89, disk: 91, "net in": 1e9 } });
  assert.deepEqual(alerts.map((a) => [a.metric, a.threshold]), [["cpu", 80], ["disk", 90]]);
  plugin.run({ timestamp: 2, metrics: { memory: 95 } });
  assert.deepEqual(alerts.at(-1), {
    metric: "memory",
    value: 95,
    threshold: 90,
    state: "firing",
    timestamp: 2,
  });
});

Deno.test("threshold_alert: thresholds on rate metrics when configured", () => {
  const { alerts, context } = harness();
  const plugin = new ThresholdAlertPlugin();
  plugin.initialize({ "net in": 1000, consecutive: 2, hysteresis: 100 }, context);
  for (const value of [2000, 3000, 950, 850]) {
    plugin.run({ timestamp: value, metrics: { "net in": value } });
  }
  assert.deepEqual(alerts.map((a) => `${a.state}@${a.value}`), ["firing@3000", "resolved@850"]);
});

Deno.test("threshold_alert: a firing alert stays firing across a settings change", () => {
  const { alerts, context } = harness();
  const plugin = new ThresholdAlertPlugin();
  plugin.initialize({ consecutive: 1 }, context);
  plugin.run({ timestamp: 1, metrics: { cpu: 95 } });
  plugin.initialize({ consecutive: 2, cpu: 90 }, context);
  plugin.run({ timestamp: 2, metrics: { cpu: 96 } });
  plugin.run({ timestamp: 3, metrics: { cpu: 60 } });
  assert.deepEqual(alerts.map((a) => a.state), ["firing", "resolved"]);
});
