/**
 * Scenario 9: the dashboard under a fleet. 1,000 simulated agents publish
 * one sample per second each (six metrics) on the embedded bus; the real
 * analysis application (its own process, its computed permissions) consumes
 * them, keeps the history and serves the dashboard; headless Chromium keeps
 * the fleet page open (bench/dashboard_page.ts, its own process).
 *
 * Measured: sample published → arrived in the open page (p50/p99); the
 * analysis process's CPU and peak RSS over the window; history bytes per
 * agent per day (growth of the history's pages over the window); the agent
 * page with 7 days of history (one agent's history written beforehand: the
 * last 24 h at 1 sample/s, the 6 days before at 1 sample per 10 s): time
 * from choosing the range to every chart drawn.
 *
 * @module
 */
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { mergePermissionFlags } from "../services/common/permissions.ts";
import { analysisPermissionFlags } from "../services/analysis/permissions.ts";
import { HISTORY_FILE, HistoryStore } from "../services/analysis/history.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import { openBus } from "../services/bus/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { storePermissionFlags } from "../services/store/permissions.ts";
import { freePort, requireComponents } from "../tests/harness/mod.ts";
import {
  type BenchContext,
  lines,
  percentile,
  procUsage,
  randomMetrics,
  readProc,
  type Row,
  type Scenario,
} from "./support.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** Data pages of an SQLite file in bytes (what the history holds, free pages excluded). */
function usedBytes(path: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const one = (sql: string) => Number(Object.values(db.prepare(sql).get()!)[0]);
    return (one("PRAGMA page_count") - one("PRAGMA freelist_count")) * one("PRAGMA page_size");
  } finally {
    db.close();
  }
}

/**
 * Reads the dashboard's live events for `ms` as a plain SSE client (no
 * page): the delay from each sample's timestamp to its arrival.
 */
async function sseDelays(url: string, ms: number): Promise<number[]> {
  const delays: number[] = [];
  const response = await fetch(url);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => reader.cancel().catch(() => {}), ms);
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("event: samples\n")) continue;
        const now = Date.now() / 1000;
        const data = JSON.parse(event.slice(event.indexOf("data: ") + 6));
        for (const s of data) delays.push((now - s.t) * 1000);
      }
    }
  } finally {
    clearTimeout(timer);
  }
  return delays;
}

/** Writes 7 days of history for `agent`: the last 24 h at 1 sample/s, the rest at 1 per 10 s. */
function writeWeek(path: string, agent: string, now: number) {
  const history = HistoryStore.open(path);
  const day = 86400;
  let n = 0;
  for (let t = now - 7 * day; t < now; t += t < now - day ? 10 : 1) {
    history.append({ agent_id: agent, hostname: agent, timestamp: t, metrics: randomMetrics() });
    if (++n % 10_000 === 0) history.flush();
  }
  history.maintain();
  history.close();
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const scenario = "9 dashboard";
  const { chromium } = requireComponents(["chromium"]);
  const agents = ctx.quick ? 200 : 1000;
  const windowS = ctx.quick ? 15 : 60;
  const dir = await ctx.tempDir("bench-dashboard-");
  const db = join(dir, "monitor.db");
  const historyPath = join(dir, HISTORY_FILE);
  const now = Math.floor(Date.now() / 1000);
  ctx.progress("dashboard: writing 7 days of history for one agent");
  const weekStarted = performance.now();
  writeWeek(historyPath, "week-agent", now);
  ctx.progress(
    `dashboard: 7 days written in ${((performance.now() - weekStarted) / 1000).toFixed(1)} s`,
  );

  const http = `127.0.0.1:${freePort()}`;
  const bus = await openBus({ backend: "embedded", brokers: [], path: db });
  const storeSettings = {
    backend: "embedded" as const,
    endpoints: [],
    prefix: "/monitor",
    path: db,
  };
  const analysis = new Deno.Command("deno", {
    args: [
      "run",
      "--no-prompt",
      ...mergePermissionFlags(
        analysisPermissionFlags({ stateDir: dir, http }),
        busPermissionFlags({ backend: "embedded", brokers: [], path: db }),
        storePermissionFlags(storeSettings),
      ),
      "services/analysis/main.ts",
      "--supervised",
      "--state-dir",
      dir,
      "--http",
      http,
      "--log-level",
      "warn",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = lines(analysis.stdout);
  let publishing = true;
  let published = 0;
  const publisher = (async () => {
    // Every 100 ms a tenth of the agents publish: each agent once per second.
    let tick = 0;
    while (publishing) {
      const started = Date.now();
      const share = Math.ceil(agents / 10);
      const from = (tick % 10) * share;
      const messages = [];
      for (let i = from; i < Math.min(agents, from + share); i++) {
        const id = `sim-${String(i).padStart(4, "0")}`;
        messages.push({
          key: id,
          value: JSON.stringify({
            agent_id: id,
            hostname: id,
            timestamp: Date.now() / 1000,
            metrics: randomMetrics(),
            interval: 1,
          }),
        });
      }
      await bus.publish(DEFAULT_TOPICS.data, messages);
      published += messages.length;
      tick++;
      await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - started))));
    }
  })();
  try {
    for await (const line of out) if (line === "monitor:ready") break;
    ctx.progress(`dashboard: ${agents} agents at 1 sample/s; warming up 10 s`);
    await new Promise((r) => setTimeout(r, 10_000));
    const before = await procUsage(analysis.pid);
    const bytesBefore = usedBytes(historyPath);
    const publishedBefore = published;
    const loadAvg = (await readProc("/proc/loadavg")).split(" ")[0];
    const t0 = performance.now();
    ctx.progress(`dashboard: fleet page open for ${windowS} s`);
    const plain = sseDelays(`http://${http}/api/events`, windowS * 1000);
    const page = await new Deno.Command("deno", {
      args: [
        "run",
        "--no-prompt",
        "--allow-env",
        "--allow-sys",
        "--allow-net=127.0.0.1",
        `--allow-read`,
        `--allow-write=${Deno.env.get("TMPDIR") || "/tmp"}`,
        `--allow-run=${chromium}`,
        "bench/dashboard_page.ts",
        `http://${http}/`,
        String(windowS),
        "week-agent",
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const elapsed = (performance.now() - t0) / 1000;
    const after = await procUsage(analysis.pid);
    const bytesAfter = usedBytes(historyPath);
    const samples = published - publishedBefore;
    if (!page.success) throw new Error("the browser process failed");
    const result = JSON.parse(new TextDecoder().decode(page.stdout).trim().split("\n").pop()!);
    const delays = result.delays as number[];
    const plainDelays = await plain;
    const median = (v: number[]) => percentile(v, 50);
    const cpu = after.cpuSeconds - before.cpuSeconds;
    const perAgentDay = ((bytesAfter - bytesBefore) / agents) * (86400 / elapsed);
    return [
      {
        scenario,
        measure:
          `sample published → arrived in the open fleet page, ${agents} agents at 1/s: p50 / p99`,
        value: percentile(delays, 99),
        unit: "ms (p99)",
        note: `p50 ${median(delays).toFixed(0)} ms, p99 ${
          percentile(delays, 99).toFixed(0)
        } ms over ${delays.length} samples (${windowS} s); load average ${loadAvg} at the start`,
      },
      {
        scenario,
        measure: "the same, arrived at a plain SSE client (no browser): p50 / p99",
        value: percentile(plainDelays, 99),
        unit: "ms (p99)",
        note: `p50 ${median(plainDelays).toFixed(0)} ms over ${plainDelays.length} samples`,
      },
      {
        scenario,
        measure: "analysis process CPU over the window (history, SSE, consuming)",
        value: (cpu / elapsed) * 100,
        unit: "% of a core",
        note: `${cpu.toFixed(1)} CPU s in ${elapsed.toFixed(0)} s; ${samples} samples published`,
      },
      {
        scenario,
        measure: "analysis process peak RSS",
        value: after.peakRssBytes / 1024 / 1024,
        unit: "MiB",
        note: "VmHWM",
      },
      {
        scenario,
        measure: "history bytes per agent per day at 1 sample/s (6 metrics)",
        value: perAgentDay / 1024 / 1024,
        unit: "MiB",
        note: `${bytesAfter - bytesBefore} bytes for ${agents} agents in ${elapsed.toFixed(0)} s`,
      },
      {
        scenario,
        measure: "agent page, 7 days of history: choose the range → every chart drawn",
        value: median(result.timings["7d"]),
        unit: "ms",
        note: `median of 5 (p100 ${
          Math.max(...result.timings["7d"]).toFixed(0)
        } ms); ${result.points} points in 6 charts; 24 h: ${
          median(result.timings["24h"]).toFixed(0)
        } ms`,
      },
      {
        scenario,
        measure: `fleet page with ${agents} agents: open → first rows shown (50 per page)`,
        value: result.fleetLoadMs,
        unit: "ms",
        note: String(result.summary ?? ""),
      },
    ];
  } finally {
    publishing = false;
    await publisher.catch(() => {});
    try {
      analysis.kill("SIGTERM");
    } catch { /* exited */ }
    await analysis.status;
    await out.return(undefined).catch(() => {});
    await bus.close();
  }
}

/** Scenario 8. */
export const dashboardScenario: Scenario = { id: "dashboard", title: "9 dashboard", run };
