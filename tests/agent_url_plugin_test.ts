/**
 * The agent runs a URL plugin through the real plugin loader: pinned in the
 * embedded store (services/plugin_loader pinPlugin, modules served over HTTP
 * on 127.0.0.1), verified and run in a Worker, configured by name.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startAgent } from "../services/agent/mod.ts";
import { setLogLevel, setLogSink } from "../services/common/log.ts";
import { pinPlugin } from "../services/plugin_loader/mod.ts";
import type { HeartbeatValue } from "../services/agent/heartbeat.ts";
import { embeddedStore, MiniBroker, output, waitFor } from "./agent_support.ts";
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

Deno.test("agent: a tampered URL plugin, one that cannot be fetched and one breaking its sandbox are disabled, said in the log, status and heartbeat; the other plugins keep running", async () => {
  const backend = await embeddedStore();
  const site = await openSite();
  const broker = await MiniBroker.start();
  const logged: string[] = [];
  setLogSink((line) => logged.push(line));
  let agent;
  try {
    await site.write("/agentscale@1.0.0/mod.ts", PLUGIN_SOURCE);
    await pinPlugin(backend.store, "/monitor", "scale", {
      url: site.url("/agentscale@1.0.0/mod.ts"),
    });
    // marker: pinned, then one byte of its dependency changes on the site (nothing cached).
    await pinPlugin(backend.store, "/monitor", "marker", {
      url: site.url("/marker@1.0.0/mod.ts"),
      permissions: { net: [site.host] },
    });
    await site.changeOneByte("/marker@1.0.0/dep.ts", "1", "2");
    // gone: pinned, then its module disappears from the site (nothing cached).
    // (Other bytes than scale's: the cache is content-addressed, scale's copy would serve it.)
    await site.write("/gone@1.0.0/mod.ts", `// gone\n${PLUGIN_SOURCE}`);
    await pinPlugin(backend.store, "/monitor", "gone", { url: site.url("/gone@1.0.0/mod.ts") });
    await Deno.remove(join(site.dir, "gone@1.0.0/mod.ts"));
    // snoop: reads a file it was not granted (the agent itself may read it).
    const secret = join(await site.tempDir(), "secret.txt");
    await Deno.writeTextFile(secret, "secret");
    await pinPlugin(backend.store, "/monitor", "snoop", {
      url: site.url("/snoop@1.0.0/mod.ts"),
      config: { action: "read", path: secret },
    });
    await backend.store.put(
      "/monitor/config/bad-url-1",
      JSON.stringify({
        interval: 3600,
        metrics: ["memory"],
        plugins: ["marker", "gone", "snoop", { name: "scale", config: { factor: 2 } }, "logger"],
      }),
    );
    agent = await startAgent({
      agentId: "bad-url-1",
      store: backend.store,
      broker: broker.address,
      stateDir: backend.dir,
    });
    const last = await agent.collectNow(false);
    // scale ran after the two broken plugins; the sample went on.
    assert.ok(last.sent, JSON.stringify(agent.status().plugins));
    assert.ok(Math.abs(last.sent.metrics.memory - last.collected.metrics.memory * 2) < 1e-6);
    assert.equal(site.hits("/ran/marker-dep"), 0, "no byte of the tampered plugin ran");

    // The broker's status command: both disabled at once (the violation after one call).
    const status = output(await broker.command("status"));
    assert.equal(status.status, "degraded");
    const states = Object.fromEntries(
      (status.plugins as Array<{ name: string; state: string; last_error?: string }>).map((
        p,
      ) => [p.name, p]),
    );
    assert.equal(states.marker.state, "failed");
    assert.match(states.marker.last_error!, /could not load: .*plugin "marker"/);
    assert.ok(states.marker.last_error!.includes(site.url("/marker@1.0.0/dep.ts")));
    assert.equal(states.gone.state, "failed");
    assert.ok(
      states.gone.last_error!.includes(site.url("/gone@1.0.0/mod.ts")),
      String(states.gone.last_error),
    );
    assert.match(states.gone.last_error!, /HTTP 404/);
    assert.equal(states.snoop.state, "disabled");
    assert.ok(
      states.snoop.last_error!.includes(`run() needed read access to "${secret}"`),
      String(states.snoop.last_error),
    );
    assert.equal(states.scale.state, "active");
    assert.equal(states.logger.state, "active");
    const problems = (status.problems as string[]).join("\n");
    assert.match(problems, /plugin marker failed: could not load/);
    assert.match(problems, /plugin snoop disabled: run\(\) threw: plugin "snoop" was stopped/);

    // The heartbeat says the same.
    const beat = await waitFor(
      async () => {
        const kv = await backend.store.get("/monitor/heartbeat/bad-url-1");
        const value = kv ? JSON.parse(kv.value) as HeartbeatValue : undefined;
        return value?.reasons.some((r) => r.startsWith("plugin snoop disabled"))
          ? value
          : undefined;
      },
      10_000,
      "the disabled plugins in the heartbeat",
    );
    assert.equal(beat.status, "degraded");
    assert.deepEqual(
      beat.plugins.map((p) => [p.name, p.state]),
      [
        ["marker", "failed"],
        ["gone", "failed"],
        ["snoop", "disabled"],
        ["scale", "active"],
        ["logger", "active"],
      ],
    );
    assert.ok(beat.reasons.some((r) => r.startsWith("plugin marker failed: could not load")));
    assert.ok(beat.reasons.some((r) => r.startsWith("plugin gone failed: could not load")));

    // And the log.
    assert.ok(
      logged.some((l) => /plugin marker could not load: .*the pipeline runs without it/.test(l)),
      logged.join("\n"),
    );
    assert.ok(
      logged.some((l) => /plugin snoop disabled: .*needed read access/.test(l)),
      logged.join("\n"),
    );
    // A second sample: the disabled plugins are skipped; the agent keeps going.
    const again = await agent.collectNow(false);
    assert.ok(Math.abs(again.sent!.metrics.memory - again.collected.metrics.memory * 2) < 1e-6);

    // reload loads both again: marker is still tampered; snoop starts in a fresh sandbox
    // and is stopped again by its next violation.
    const reload = output(await broker.command("reload"));
    assert.deepEqual(reload.retried_plugins, ["marker", "gone", "snoop"]);
    const stateOf = () =>
      Object.fromEntries(
        (agent!.status().plugins as Array<{ name: string; state: string }>).map((p) => [
          p.name,
          p.state,
        ]),
      );
    assert.deepEqual(stateOf(), {
      marker: "failed",
      gone: "failed",
      snoop: "active",
      scale: "active",
      logger: "active",
    });
    await agent.collectNow(false);
    assert.equal(stateOf().snoop, "disabled");
    assert.equal(site.hits("/ran/marker-dep"), 0);
  } finally {
    await agent?.stop();
    setLogSink(undefined);
    await broker.close();
    await site.cleanup();
    await backend.cleanup();
  }
});
