/**
 * Metric collectors. Only the metrics the current configuration asks for are
 * read, so an agent asked for `cpu` pays for nothing else.
 *
 * Two sources:
 * - `native` (the default): on Linux, `cpu` (the `cpu` line of `/proc/stat`),
 *   `memory` (`/proc/meminfo`), `disk read`/`disk write` (`/proc/diskstats`)
 *   and `net in`/`net out` (`/proc/net/dev`) read together, with one request
 *   per collection, through one long-lived `awk` child (proc_reader.ts,
 *   `--allow-run=awk`: Deno refuses to read `/proc` and `/sys` without
 *   `--allow-all`), started on the first read, asked only for the files the
 *   metrics need, restarted if it dies; `disk` from `df -kP /`
 *   (`--allow-run=df`). No process is started per collection for the /proc
 *   files (a `cat` per collection was most of the agent's busy time at a 1 s
 *   interval), and `os.cpus()` and `Deno.systemMemoryInfo()` are not called
 *   (they cost more CPU than the reader's round trip they now share: they
 *   read /proc/cpuinfo and sysfs too). Elsewhere, `cpu` from `os.cpus()`
 *   times (`--allow-sys=cpus`) and `memory` from `Deno.systemMemoryInfo()`
 *   (`--allow-sys=systemMemoryInfo`); see {@linkcode nativeMetricAccess}.
 * - `systeminformation`: `cpu` from `currentLoad()` and `memory` from `mem()`
 *   of `npm:systeminformation`; the other metrics as in `native`. Importing it
 *   needs `--allow-env` (all variables: it copies `process.env` at load time)
 *   plus `--allow-sys=cpus,loadavg,systemMemoryInfo`. Its `fsStats`,
 *   `disksIO`, `networkStats` and `fsSize` are not used: they run shell
 *   pipelines (`--allow-run` of `sh`, i.e. anything) and probe `/sys`, which
 *   Deno only allows with `--allow-all` (the failure is thrown from a callback
 *   and ends the process). See README.md.
 *
 * Rates (`disk read`, `disk write`, `net in`, `net out`, in bytes/s) and
 * `cpu` (% busy) are differences between two readings. A baseline is taken
 * when a metric is added (agent start or configuration change); the first
 * sample is computed against it, never sent as a made-up 0. When less than
 * {@linkcode MIN_RATE_WINDOW_MS} passed since the baseline (a `collect`
 * command right after start), the collector waits for the rest of that
 * window first. Per-device counters that go backwards (device replaced,
 * counter wrapped) contribute 0 for that round.
 *
 * @module
 */
import type { MetricName } from "../common/messages.ts";
import os from "node:os";
import { errorMessage } from "../common/log.ts";
import { PROC_READER_PROGRAM, ProcReader } from "./proc_reader.ts";

/** Where metrics come from. */
export type MetricsSource = "native" | "systeminformation";

/** Shortest time a rate or cpu value is measured over (ms). */
export const MIN_RATE_WINDOW_MS = 250;

/** What one collection produced. */
export interface Collected {
  /** Unix seconds when the values were read. */
  timestamp: number;
  /** Metric name -> value, only for metrics that could be read. */
  metrics: Record<string, number>;
  /** Metric name -> why it could not be read this time. */
  errors: Record<string, string>;
  /**
   * Raw cumulative counters behind the rate metrics read this time, by metric
   * name: `disk read`/`disk write` bytes, `net in`/`net out` bytes, summed
   * over the devices the rates cover (see DataMessage.counters).
   */
  counters: Record<string, number>;
}

/** Reads the metrics of this host. */
export interface MetricsCollector {
  /** The source in use. */
  readonly source: MetricsSource;
  /** The metrics currently collected. */
  readonly metrics: readonly MetricName[];
  /**
   * Sets the metrics to collect. Metrics measured as differences get a
   * baseline now when they are new.
   */
  configure(metrics: readonly MetricName[]): Promise<void>;
  /** Reads every configured metric. */
  collect(): Promise<Collected>;
  /** Ends the /proc reader child, if one was started. */
  close(): Promise<void>;
}

/** Counters keyed by device, with the time they were read (ms, monotonic). */
interface CounterReading {
  at: number;
  values: Map<string, number>;
}

type CounterName = "cpu" | "disk" | "net";

const COUNTER_OF: Partial<Record<MetricName, CounterName>> = {
  "cpu": "cpu",
  "disk read": "disk",
  "disk write": "disk",
  "net in": "net",
  "net out": "net",
};

/** Counters of each kind asked for, or why that kind could not be read. */
type CounterReadings = Map<CounterName, Map<string, number> | Error>;

/** What one {@linkcode RawReader.read} returns. */
interface RawReadings {
  counters: CounterReadings;
  /** Memory in use, percent (when asked for), or why it could not be read. */
  memory?: number | Error;
}

/** Reads the raw values behind each metric. Implemented per source. */
interface RawReader {
  /**
   * Cumulative counters of every kind in `kinds` and, with `memory`, the
   * memory in use, read together (on Linux, one request to the /proc reader
   * for every /proc file); cpu: `busy`, `total` (any unit).
   */
  read(kinds: ReadonlySet<CounterName>, memory: boolean): Promise<RawReadings>;
  /** Root filesystem in use, percent. */
  diskPercent(): Promise<number>;
}

/** Sums the counters of every device for one direction (`#in` or `#out`). */
function sumCounters(current: Map<string, number>, suffix: string): number {
  let total = 0;
  for (const [key, value] of current) if (key.endsWith(suffix)) total += value;
  return total;
}

function sumDeltas(
  previous: Map<string, number>,
  current: Map<string, number>,
  suffix: string,
): number {
  let total = 0;
  for (const [key, value] of current) {
    if (!key.endsWith(suffix)) continue;
    const before = previous.get(key);
    if (before === undefined) continue; // new device: counted from the next round on
    total += Math.max(0, value - before);
  }
  return total;
}

class Collector implements MetricsCollector {
  readonly source: MetricsSource;
  #reader: RawReader;
  #close: () => Promise<void>;
  #metrics: MetricName[] = [];
  #baselines = new Map<CounterName, CounterReading>();

  constructor(source: MetricsSource, reader: RawReader, close: () => Promise<void>) {
    this.source = source;
    this.#reader = reader;
    this.#close = close;
  }

  close(): Promise<void> {
    return this.#close();
  }

  get metrics(): readonly MetricName[] {
    return this.#metrics;
  }

  #counters(): Set<CounterName> {
    const kinds = new Set<CounterName>();
    for (const metric of this.#metrics) {
      const kind = COUNTER_OF[metric];
      if (kind) kinds.add(kind);
    }
    return kinds;
  }

  async configure(metrics: readonly MetricName[]): Promise<void> {
    this.#metrics = [...metrics];
    const wanted = this.#counters();
    for (const kind of [...this.#baselines.keys()]) {
      if (!wanted.has(kind)) this.#baselines.delete(kind);
    }
    const missing = new Set([...wanted].filter((kind) => !this.#baselines.has(kind)));
    if (missing.size === 0) return;
    const readings = (await this.#reader.read(missing, false)).counters;
    const at = performance.now();
    for (const [kind, values] of readings) {
      // A failed kind is reported by collect(), which retries the baseline.
      if (!(values instanceof Error)) this.#baselines.set(kind, { at, values });
    }
  }

  async collect(): Promise<Collected> {
    const metrics: Record<string, number> = {};
    const errors: Record<string, string> = {};
    const counters: Record<string, number> = {};
    // Let every baseline age at least MIN_RATE_WINDOW_MS.
    let oldest = Infinity;
    for (const baseline of this.#baselines.values()) oldest = Math.min(oldest, baseline.at);
    const wait = oldest === Infinity ? 0 : MIN_RATE_WINDOW_MS - (performance.now() - oldest);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));

    const readings = new Map<CounterName, CounterReading | Error>();
    const kinds = this.#counters();
    const wantMemory = this.#metrics.includes("memory");
    let memory: number | Error | undefined;
    if (kinds.size > 0 || wantMemory) {
      const read = await this.#reader.read(kinds, wantMemory);
      const at = performance.now();
      for (const kind of kinds) {
        const values = read.counters.get(kind) ?? new Error(`no ${kind} counters were read`);
        readings.set(kind, values instanceof Error ? values : { at, values });
      }
      memory = read.memory;
    }
    const timestamp = Date.now() / 1000;
    for (const metric of this.#metrics) {
      try {
        const kind = COUNTER_OF[metric];
        if (!kind) {
          if (metric === "memory") {
            if (memory === undefined) throw new Error("memory was not read");
            if (memory instanceof Error) throw memory;
            metrics.memory = round(memory);
          } else metrics[metric] = round(await this.#reader.diskPercent());
          continue;
        }
        const reading = readings.get(kind)!;
        if (reading instanceof Error) throw reading;
        const baseline = this.#baselines.get(kind);
        if (!baseline) {
          errors[metric] = "no baseline yet (the first reading failed); measured from now on";
          continue;
        }
        const seconds = (reading.at - baseline.at) / 1000;
        if (metric === "cpu") {
          const total = sumDeltas(baseline.values, reading.values, "total");
          const busy = sumDeltas(baseline.values, reading.values, "busy");
          metrics.cpu = total > 0 ? round(Math.min(100, (busy / total) * 100)) : 0;
        } else {
          const suffix = metric === "disk read" || metric === "net in" ? "#in" : "#out";
          metrics[metric] = round(sumDeltas(baseline.values, reading.values, suffix) / seconds);
          counters[metric] = sumCounters(reading.values, suffix);
        }
      } catch (error) {
        errors[metric] = errorMessage(error);
      }
    }
    for (const [kind, reading] of readings) {
      if (!(reading instanceof Error)) this.#baselines.set(kind, reading);
    }
    return { timestamp, metrics, errors, counters };
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

// ---------------------------------------------------------------- native

/**
 * Runs a command and returns what it did; how the collector starts `df`
 * (the /proc reader starts its own child). Replaceable through
 * {@linkcode CollectorOptions.runCommand}.
 */
export type CommandRunner = (
  command: string,
  args: readonly string[],
) => Promise<Deno.CommandOutput>;

/** The default {@linkcode CommandRunner}: `Deno.Command(...).output()` with piped stdout and stderr. */
export const runCommand: CommandRunner = (command, args) =>
  new Deno.Command(command, { args: [...args], stdout: "piped", stderr: "piped" }).output();

/** Runs a fixed command (`df`) and returns its stdout. */
async function runText(
  run: CommandRunner,
  command: string,
  args: string[],
  permission: string,
): Promise<string> {
  let output: Deno.CommandOutput;
  try {
    output = await run(command, args);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      throw new Error(`needs ${permission} (${errorMessage(error)})`);
    }
    throw new Error(`cannot run ${command}: ${errorMessage(error)}`);
  }
  if (!output.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
  return new TextDecoder().decode(output.stdout);
}

/** Sums cpu times of `os.cpus()` into busy and total milliseconds. */
export function cpuTimes(cpus: Array<{ times: Record<string, number> }>): {
  busy: number;
  total: number;
} {
  let busy = 0;
  let total = 0;
  for (const cpu of cpus) {
    const t = cpu.times;
    const used = (t.user || 0) + (t.nice || 0) + (t.sys || 0) + (t.irq || 0);
    busy += used;
    total += used + (t.idle || 0);
  }
  return { busy, total };
}

/** Memory in use, percent: (total - available) / total. */
export function memoryPercent(info: { total: number; available: number }): number {
  if (!(info.total > 0)) throw new Error("the system reported no memory total");
  return ((info.total - info.available) / info.total) * 100;
}

/**
 * The busy and total times of every CPU from the aggregate `cpu` line of
 * `/proc/stat` (its first line), counted as `os.cpus()` counts them: busy is
 * user + nice + system + irq, total adds idle (iowait, softirq and steal are
 * left out, as in Node's and Deno's `os.cpus()`); in clock ticks.
 */
export function parseProcStatCpu(text: string): { busy: number; total: number } {
  const end = text.indexOf("\n");
  const f = (end < 0 ? text : text.slice(0, end)).trim().split(/\s+/);
  const [user, nice, system, idle, , irq] = f.slice(1, 7).map(Number);
  if (f[0] !== "cpu" || ![user, nice, system, idle].every(Number.isFinite)) {
    throw new Error(
      `unexpected first line of /proc/stat: ${JSON.stringify(text.slice(0, 120))}`,
    );
  }
  const busy = user + nice + system + (Number.isFinite(irq) ? irq : 0);
  return { busy, total: busy + idle };
}

/**
 * Memory in use, percent, from the first lines of `/proc/meminfo`
 * (`MemTotal`, `MemAvailable`: Linux 3.14 or later): the same figure as
 * {@linkcode memoryPercent} of `Deno.systemMemoryInfo()`, which reads them too.
 */
export function parseMeminfo(text: string): number {
  const value = (key: string) => {
    const at = text.indexOf(`${key}:`);
    if (at < 0) return NaN;
    const end = text.indexOf("\n", at);
    return Number.parseInt(text.slice(at + key.length + 1, end < 0 ? undefined : end).trim());
  };
  const total = value("MemTotal");
  const available = value("MemAvailable");
  if (!Number.isFinite(total) || !Number.isFinite(available)) {
    throw new Error(
      `/proc/meminfo has no MemTotal and MemAvailable in its first lines (Linux 3.14 or later): ${
        JSON.stringify(text.slice(0, 120))
      }`,
    );
  }
  return memoryPercent({ total, available });
}

/** Device names in `/proc/diskstats` that are not whole physical disks. */
const VIRTUAL_DISK = /^(loop|ram|zram|dm-|md|sr|fd|nbd)\d*/;

/**
 * Parses `/proc/diskstats` into bytes read/written per whole disk: virtual
 * devices (loop, ram, zram, dm, md, sr, fd, nbd) and partitions (a name that
 * is another device's name plus a number, e.g. `sda1`, `nvme0n1p2`) are left
 * out so nothing is counted twice.
 */
export function parseDiskstats(text: string): Map<string, number> {
  const rows = text.split("\n").map((line) => line.trim().split(/\s+/)).filter((f) =>
    f.length >= 10
  );
  const names = new Set(rows.map((f) => f[2]));
  const isPartition = (name: string) => {
    for (const other of names) {
      if (other !== name && name.startsWith(other) && /^p?\d+$/.test(name.slice(other.length))) {
        return true;
      }
    }
    return false;
  };
  const out = new Map<string, number>();
  for (const f of rows) {
    const name = f[2];
    if (VIRTUAL_DISK.test(name) || isPartition(name)) continue;
    out.set(`${name}#in`, Number(f[5]) * 512);
    out.set(`${name}#out`, Number(f[9]) * 512);
  }
  return out;
}

/** Parses `/proc/net/dev` into bytes received/sent per interface, loopback excluded. */
export function parseNetDev(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    if (name === "lo" || name === "" || name.includes("|")) continue;
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (f.length < 9) continue;
    out.set(`${name}#in`, f[0]);
    out.set(`${name}#out`, f[8]);
  }
  return out;
}

/** Parses `df -kP /` output into percent used (as df's Capacity, without rounding). */
export function parseDf(text: string): number {
  const lines = text.trim().split("\n");
  const f = lines[lines.length - 1]?.trim().split(/\s+/) ?? [];
  const used = Number(f[2]);
  const available = Number(f[3]);
  if (!Number.isFinite(used) || !Number.isFinite(available) || used + available <= 0) {
    throw new Error(`unexpected df output: ${JSON.stringify(text.slice(0, 200))}`);
  }
  return (used / (used + available)) * 100;
}

function sysCall<T>(what: string, permission: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      throw new Error(`${what} needs ${permission} (${errorMessage(error)})`);
    }
    throw error;
  }
}

/**
 * The /proc file behind each reading of the native source on Linux, read
 * through the {@linkcode ProcReader} (`:N`: only its first N lines).
 */
const PROC_FILES = {
  cpu: "/proc/stat:1",
  memory: "/proc/meminfo:3",
  disk: "/proc/diskstats",
  net: "/proc/net/dev",
} as const;

type ProcReading = keyof typeof PROC_FILES;

/**
 * Where the native source reads `metric` on `os` (default: this one): on
 * Linux through the /proc reader ({@linkcode PROC_READER_PROGRAM}) but `disk`
 * (`df`); elsewhere `cpu` and `memory` through Deno (`--allow-sys=cpus`,
 * `systemMemoryInfo`). The agent's permission builder grants from this.
 */
export function nativeMetricAccess(
  metric: MetricName,
  os: string = Deno.build.os,
): { run?: string; sys?: string } {
  if (metric === "disk") return { run: "df" };
  if (os === "linux") return { run: PROC_READER_PROGRAM };
  if (metric === "cpu") return { sys: "cpus" };
  if (metric === "memory") return { sys: "systemMemoryInfo" };
  return {};
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** Parses one /proc text into its reading. */
function parseProc(
  what: ProcReading,
  text: string,
): Map<string, number> | number {
  if (what === "cpu") {
    const { busy, total } = parseProcStatCpu(text);
    return new Map([["busy", busy], ["total", total]]);
  }
  if (what === "memory") return parseMeminfo(text);
  return what === "disk" ? parseDiskstats(text) : parseNetDev(text);
}

/**
 * cpu and memory through Deno where there is no /proc (`os.cpus()`,
 * `Deno.systemMemoryInfo()`).
 */
function readThroughDeno(what: "cpu" | "memory"): Map<string, number> | number {
  if (what === "memory") {
    return memoryPercent(
      sysCall("memory", "--allow-sys=systemMemoryInfo", () => Deno.systemMemoryInfo()),
    );
  }
  const { busy, total } = cpuTimes(sysCall("cpu", "--allow-sys=cpus", () => os.cpus()));
  return new Map([["busy", busy], ["total", total]]);
}

function nativeReader(run: CommandRunner, procReader: ProcReader): RawReader {
  return {
    async read(kinds, memory) {
      const wanted: ProcReading[] = [];
      if (kinds.has("cpu")) wanted.push("cpu");
      if (memory) wanted.push("memory");
      if (kinds.has("disk")) wanted.push("disk");
      if (kinds.has("net")) wanted.push("net");
      const got = new Map<ProcReading, Map<string, number> | number | Error>();
      if (Deno.build.os === "linux") {
        // Everything in one request: one round trip to the reader per collection.
        try {
          const texts = wanted.length > 0
            ? await procReader.read(wanted.map((what) => PROC_FILES[what]))
            : [];
          wanted.forEach((what, i) => {
            const text = texts[i];
            try {
              got.set(what, text instanceof Error ? text : parseProc(what, text));
            } catch (error) {
              got.set(what, asError(error));
            }
          });
        } catch (error) {
          for (const what of wanted) got.set(what, asError(error));
        }
      } else {
        for (const what of wanted) {
          try {
            got.set(
              what,
              what === "cpu" || what === "memory" ? readThroughDeno(what) : new Error(
                "disk and network rates are read from /proc on Linux; use the systeminformation source elsewhere",
              ),
            );
          } catch (error) {
            got.set(what, asError(error));
          }
        }
      }
      const counters: CounterReadings = new Map();
      for (const kind of kinds) {
        const value = got.get(kind);
        counters.set(
          kind,
          value instanceof Map || value instanceof Error
            ? value
            : new Error(`no ${kind} counters were read`),
        );
      }
      const out: RawReadings = { counters };
      if (memory) {
        const value = got.get("memory");
        out.memory = typeof value === "number" || value instanceof Error
          ? value
          : new Error("memory was not read");
      }
      return out;
    },
    async diskPercent() {
      return parseDf(await runText(run, "df", ["-kP", "/"], "--allow-run=df"));
    },
  };
}

// ------------------------------------------------------- systeminformation

type SystemInformation = typeof import("systeminformation");

function systeminformationReader(native: RawReader): RawReader {
  let loaded: Promise<SystemInformation> | undefined;
  const si = () => {
    loaded ??= import("systeminformation").then((m) =>
      ((m as { default?: SystemInformation }).default ?? m) as SystemInformation
    ).catch((error) => {
      loaded = undefined;
      throw new Error(
        `cannot load systeminformation (it needs --allow-env): ${errorMessage(error)}`,
      );
    });
    return loaded;
  };
  return {
    async read(kinds, memory) {
      const others = new Set([...kinds].filter((kind) => kind !== "cpu"));
      const result: RawReadings = others.size > 0
        ? await native.read(others, false)
        : { counters: new Map() };
      const out = result.counters;
      if (memory) {
        try {
          const mem = await (await si()).mem();
          result.memory = ((mem.total - mem.available) / mem.total) * 100;
        } catch (error) {
          result.memory = asError(error);
        }
      }
      if (!kinds.has("cpu")) return result;
      try {
        const lib = await si();
        // currentLoad keeps its own baseline; expressed here as busy/total counters of 100.
        const load = await lib.currentLoad();
        const busy = Math.max(0, Math.min(100, load.currentLoad));
        cpuAccumulator.busy += busy;
        cpuAccumulator.total += 100;
        out.set("cpu", new Map([["busy", cpuAccumulator.busy], ["total", cpuAccumulator.total]]));
      } catch (error) {
        out.set("cpu", asError(error));
      }
      return result;
    },
    // fsStats, disksIO, networkStats and fsSize run shell pipelines and probe /sys with
    // fs.existsSync, which under Deno throws NotCapable from a callback (the process dies)
    // unless --allow-all: the native readers are used for these metrics instead.
    diskPercent: () => native.diskPercent(),
  };
}

/** systeminformation measures cpu load between its own calls; accumulated here as counters. */
const cpuAccumulator = { busy: 0, total: 0 };

/** Options of {@linkcode createCollector}. */
export interface CollectorOptions {
  /** Starts `df` (default {@linkcode runCommand}). */
  runCommand?: CommandRunner;
  /** Reads the /proc files (default: a new {@linkcode ProcReader}, closed by `close()`). */
  procReader?: ProcReader;
}

/**
 * Creates a collector.
 * @param source `auto` (= `native`) or a source
 */
export function createCollector(
  source: MetricsSource | "auto" = "auto",
  options: CollectorOptions = {},
): MetricsCollector {
  const chosen: MetricsSource = source === "auto" ? "native" : source;
  const procReader = options.procReader ?? new ProcReader();
  const native = nativeReader(options.runCommand ?? runCommand, procReader);
  return new Collector(
    chosen,
    chosen === "native" ? native : systeminformationReader(native),
    () => options.procReader ? Promise.resolve() : procReader.close(),
  );
}
