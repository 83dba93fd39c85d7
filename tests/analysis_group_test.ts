/**
 * `deno task analysis` started by hand beside the supervised analysis (which
 * holds the default consumer group) sees the data: an interactive analysis
 * joins a group of its own unless told otherwise.
 */
import assert from "node:assert/strict";
import { openBus } from "../services/bus/mod.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import { analysisPermissionFlags } from "../services/analysis/permissions.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { embeddedPath, tempDir } from "./broker_support.ts";
import { mergePermissionFlags, ServiceProcess } from "./e2e_support.ts";

Deno.test("analysis: an interactive analysis beside the supervised one gets the data (a group of its own)", async () => {
  const dir = await tempDir();
  const bus = await openBus({ backend: "embedded", brokers: [], path: embeddedPath(dir) });
  // The supervised analysis: a member of the default group, holding its topics.
  const held: string[] = [];
  const supervised = await bus.subscribe({
    topics: [DEFAULT_TOPICS.data],
    group: "analysis",
    handler: (m) => void held.push(m.value),
  });
  const analysis = new ServiceProcess("analysis --console", [
    "--no-prompt",
    ...mergePermissionFlags(
      analysisPermissionFlags({ stateDir: dir }),
      busPermissionFlags({ backend: "embedded", brokers: [], path: embeddedPath(dir) }),
    ),
    "services/analysis/main.ts",
    "--console",
    "--state-dir",
    dir,
  ], { stdin: "piped" });
  try {
    const consuming = await analysis.waitForLine(/consuming .* as group/, 30_000, "consuming");
    assert.match(consuming, /as group analysis-console-[0-9a-f]{8} /);
    await bus.publish(DEFAULT_TOPICS.data, [{
      key: "g-1",
      value: JSON.stringify({
        agent_id: "g-1",
        hostname: "g-1.host",
        timestamp: Date.now() / 1000,
        metrics: { cpu: 3 },
      }),
    }]);
    const deadline = Date.now() + 20_000;
    while (!analysis.lines.some((l) => /1 agent\(s\)/.test(l))) {
      assert.ok(Date.now() < deadline, `no data reached the analysis:\n${analysis.output}`);
      await analysis.write("stats\n");
      await new Promise((r) => setTimeout(r, 300));
    }
    await analysis.write("quit\n");
    assert.equal((await analysis.exited(20_000)).code, 0);
    assert.ok(held.length >= 1, "the supervised member still consumes its group");
  } finally {
    await analysis.stop();
    await supervised.close();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
});
