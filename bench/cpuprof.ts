/**
 * `deno run --allow-read bench/cpuprof.ts <file.cpuprofile> [--top N] [--from S] [--to S]`:
 * the top entries of a V8 CPU profile (as written by `deno run --cpu-prof`,
 * e.g. by `deno task bench --only fleet --cpu-prof <dir>`), in % of busy
 * time: self time per function and per module (npm package, runtime module,
 * or file of this repository), and time per caller, each sample charged to
 * the nearest frame of an npm package or of this repository (so a socket
 * write made by kafkajs counts for kafkajs). Idle time (`(idle)`) is counted
 * but left out of the percentages. `--from`/`--to` keep the samples between
 * those seconds of the profile (e.g. the steady part of a bench step, not
 * the connection phase); the busy time per second is printed to find them.
 *
 * ```ts
 * import { summarize } from "./cpuprof.ts";
 * const top = summarize({ nodes: [], samples: [], timeDeltas: [] }, 5);
 * console.log(top.busyMs); // 0
 * ```
 *
 * @module
 */

/** The parts of a `.cpuprofile` read here. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }>;
  samples: number[];
  timeDeltas: number[];
}

/** One line of the summary. */
export interface ProfileEntry {
  name: string;
  ms: number;
  /** Share of busy (not idle) time, %. */
  percent: number;
}

/** What {@linkcode summarize} returns. */
export interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  /** Self time per function. */
  functions: ProfileEntry[];
  /** Self time per module. */
  modules: ProfileEntry[];
  /** Time charged to the nearest npm package or repository module on the stack. */
  callers: ProfileEntry[];
  /** Busy ms in each second of the profile (all samples, before the window). */
  perSecond: number[];
}

/** Samples kept by {@linkcode summarize}: between these seconds from the profile's start. */
export interface ProfileWindow {
  fromS?: number;
  toS?: number;
}

/** The module a script URL belongs to: `npm:<package>`, `node:<module>`, or the repository path. */
export function moduleOf(url: string): string {
  if (!url) return "(native)";
  const npm = /\/npm\/registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (npm) return `npm:${npm[1]}`;
  const node = /^(?:ext|node):(?:node\/)?(?:.*\/)?([^/]+?)(?:\.[jt]s)?$/.exec(url);
  if (node) return `runtime:${node[1]}`;
  const repo = /\/(services|bench|tests)\/(.*)$/.exec(url);
  if (repo) return `${repo[1]}/${repo[2]}`;
  return url;
}

/** Self time per function and per module, and time per caller, busiest first. */
export function summarize(
  profile: CpuProfile,
  top = 25,
  window: ProfileWindow = {},
): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const from = (window.fromS ?? 0) * 1e6;
  const to = (window.toS ?? Infinity) * 1e6;
  const self = new Map<number, number>();
  const perSecond: number[] = [];
  let t = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    const name = byId.get(id)?.callFrame.functionName;
    if (name !== "(idle)") {
      const second = Math.floor(t / 1e6);
      perSecond[second] = (perSecond[second] ?? 0) + delta / 1000;
    }
    if (t < from || t > to) continue;
    self.set(id, (self.get(id) ?? 0) + delta / 1000);
  }
  const functions = new Map<string, number>();
  const modules = new Map<string, number>();
  const callers = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, ms: number) =>
    map.set(key, (map.get(key) ?? 0) + ms);
  let idleMs = 0;
  let busyMs = 0;
  for (const [id, ms] of self) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    if (frame.functionName === "(idle)") {
      idleMs += ms;
      continue;
    }
    busyMs += ms;
    const mod = moduleOf(frame.url);
    add(functions, `${frame.functionName || "(anonymous)"} ${mod}:${frame.lineNumber + 1}`, ms);
    add(modules, mod, ms);
    // No npm or repository frame on the stack: the nearest runtime module, else the native name.
    let caller = "";
    let runtime = "";
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const url = byId.get(at)!.callFrame.url;
      const m = moduleOf(url);
      if (m.startsWith("npm:") || /^(services|bench|tests)\//.test(m)) {
        caller = m;
        break;
      }
      if (!runtime && url) runtime = `${m} (runtime only)`;
    }
    add(callers, caller || runtime || `(native) ${frame.functionName}`, ms);
  }
  const list = (map: Map<string, number>) =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, ms]) => ({
      name,
      ms: Math.round(ms),
      percent: busyMs > 0 ? Math.round(ms / busyMs * 1000) / 10 : 0,
    }));
  return {
    busyMs,
    idleMs,
    functions: list(functions),
    modules: list(modules),
    callers: list(callers),
    perSecond: perSecond.map((ms) => Math.round(ms ?? 0)),
  };
}

if (import.meta.main) {
  const option = (name: string) => {
    const at = Deno.args.indexOf(name);
    return at >= 0 ? Number(Deno.args[at + 1]) : undefined;
  };
  const files = Deno.args.filter((a, i) =>
    !a.startsWith("--") && !["--top", "--from", "--to"].includes(Deno.args[i - 1])
  );
  if (files.length === 0) {
    console.error("usage: bench/cpuprof.ts <file.cpuprofile>... [--top N] [--from S] [--to S]");
    Deno.exit(2);
  }
  const window = { fromS: option("--from"), toS: option("--to") };
  for (const file of files) {
    const profile = JSON.parse(await Deno.readTextFile(file)) as CpuProfile;
    const summary = summarize(profile, option("--top") ?? 25, window);
    console.log(`${file}: busy ms per second: ${summary.perSecond.join(" ")}`);
    console.log(
      `window ${window.fromS ?? 0}..${window.toS ?? "end"} s: busy ${
        Math.round(summary.busyMs)
      } ms, idle ${Math.round(summary.idleMs)} ms`,
    );
    for (
      const [title, entries] of [
        ["by caller (npm package or repository module nearest on the stack)", summary.callers],
        ["by module (self time)", summary.modules],
        ["by function (self time)", summary.functions],
      ] as const
    ) {
      console.log(`  ${title}, % of busy:`);
      for (const e of entries) console.log(`    ${String(e.percent).padStart(5)} %  ${e.name}`);
    }
  }
}
