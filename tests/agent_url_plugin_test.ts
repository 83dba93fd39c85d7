/**
 * The agent runs a URL plugin through the real plugin loader: pinned in the
 * embedded store (services/plugin_loader pinPlugin, modules served over HTTP
 * on 127.0.0.1), verified and run in a Worker, configured by name.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startAgent } from "../services/agent/mod.ts";
import { setLogLevel } from "../services/common/log.ts";
import { pinPlugin } from "../services/plugin_loader/mod.ts";
import { embeddedStore, MiniBroker } from "./agent_support.ts";
import { openSite } from "./fixtures/url_plugins/site.ts";

setLogLevel("warn");

const PLUGIN_SOURCE = `
export default function createPlugin() {
  let factor = 1;
  let interval = 0;
  return {
    name: "scale",
    version: "1.0.0",
    initialize(config: Record<string, unknown>, context: { interval: number }) {
      factor = Number(config.factor ?? 1);
      interval = context.interval;
    },
    run(sample: { timestamp: number; metrics: Record<string, number> }) {
      const metrics: Record<string, number> = { interval };
      for (const [name, value] of Object.entries(sample.metrics)) metrics[name] = value * factor;
      return { timestamp: sample.timestamp, metrics };
    },
    finalize() {},
  };
}
`;

Deno.test("agent: a pinned URL plugin named in the config runs in the pipeline; an unpinned one is refused", async () => {
  const backend = await embeddedStore();
  const site = await openSite();
  const broker = await MiniBroker.start();
  let agent;
  try {
    // A plugin module of its own (no imports), served by the fixture site.
    await site.write("/agentscale@1.0.0/mod.ts", PLUGIN_SOURCE);
    await pinPlugin(backend.store, "/monitor", "scale", {
      url: site.url("/agentscale@1.0.0/mod.ts"),
      config: { factor: 3 },
    }, { cacheDir: join(backend.dir, "plugin-cache") });
    await backend.store.put(
      "/monitor/config/url-1",
      JSON.stringify({
        interval: 3600,
        metrics: ["memory"],
        plugins: [{ name: "scale", config: { factor: 10 } }],
      }),
    );
    agent = await startAgent({
      agentId: "url-1",
      store: backend.store,
      broker: broker.address,
      stateDir: backend.dir,
    });
    const last = await agent.collectNow(false);
    assert.ok(last.sent, JSON.stringify(agent.status().plugins));
    // The agent's settings override the pin's (factor 10, not 3); the plugin sees the interval.
    assert.ok(Math.abs(last.sent.metrics.memory - last.collected.metrics.memory * 10) < 1e-6);
    assert.equal(last.sent.metrics.interval, 3600);
    const [state] = agent.status().plugins as Array<Record<string, unknown>>;
    assert.equal(state.name, "scale");
    assert.equal(state.kind, "url");
    assert.equal(state.state, "active");
    assert.equal(state.version, "1.0.0");

    // A config naming a URL plugin that has no pin is refused; the last good one stays.
    await backend.store.put(
      "/monitor/config/url-1",
      JSON.stringify({ interval: 3600, metrics: ["memory"], plugins: [{ name: "unpinned" }] }),
    );
    const deadline = Date.now() + 10_000;
    while (agent.status().status !== "degraded" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const status = agent.status();
    assert.equal(status.status, "degraded");
    assert.match((status.problems as string[]).join(), /unknown plugin "unpinned"/);
    assert.equal((status.plugins as Array<{ name: string }>)[0].name, "scale");
  } finally {
    await agent?.stop();
    await broker.close();
    await site.cleanup();
    await backend.cleanup();
  }
});
