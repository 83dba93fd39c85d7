import assert from "node:assert/strict";
import type { PluginContext } from "../api.ts";
import { formatSample, LoggerPlugin } from "./mod.ts";

Deno.test("logger: logs each sample at the configured level and passes it on", () => {
  const lines: string[] = [];
  const context: PluginContext = {
    agentId: "t",
    hostname: "h",
    interval: 1,
    log: (level, message) => lines.push(`${level} ${message}`),
    emitAlert() {},
  };
  const plugin = new LoggerPlugin();
  plugin.initialize({ level: "debug", every: 2 }, context);
  for (let i = 0; i < 5; i++) {
    const sample = { timestamp: 1_700_000_000 + i, metrics: { cpu: 1.5 + i, "disk read": 1024 } };
    assert.deepEqual(plugin.run(sample), sample);
  }
  assert.equal(lines.length, 3, "every 2nd sample: 0, 2, 4");
  assert.equal(lines[0], "debug sample 2023-11-14T22:13:20.000Z cpu=1.50 disk_read=1024");
  plugin.initialize({}, context);
  plugin.run({ timestamp: 0, metrics: {} });
  assert.equal(lines.at(-1), "info sample 1970-01-01T00:00:00.000Z");
});

Deno.test("logger: formatSample writes names without spaces", () => {
  assert.equal(
    formatSample({ timestamp: 0, metrics: { "net out": 2, memory: 40.123 } }),
    "sample 1970-01-01T00:00:00.000Z net_out=2 memory=40.12",
  );
});
