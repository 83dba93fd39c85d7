/**
 * Scenario 5: agent footprint. Two real agent processes at a 1 s interval
 * with the seed's default metrics and built-in plugins, one on the embedded
 * store and one on etcd (tests/harness/etcd.ts), each streaming to its own
 * broker, beside collectd (Debian `collectd-core`) with the cpu, memory, disk
 * and interface plugins at the same interval writing CSV; all run at the same
 * time and are measured the same way from /proc: CPU seconds (user + system,
 * reaped children included, and the agent's live /proc reader child added)
 * over the window, CPU until the window, and peak RSS (VmHWM).
 *
 * @module
 */
import { join } from "node:path";
import { DEFAULT_AGENT_CONFIG_JSON } from "../services/config/agent_config.ts";
import type { MetricName } from "../services/common/messages.ts";
import { sleep, within } from "../services/common/async.ts";
import { storeKeys } from "../services/store/keys.ts";
import type { Broker } from "../services/broker/mod.ts";
import type { Store } from "../services/store/mod.ts";
import { type EtcdServer, startEtcd } from "../tests/harness/mod.ts";
import { type AgentProcess, startAgentProcess } from "./agent_process.ts";
import { benchBroker, embeddedBus, embeddedStore, etcdStore } from "./backends.ts";
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

/** Children of `pid` (the agent's /proc reader), by `pgrep -P`; empty when none. */
async function childPids(pid: number): Promise<number[]> {
  const out = await new Deno.Command("pgrep", { args: ["-P", String(pid)], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).map(Number);
}

/**
 * A process and its live children (the agent's long-lived /proc reader,
 * which is not reaped and so not in the agent's own children's times):
 * CPU summed; peak RSS of the process itself, and of the children apart.
 */
async function treeUsage(pid: number): Promise<ProcUsage & { childPeakRssBytes: number }> {
  const own = await procUsage(pid);
  let cpu = own.cpuSeconds;
  let childPeak = 0;
  for (const child of await childPids(pid)) {
    const usage = await procUsage(child).catch(() => undefined);
    if (!usage) continue;
    cpu += usage.cpuSeconds;
    childPeak += usage.peakRssBytes;
  }
  return { ...own, cpuSeconds: cpu, childPeakRssBytes: childPeak };
}

interface AgentRun {
  label: "embedded" | "etcd";
  agent: AgentProcess;
  broker: Broker;
  use?: Measured & { childPeakRssBytes: number };
  samples: number;
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const windowMs = ctx.quick ? 10_000 : 60_000;
  const scenario = "5 footprint";
  const dir = await ctx.tempDir("bench-footprint-");
  const metrics = DEFAULT_AGENT_CONFIG_JSON.metrics as MetricName[];
  const config = JSON.stringify({ ...DEFAULT_AGENT_CONFIG_JSON, interval: 1 });
  const store = await embeddedStore(dir);
  const bus = await embeddedBus(dir);
  const runs: AgentRun[] = [];
  let etcd: EtcdServer | undefined;
  let etcdStoreHandle: Store | undefined;
  let collectd: Deno.ChildProcess | undefined;
  let collectdUse: Measured | undefined;
  const notes: Row[] = [];
  try {
    await store.put(storeKeys("/monitor").config("footprint-embedded"), config);
    const brokerE = await benchBroker(bus, store);
    runs.push({
      label: "embedded",
      broker: brokerE,
      agent: startAgentProcess(
        brokerE.address,
        "footprint-embedded",
        {
          backend: "embedded",
          dir,
        },
        metrics,
        ctx.fleet?.cpuProfDir,
      ),
      samples: 0,
    });
    etcd = await startEtcd().catch((error: Error) => {
      ctx.progress(`footprint: no etcd: ${error.message}`);
      notes.push({ scenario, measure: "agent on etcd", unit: "", note: error.message });
      return undefined;
    });
    if (etcd) {
      etcdStoreHandle = await etcdStore(etcd.endpoint);
      await etcdStoreHandle.put(storeKeys("/monitor").config("footprint-etcd"), config);
      const brokerX = await benchBroker(bus, etcdStoreHandle);
      runs.push({
        label: "etcd",
        broker: brokerX,
        agent: startAgentProcess(
          brokerX.address,
          "footprint-etcd",
          {
            backend: "etcd",
            endpoint: etcd.endpoint,
            stateDir: await ctx.tempDir("bench-footprint-etcd-"),
          },
          metrics,
          ctx.fleet?.cpuProfDir,
        ),
        samples: 0,
      });
    }
    const confDir = await ctx.tempDir("bench-collectd-");
    const conf = join(confDir, "collectd.conf");
    await Deno.writeTextFile(conf, collectdConfig(confDir, 1));
    collectd = spawnCollectd(conf);
    if (!collectd) {
      ctx.progress(`footprint: collectd not installed (${COLLECTD_INSTALL}); agents alone`);
    }
    for (const r of runs) await r.agent.ready(30_000);
    // Past start-up (collectd has no ready signal; one interval is enough).
    await sleep(1500);
    const before = runs.map((r) => r.broker.stats().total.samples);
    const [starts, c0] = await Promise.all([
      Promise.all(runs.map((r) => treeUsage(r.agent.pid))),
      collectd ? procUsage(collectd.pid) : undefined,
    ]);
    ctx.progress(
      `footprint: measuring the agents (${runs.map((r) => r.label).join(", ")})${
        collectd ? " and collectd" : ""
      } for ${windowMs / 1000} s`,
    );
    await sleep(windowMs);
    const [ends, c1] = await Promise.all([
      Promise.all(runs.map((r) => treeUsage(r.agent.pid))),
      collectd ? procUsage(collectd.pid) : undefined,
    ]);
    runs.forEach((r, i) => {
      r.samples = r.broker.stats().total.samples - before[i];
      r.use = {
        start: starts[i],
        end: ends[i],
        childPeakRssBytes: Math.max(starts[i].childPeakRssBytes, ends[i].childPeakRssBytes),
      };
    });
    if (c0 && c1) collectdUse = { start: c0, end: c1 };
  } finally {
    for (const r of runs) await r.agent.stop();
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
    for (const r of runs) await r.broker.stop();
    await etcdStoreHandle?.close();
    await etcd?.stop();
    await bus.close();
    await store.close();
  }
  const seconds = windowMs / 1000;
  const cpu = (m: Measured) => m.end.cpuSeconds - m.start.cpuSeconds;
  const mib = (bytes: number) => bytes / 2 ** 20;
  const rows: Row[] = [];
  for (const r of runs) {
    const use = r.use!;
    rows.push(
      {
        scenario,
        measure: `agent CPU over ${seconds} s, ${r.label} store`,
        value: cpu(use),
        unit: "CPU s",
        note:
          `interval 1 s, seed metrics + duplicate_filter, threshold_alert; ${r.samples} samples reached the broker; ${
            (100 * cpu(use) / seconds).toFixed(2)
          } % of a core; its /proc reader included`,
      },
      {
        scenario,
        measure: `agent CPU per collection, ${r.label} store`,
        value: r.samples > 0 ? 1000 * cpu(use) / r.samples : NaN,
        unit: "ms",
        note: "all the agent's CPU in the window / collections (10 ms ticks)",
      },
      {
        scenario,
        measure: `agent peak RSS, ${r.label} store`,
        value: mib(use.end.peakRssBytes),
        unit: "MiB",
        note: `VmHWM of the deno process (its /proc reader: ${
          mib(use.childPeakRssBytes).toFixed(1)
        } MiB more)`,
      },
      {
        scenario,
        measure: `agent start-up CPU, ${r.label} store`,
        value: use.start.cpuSeconds,
        unit: "CPU s",
        note: "from start to ready + 1.5 s",
      },
    );
  }
  rows.push(...notes);
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
    );
    for (const r of runs) {
      const use = r.use!;
      rows.push(
        {
          scenario,
          measure: `ratio agent (${r.label}) / collectd, CPU`,
          value: cpu(collectdUse) > 0 ? cpu(use) / cpu(collectdUse) : NaN,
          unit: "×",
          note: cpu(collectdUse) > 0
            ? "goal <= 2"
            : "collectd used less than one clock tick (10 ms)",
        },
        {
          scenario,
          measure: `ratio agent (${r.label}) / collectd, peak RSS`,
          value: use.end.peakRssBytes / collectdUse.end.peakRssBytes,
          unit: "×",
        },
      );
    }
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
