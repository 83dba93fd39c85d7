import assert from "node:assert/strict";
import type { PluginContext, Sample } from "../api.ts";
import { DEFAULT_MAX_SILENT_INTERVALS, DuplicateFilterPlugin, keepAliveSeconds } from "./mod.ts";

const context: PluginContext = {
  agentId: "t",
  hostname: "h",
  interval: 1,
  log() {},
  emitAlert() {},
};

const sample = (t: number, metrics: Record<string, number>): Sample => ({ timestamp: t, metrics });

Deno.test("duplicate_filter: drops unchanged values, keeps changed ones, drops empty samples", () => {
  const plugin = new DuplicateFilterPlugin();
  plugin.initialize({}, context);
  assert.deepEqual(
    plugin.run(sample(1, { cpu: 10, memory: 50 })),
    sample(1, { cpu: 10, memory: 50 }),
  );
  assert.deepEqual(plugin.run(sample(2, { cpu: 11, memory: 50 })), sample(2, { cpu: 11 }));
  assert.equal(plugin.run(sample(3, { cpu: 11, memory: 50 })), undefined);
  assert.deepEqual(plugin.run(sample(4, { cpu: 11, memory: 51 })), sample(4, { memory: 51 }));
});

Deno.test("duplicate_filter: every metric is sent at least every max_silent_intervals samples", () => {
  const plugin = new DuplicateFilterPlugin();
  plugin.initialize({ max_silent_intervals: 3 }, context);
  const kept: Array<Sample | undefined> = [];
  for (let t = 1; t <= 7; t++) kept.push(plugin.run(sample(t, { cpu: 5 })));
  // Sent at 1, then held back twice, sent again at 4, held twice, sent at 7.
  assert.deepEqual(kept.map((s) => s?.timestamp), [
    1,
    undefined,
    undefined,
    4,
    undefined,
    undefined,
    7,
  ]);
});

Deno.test("duplicate_filter: the tolerance compares with the last value sent, not the last seen", () => {
  const plugin = new DuplicateFilterPlugin();
  plugin.initialize({ tolerance: 1, max_silent_intervals: 100 }, context);
  assert.ok(plugin.run(sample(1, { cpu: 10 })));
  assert.equal(plugin.run(sample(2, { cpu: 10.6 })), undefined);
  assert.equal(plugin.run(sample(3, { cpu: 11 })), undefined);
  // 11.2 is within 1 of the last seen (11) but not of the last sent (10): sent.
  assert.deepEqual(plugin.run(sample(4, { cpu: 11.2 })), sample(4, { cpu: 11.2 }));
});

Deno.test("duplicate_filter: finalize forgets what was sent", () => {
  const plugin = new DuplicateFilterPlugin();
  plugin.initialize({}, context);
  assert.ok(plugin.run(sample(1, { cpu: 1 })));
  plugin.finalize();
  plugin.initialize({}, context);
  assert.deepEqual(plugin.run(sample(2, { cpu: 1 })), sample(2, { cpu: 1 }));
});

Deno.test("duplicate_filter: the keep-alive window agents announce is interval x max_silent_intervals", () => {
  assert.equal(keepAliveSeconds(5, {}), 5 * DEFAULT_MAX_SILENT_INTERVALS);
  assert.equal(keepAliveSeconds(2, { max_silent_intervals: 3 }), 6);
  // Without the filter every sample carries every metric.
  assert.equal(keepAliveSeconds(5, undefined), 5);
});
