/**
 * Shared pieces of the benchmarks: statistics (medians, percentiles), the
 * result rows every scenario returns, simulated metrics, the table printer and
 * the machine and version description written with each run.
 *
 * @module
 */

/** One figure of a scenario, one row of the printed table. */
export interface Row {
  /** Scenario number and short title, e.g. `1 throughput`. */
  scenario: string;
  /** What was measured, e.g. `broker → kafka mock, samples/s`. */
  measure: string;
  /** The figure (undefined when it could not be measured; `note` says why). */
  value?: number;
  /** Unit of `value`, e.g. `samples/s`, `ms`, `×`. */
  unit: string;
  /** How it was measured: repetitions, load, conditions. */
  note?: string;
}

/** What a scenario gets from the runner. */
export interface BenchContext {
  /** `--quick`: smaller loads and shorter runs (a smoke run within a minute in total). */
  quick: boolean;
  /** Scenario 8 (fleet) overrides from the command line; each unset one keeps the scenario's choice. */
  fleet?: FleetFlags;
  /** A fresh temporary directory, removed when the run ends. */
  tempDir(prefix: string): Promise<string>;
  /** Progress line on stderr. */
  progress(message: string): void;
}

/** `--fleet-*` and `--cpu-prof` flags of the runner (scenario 8). */
export interface FleetFlags {
  /** Broker counts to run, e.g. `[1, 2]` (default 1, 2, 4). */
  brokers?: number[];
  /** The ladder of fleet sizes, e.g. `[2000, 4000]`. */
  agents?: number[];
  /** Seconds measured per step. */
  stepS?: number;
  /** Writes the V8 CPU profile (`deno run --cpu-prof`) of each agent (scenario 5), broker and simulator (scenario 8) process into this directory. */
  cpuProfDir?: string;
}

/** A benchmark scenario. */
export interface Scenario {
  /** Short id used by `--only`, e.g. `throughput`. */
  id: string;
  /** Number and title, e.g. `1 throughput`. */
  title: string;
  /** Runs the scenario and returns its rows; throws only when it could not run at all. */
  run(ctx: BenchContext): Promise<Row[]>;
}

/** The median of `values` (NaN for none). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The `p`-th percentile (nearest rank on sorted values; NaN for none). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/**
 * The six metrics of a simulated sample (random values), as the agents and
 * the broker's data messages carry them.
 */
export function randomMetrics(): Record<string, number> {
  return {
    cpu: Math.random() * 100,
    memory: Math.random() * 100,
    "disk read": Math.random() * 1e6,
    "disk write": Math.random() * 1e6,
    "net in": Math.random() * 1e6,
    "net out": Math.random() * 1e6,
  };
}

/** Rounds to a sensible number of significant digits for the table. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value);
  if (abs >= 10) return Math.round(value * 10) / 10;
  if (abs >= 1) return Math.round(value * 100) / 100;
  return Math.round(value * 1000) / 1000;
}

/** Formats rows as a fixed-width text table. */
export function formatTable(rows: readonly Row[]): string {
  const header = ["scenario", "measure", "value", "unit", "note"];
  const cells = rows.map((r) => [
    r.scenario,
    r.measure,
    r.value === undefined || !Number.isFinite(r.value) ? "n/a" : String(round(r.value)),
    r.unit,
    r.note ?? "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c.map((cell, i) => (i === 2 ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}

/** Formats rows as a Markdown table (for the README). */
export function formatMarkdown(rows: readonly Row[]): string {
  const out = ["| scenario | measure | value | unit | note |", "| --- | --- | ---: | --- | --- |"];
  for (const r of rows) {
    const value = r.value === undefined || !Number.isFinite(r.value)
      ? "n/a"
      : String(round(r.value));
    out.push(`| ${r.scenario} | ${r.measure} | ${value} | ${r.unit} | ${r.note ?? ""} |`);
  }
  return out.join("\n");
}

/** The machine a run was measured on. */
export interface MachineInfo {
  cpu_model: string;
  cores: number;
  memory_bytes: number;
  os: string;
  kernel: string;
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/**
 * Reads files under /proc through `cat`: Deno refuses /proc to anything but
 * --allow-all, and the bench keeps explicit permission lists.
 */
export async function readProc(...paths: string[]): Promise<string> {
  const out = await new Deno.Command("cat", { args: paths, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `bench: cannot read ${paths.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/** Describes this machine (from /proc and /etc/os-release). */
export async function machineInfo(): Promise<MachineInfo> {
  const cpuinfo = await readProc("/proc/cpuinfo").catch(() => "");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown";
  const osRelease = readText("/etc/os-release");
  const pretty = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(osRelease)?.[1] ?? Deno.build.os;
  let memory = 0;
  try {
    memory = Deno.systemMemoryInfo().total;
  } catch { /* not permitted */ }
  let kernel = "";
  try {
    kernel = Deno.osRelease();
  } catch { /* not permitted */ }
  return {
    cpu_model: model,
    cores: navigator.hardwareConcurrency,
    memory_bytes: memory,
    os: pretty,
    kernel,
  };
}

/** First line of `command args` that matches `pattern`, or "not installed". */
async function toolVersion(command: string, args: string[], pattern: RegExp): Promise<string> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return text.split("\n").find((line) => pattern.test(line))?.trim() ?? "unknown";
  } catch {
    return "not installed";
  }
}

/** Versions of the programs the benchmarks run beside the product (etcd, collectd). */
export async function toolVersions(): Promise<Record<string, string>> {
  return {
    etcd: await toolVersion("etcd", ["--version"], /^etcd Version/i),
    collectd: await toolVersion("collectd", ["-h"], /^collectd \d/),
  };
}

/** Deno, V8, TypeScript and the pinned npm dependencies (from deno.json). */
export function versions(denoJsonPath: string): Record<string, string | Record<string, string>> {
  let deps: Record<string, string> = {};
  try {
    const json = JSON.parse(Deno.readTextFileSync(denoJsonPath)) as {
      imports?: Record<string, string>;
    };
    deps = json.imports ?? {};
  } catch { /* missing deno.json: no deps listed */ }
  return {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    deps,
  };
}

/** CPU time (user + system, including reaped children) and peak RSS of a process, from /proc. */
export interface ProcUsage {
  /** CPU seconds: utime + stime + cutime + cstime. */
  cpuSeconds: number;
  /** Peak resident set size (VmHWM), bytes. */
  peakRssBytes: number;
  /** Current resident set size (VmRSS), bytes. */
  rssBytes: number;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/** Reads {@linkcode ProcUsage} of `pid`; throws naming the pid when /proc has no such process. */
export async function procUsage(pid: number): Promise<ProcUsage> {
  const stat = await readProc(`/proc/${pid}/stat`);
  const status = await readProc(`/proc/${pid}/status`);
  // Fields after the parenthesized command name (which may contain spaces).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14 -> index 11.
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  const kb = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return {
    cpuSeconds: ticks / CLOCK_TICKS,
    peakRssBytes: kb("VmHWM") * 1024,
    rssBytes: kb("VmRSS") * 1024,
  };
}

/** Reads lines of a byte stream. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
    }
  }
  if (buffered) yield buffered;
}

/**
 * Arrivals seen by a bench consumer of `monitoring-data`: each sample's
 * timestamp (Unix seconds) and its latency on arrival (ms).
 *
 * @example
 * ```ts
 * const arrivals = new Arrivals();
 * arrivals.record(JSON.stringify({ timestamp: Date.now() / 1000 - 0.02 }));
 * console.log(arrivals.between(0, Infinity)); // about [20]
 * arrivals.clear();
 * ```
 */
export class Arrivals {
  /** Sample timestamps (Unix seconds), in arrival order. */
  readonly sent: number[] = [];
  /** Latency of each arrival (ms), beside {@linkcode Arrivals.sent}. */
  readonly latency: number[] = [];

  /** Records one data message (`{"agent_id","hostname","timestamp","metrics"}`) arriving now. */
  record(value: string): void {
    const now = Date.now() / 1000;
    const timestamp = (JSON.parse(value) as { timestamp: number }).timestamp;
    this.sent.push(timestamp);
    this.latency.push((now - timestamp) * 1000);
  }

  /** Latencies of samples sent in [from, to) (Unix seconds). */
  between(from: number, to: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.sent.length; i++) {
      if (this.sent[i] >= from && this.sent[i] < to) out.push(this.latency[i]);
    }
    return out;
  }

  /** Forgets every arrival. */
  clear(): void {
    this.sent.length = 0;
    this.latency.length = 0;
  }
}
