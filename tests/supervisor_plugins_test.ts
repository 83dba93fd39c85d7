/**
 * `deno task up` with a URL plugin declared in monitor.yaml: pinned into
 * the store before the agent starts, the agent granted the plugin's host
 * and nothing wider, and a new version in an edit pinned again and picked
 * up by the running agent (same pid).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openBus } from "../services/bus/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { decodePin } from "../services/plugin_loader/mod.ts";
import { openStore, storeKeys } from "../services/store/mod.ts";
import { collect } from "./broker_support.ts";
import { ServiceProcess } from "./e2e_support.ts";
import { openSite } from "./fixtures/url_plugins/site.ts";
import { freePorts } from "./harness/free_port.ts";

const WAIT_MS = 120_000;

Deno.test("deno task up: URL plugins are pinned before the agent starts and re-pinned on edit", async () => {
  const site = await openSite();
  const dir = await site.tempDir();
  const stateDir = join(dir, "state");
  const file = join(dir, "monitor.yaml");
  const [port, adminPort] = freePorts(2);
  const yaml = (version: string) => `
state_dir: ${stateDir}
broker: { listen: 127.0.0.1:${port}, admin: 127.0.0.1:${adminPort} }
agent: { id: plug-agent }
agents:
  default:
    interval: 1
    metrics: [memory]
    plugins: [{ name: scale, config: { factor: 2 } }]
plugins:
  scale:
    url: ${site.url(`/scale@${version}/mod.ts`)}
`;
  await Deno.writeTextFile(file, yaml("1.0.0"));
  const up = new ServiceProcess("up", ["task", "up", "--config", file], { command: "deno" });
  const dbPath = join(stateDir, "monitor.db");
  const keys = storeKeys("/monitor");
  let store: Awaited<ReturnType<typeof openStore>> | undefined;
  let bus: Awaited<ReturnType<typeof openBus>> | undefined;
  let data: Awaited<ReturnType<typeof collect>> | undefined;
  try {
    await up.waitForLine(
      /supervisor\| .* supervisor: all services ready/,
      WAIT_MS,
      "all services ready",
    );
    assert.ok(up.lines.some((l) => /^plugins +\| scale 1\.0\.0: created/.test(l)), up.output);
    const agentPid = Number(/agent ready \(pid (\d+)\)/.exec(up.output)![1]);
    const ps = await new Deno.Command("ps", { args: ["-o", "args=", "-p", String(agentPid)] })
      .output();
    const args = new TextDecoder().decode(ps.stdout);
    assert.match(args, /--unstable-worker-options/);
    assert.match(args, new RegExp(`--allow-net=127\\.0\\.0\\.1:${port},${site.host}(\\s|$)`));
    assert.match(args, new RegExp(`--allow-write=[^ ]*${stateDir}/plugin-cache`));

    store = await openStore({
      backend: "embedded",
      endpoints: [],
      prefix: "/monitor",
      path: dbPath,
    });
    const pin = decodePin((await store.get(keys.plugin("scale")))!.value, "scale");
    assert.equal(pin.version, "1.0.0");
    bus = await openBus({ backend: "embedded", brokers: [], path: dbPath, clientId: "test" });
    data = await collect(bus, DEFAULT_TOPICS.data);
    type Sample = { agent_id: string; metrics: Record<string, number> };
    // scale 1.0.0 adds an "interval" metric: the plugin runs in the agent.
    await data.waitFor<Sample>(
      (values) => values.some((v) => v.agent_id === "plug-agent" && v.metrics.interval === 1),
      WAIT_MS,
      "samples through scale 1.0.0",
    );

    await Deno.writeTextFile(file, yaml("1.1.0"));
    await up.waitForLine(/scale 1\.1\.0: new-version/, WAIT_MS, "the new pin");
    // scale 1.1.0 adds "scale_version": the running agent loaded the new pin.
    await data.waitFor<Sample>(
      (values) => values.some((v) => v.metrics.scale_version === 1.1),
      WAIT_MS,
      "samples through scale 1.1.0",
    );
    const pids = [...up.output.matchAll(/agent ready \(pid (\d+)\)/g)].map((m) => Number(m[1]));
    assert.deepEqual(pids, [agentPid], "the agent was not restarted");
    up.kill("SIGTERM");
    assert.equal((await up.exited(60_000)).code, 0);
  } finally {
    await data?.close();
    await bus?.close();
    await store?.close();
    await up.stop();
    await site.cleanup();
  }
});
