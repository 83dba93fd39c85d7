/**
 * Scenario 5: agent footprint. A real agent process at a 1 s interval with
 * the seed's default metrics and built-in plugins, streaming to a broker,
 * beside collectd (Debian `collectd-core`) with the cpu, memory, disk and
 * interface plugins at the same interval writing CSV; both run at the same
 * time and are measured the same way from /proc: CPU seconds (user +
 * system, children included) over the window and peak RSS (VmHWM).
 *
 * @module
 */
import { join } from "node:path";
import { DEFAULT_AGENT_CONFIG_JSON } from "../services/config/agent_config.ts";
import type { MetricName } from "../services/common/messages.ts";
import { sleep, within } from "../services/common/async.ts";
import { storeKeys } from "../services/store/keys.ts";
import { startAgentProcess } from "./agent_process.ts";
import { benchBroker, embeddedBus, embeddedStore } from "./backends.ts";
import {
  type BenchContext,
  type ProcUsage,
  procUsage,
  type Row,
  type Scenario,
} from "./support.ts";

/** Install command shown when collectd is missing. */
export const COLLECTD_INSTALL = "apt-get install -y collectd-core";

/** Starts collectd in the foreground; undefined when it is not installed. */
function spawnCollectd(conf: string): Deno.ChildProcess | undefined {
  try {
    return new Deno.Command("collectd", {
      args: ["-f", "-C", conf],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** A minimal collectd.conf: the same metrics at a 1 s interval, CSV output in `dir`. */
export function collectdConfig(dir: string, intervalSeconds: number): string {
  return [
    `Hostname "bench"`,
    "FQDNLookup false",
    `BaseDir "${dir}"`,
    `PIDFile "${join(dir, "collectd.pid")}"`,
    `PluginDir "/usr/lib/collectd"`,
    `TypesDB "/usr/share/collectd/types.db"`,
    `Interval ${intervalSeconds}`,
    "LoadPlugin cpu",
    "LoadPlugin memory",
    "LoadPlugin disk",
    "LoadPlugin interface",
    "LoadPlugin csv",
    "<Plugin csv>",
    `  DataDir "${join(dir, "csv")}"`,
    "  StoreRates true",
    "</Plugin>",
    "",
  ].join("\n");
}

interface Measured {
  start: ProcUsage;
  end: ProcUsage;
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const windowMs = ctx.quick ? 10_000 : 60_000;
  const scenario = "5 footprint";
  const dir = await ctx.tempDir("bench-footprint-");
  const agentId = "footprint-agent";
  const store = await embeddedStore(dir);
  const bus = await embeddedBus(dir);
  const metrics = DEFAULT_AGENT_CONFIG_JSON.metrics as MetricName[];
  const config = { ...DEFAULT_AGENT_CONFIG_JSON, interval: 1 };
  await store.put(storeKeys().config(agentId), JSON.stringify(config));
  const broker = await benchBroker(bus, store);
  let collectd: Deno.ChildProcess | undefined;
  const agent = startAgentProcess(
    broker.address,
    agentId,
    { backend: "embedded", dir },
    metrics,
  );
  let agentUse: Measured | undefined;
  let collectdUse: Measured | undefined;
  let samples = 0;
  try {
    const confDir = await ctx.tempDir("bench-collectd-");
    const conf = join(confDir, "collectd.conf");
    await Deno.writeTextFile(conf, collectdConfig(confDir, 1));
    collectd = spawnCollectd(conf);
    if (!collectd) {
      ctx.progress(`footprint: collectd not installed (${COLLECTD_INSTALL}); agent alone`);
    }
    await agent.ready(30_000);
    // Both past start-up (collectd has no ready signal; one interval is enough).
    await sleep(1500);
    const samplesBefore = broker.stats().total.samples;
    const [a0, c0] = await Promise.all([
      procUsage(agent.pid),
      collectd ? procUsage(collectd.pid) : undefined,
    ]);
    ctx.progress(
      `footprint: measuring agent${collectd ? " and collectd" : ""} for ${windowMs / 1000} s`,
    );
    await sleep(windowMs);
    const [a1, c1] = await Promise.all([
      procUsage(agent.pid),
      collectd ? procUsage(collectd.pid) : undefined,
    ]);
    samples = broker.stats().total.samples - samplesBefore;
    agentUse = { start: a0, end: a1 };
    if (c0 && c1) collectdUse = { start: c0, end: c1 };
  } finally {
    await agent.stop();
    if (collectd) {
      try {
        collectd.kill("SIGTERM");
      } catch { /* gone */ }
      const stderr = new Response(collectd.stderr).text();
      await within(collectd.status, 5000, "collectd to stop").catch(() => {
        try {
          collectd!.kill("SIGKILL");
        } catch { /* gone */ }
      });
      await stderr.catch(() => "");
    }
    await broker.stop();
    await bus.close();
    await store.close();
  }
  const seconds = windowMs / 1000;
  const cpu = (m: Measured) => m.end.cpuSeconds - m.start.cpuSeconds;
  const mib = (bytes: number) => bytes / 2 ** 20;
  const rows: Row[] = [
    {
      scenario,
      measure: `agent CPU over ${seconds} s`,
      value: cpu(agentUse!),
      unit: "CPU s",
      note:
        `interval 1 s, seed metrics + duplicate_filter, threshold_alert; ${samples} samples reached the broker; ${
          (100 * cpu(agentUse!) / seconds).toFixed(2)
        } % of a core`,
    },
    {
      scenario,
      measure: "agent peak RSS",
      value: mib(agentUse!.end.peakRssBytes),
      unit: "MiB",
      note: `VmHWM of the deno process; start-up CPU ${agentUse!.start.cpuSeconds.toFixed(2)} s`,
    },
  ];
  if (collectdUse) {
    rows.push(
      {
        scenario,
        measure: `collectd CPU over ${seconds} s`,
        value: cpu(collectdUse),
        unit: "CPU s",
        note: "cpu, memory, disk, interface plugins, interval 1 s, csv output, same window",
      },
      {
        scenario,
        measure: "collectd peak RSS",
        value: mib(collectdUse.end.peakRssBytes),
        unit: "MiB",
        note: "VmHWM",
      },
      {
        scenario,
        measure: "ratio agent / collectd, CPU",
        value: cpu(collectdUse) > 0 ? cpu(agentUse!) / cpu(collectdUse) : NaN,
        unit: "×",
        note: cpu(collectdUse) > 0 ? "" : "collectd used less than one clock tick (10 ms)",
      },
      {
        scenario,
        measure: "ratio agent / collectd, peak RSS",
        value: agentUse!.end.peakRssBytes / collectdUse.end.peakRssBytes,
        unit: "×",
      },
    );
  } else {
    rows.push({
      scenario,
      measure: "collectd",
      unit: "",
      note: `not installed: ${COLLECTD_INSTALL}`,
    });
  }
  return rows;
}

/** Scenario 5. */
export const footprintScenario: Scenario = { id: "footprint", title: "5 footprint", run };
