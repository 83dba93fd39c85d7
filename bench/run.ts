/**
 * The benchmark runner (started by bench/main.ts with scoped permissions):
 * `deno task bench [--quick] [--only id,id] [--markdown]` runs the
 * benchmark scenarios, prints a table and writes the results as JSON to
 * `bench-results/<timestamp>.json` with the machine and versions.
 *
 * Figures are medians over repeated runs and comparisons are ratios
 * measured in the same run; nothing fails on a number. A scenario that
 * cannot run at all is shown with its error and makes the exit status 1.
 *
 * @module
 */
import { Command, CommanderError } from "commander";
import { fileURLToPath } from "node:url";
import { join, resolve } from "node:path";
import { setLogLevel } from "../services/common/log.ts";
import {
  type BenchContext,
  type FleetFlags,
  formatMarkdown,
  formatTable,
  machineInfo,
  type Row,
  type Scenario,
  toolVersions,
  versions,
} from "./support.ts";
import { throughputScenario } from "./throughput.ts";
import { latencyScenario } from "./latency.ts";
import { commandsScenario } from "./commands.ts";
import { configScenario } from "./config.ts";
import { footprintScenario } from "./footprint.ts";
import { pluginsScenario } from "./plugins.ts";
import { validateScenario } from "./validate.ts";
import { fleetScenario } from "./fleet.ts";
import { dashboardScenario } from "./dashboard.ts";

/** Every scenario, in the order they run. */
export const SCENARIOS: readonly Scenario[] = [
  throughputScenario,
  latencyScenario,
  commandsScenario,
  configScenario,
  footprintScenario,
  pluginsScenario,
  validateScenario,
  fleetScenario,
  dashboardScenario,
];

const ROOT = fileURLToPath(new URL("..", import.meta.url));

interface Flags {
  quick: boolean;
  only: string[] | undefined;
  markdown: boolean;
  fleet: FleetFlags;
}

/** A comma-separated list of positive integers, or an error naming the flag. */
function positiveList(flag: string, value: string): number[] {
  const list = value.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (list.length === 0 || list.some((n) => !Number.isSafeInteger(n) || n <= 0)) {
    throw new Error(
      `${flag}: expected a comma-separated list of positive integers, found ${
        JSON.stringify(value)
      }`,
    );
  }
  return list;
}

/** The command line, in the style of every task (commander); exits 0 after --help, 2 on a mistake. */
function parseFlags(args: string[]): Flags {
  const ids = SCENARIOS.map((s) => s.id);
  const program = new Command()
    .name("deno task bench")
    .description(
      "Benchmarks of the real components; writes bench-results/<time>.json and prints a table.",
    )
    .option("--quick", "smaller loads and shorter runs (about a minute in total)")
    .option("--only <ids>", `run only these scenarios, comma-separated: ${ids.join(", ")}`)
    .option("--markdown", "also print the table as Markdown (for the README)")
    .option("--fleet-brokers <counts>", "scenario 8: broker counts to run (default: 1,2,4)")
    .option("--fleet-agents <sizes>", "scenario 8: fleet sizes to step through, e.g. 2000,4000")
    .option("--fleet-step <seconds>", "scenario 8: seconds measured per step (default: 15)")
    .option(
      "--cpu-prof <dir>",
      "scenario 5: write each agent's V8 CPU profile into <dir>; scenario 8: each broker's and simulator's",
    )
    .exitOverride()
    .showHelpAfterError();
  try {
    program.parse(args, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) Deno.exit(error.exitCode === 0 ? 0 : 2);
    throw error;
  }
  const opts = program.opts<{
    quick?: boolean;
    only?: string;
    markdown?: boolean;
    fleetBrokers?: string;
    fleetAgents?: string;
    fleetStep?: string;
    cpuProf?: string;
  }>();
  const flags: Flags = {
    quick: Boolean(opts.quick),
    only: undefined,
    markdown: Boolean(opts.markdown),
    fleet: {},
  };
  if (opts.fleetBrokers !== undefined) {
    flags.fleet.brokers = positiveList("--fleet-brokers", opts.fleetBrokers);
  }
  if (opts.fleetAgents !== undefined) {
    flags.fleet.agents = positiveList("--fleet-agents", opts.fleetAgents);
  }
  if (opts.fleetStep !== undefined) {
    const [seconds] = positiveList("--fleet-step", opts.fleetStep);
    flags.fleet.stepS = seconds;
  }
  if (opts.cpuProf !== undefined) flags.fleet.cpuProfDir = resolve(opts.cpuProf);
  if (opts.only !== undefined) {
    flags.only = opts.only.split(",").map((s) => s.trim()).filter(Boolean);
    if (flags.only.length === 0) {
      throw new Error("--only: expected a comma-separated list of scenario ids");
    }
    const unknown = flags.only.filter((id) => !ids.includes(id));
    if (unknown.length) {
      throw new Error(
        `--only: unknown scenario ${unknown.join(", ")}; expected one of ${ids.join(", ")}`,
      );
    }
  }
  return flags;
}

async function main() {
  let flags: Flags;
  try {
    flags = parseFlags(Deno.args);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    Deno.exit(2);
  }
  // Product loggers would print a line per connected agent: warnings and errors only.
  setLogLevel("warn");
  const temps: string[] = [];
  const startedAt = new Date();
  const ctx: BenchContext = {
    quick: flags.quick,
    fleet: flags.fleet,
    async tempDir(prefix) {
      const dir = await Deno.makeTempDir({ prefix });
      temps.push(dir);
      return dir;
    },
    progress(message) {
      const seconds = ((Date.now() - startedAt.getTime()) / 1000).toFixed(1).padStart(6);
      console.error(`[bench ${seconds}s] ${message}`);
    },
  };
  const chosen = SCENARIOS.filter((s) => !flags.only || flags.only.includes(s.id));
  const rows: Row[] = [];
  const results: Array<{ id: string; title: string; seconds: number; error?: string }> = [];
  let failed = false;
  try {
    for (const scenario of chosen) {
      ctx.progress(`${scenario.title}: starting`);
      const t0 = performance.now();
      try {
        rows.push(...await scenario.run(ctx));
        results.push({
          id: scenario.id,
          title: scenario.title,
          seconds: (performance.now() - t0) / 1000,
        });
      } catch (error) {
        failed = true;
        const message = error instanceof Error ? error.message : String(error);
        ctx.progress(`${scenario.title}: could not run: ${message}`);
        rows.push({
          scenario: scenario.title,
          measure: "could not run",
          unit: "",
          note: message.split("\n")[0],
        });
        results.push({
          id: scenario.id,
          title: scenario.title,
          seconds: (performance.now() - t0) / 1000,
          error: message,
        });
      }
      ctx.progress(`${scenario.title}: done in ${(performance.now() - t0) / 1000 | 0} s`);
    }
  } finally {
    for (const dir of temps) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const machine = await machineInfo();
  const report = {
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    mode: flags.quick ? "quick" : "full",
    machine,
    versions: { ...versions(join(ROOT, "deno.json")), tools: await toolVersions() },
    notes: [
      "Medians over repeated runs; ratios measured in the same run.",
      "Everything (simulated agents, broker, Kafka mock, etcd, consumers) shares this machine; figures are noisy.",
    ],
    scenarios: results,
    rows,
  };
  const dir = join(ROOT, "bench-results");
  await Deno.mkdir(dir, { recursive: true });
  const file = join(dir, `${startedAt.toISOString().replaceAll(":", "-")}.json`);
  await Deno.writeTextFile(file, JSON.stringify(report, null, 2) + "\n");

  console.log(
    `\nmonitor bench (${report.mode}) on ${machine.cpu_model}, ${machine.cores} cores, ${
      Math.round(machine.memory_bytes / 2 ** 30)
    } GiB, ${machine.os}; deno ${Deno.version.deno}\n`,
  );
  console.log(formatTable(rows));
  if (flags.markdown) console.log(`\n${formatMarkdown(rows)}`);
  console.log(`\nresults: ${file}`);
  if (failed) Deno.exit(1);
  // Libraries (kafkajs, grpc-js) can leave timers behind after closing; the run is over.
  Deno.exit(0);
}

if (import.meta.main) await main();
