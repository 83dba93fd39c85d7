/**
 * What the agent process needs from Deno's permission system, so that a
 * launcher (the supervisor) can grant exactly that. See README.md for why
 * each entry is there.
 *
 * @module
 */
import type { MetricName } from "../common/messages.ts";
import { METRIC_NAMES } from "../common/messages.ts";
import { permissionFlags, type PermissionLists, YAML_ENV_VARS } from "../common/permissions.ts";
import type { EtcdClientOptions, OpenStoreOptions, StoreSettings } from "../store/mod.ts";
import { type StorePermissions, storePermissions } from "../store/permissions.ts";
import { nativeMetricAccess } from "./metrics.ts";
import type { Ticker } from "./ticker.ts";

/** The variables npm:yaml reads while parsing (needed with --config monitor.yaml). */
export { YAML_ENV_VARS };

/** The agent's own permission lists (add the store's: services/store/permissions.ts). */
export interface AgentPermissions extends PermissionLists {
  /** `--allow-sys` names. */
  sys: string[];
  /** `--allow-run` programs. */
  run: string[];
}

/** What the agent is asked to do. */
export interface AgentPermissionInput {
  /** Broker `host:port`, or every broker the agent may fail over to (a list, or comma-separated). */
  broker: string | readonly string[];
  /** monitor.yaml, when passed with --config. */
  configFile?: string;
  /** TLS files (CA, certificate, key). */
  tlsFiles?: string[];
  /** File holding the agent token (`agent.token_file`). */
  tokenFile?: string;
  /** Environment variable holding the agent token (`agent.token_env`). */
  tokenEnv?: string;
  /**
   * Metrics the agent may be asked for. The configuration changes live, so
   * the default is every metric.
   */
  metrics?: readonly MetricName[];
  /** Permissions declared by URL plugins (their Workers cannot exceed the agent's). */
  plugins?: Array<{ net?: string[]; read?: string[]; env?: string[] }>;
  /**
   * The metrics source (`auto`, `native` or `systeminformation`; default `auto`, i.e. `native`). `systeminformation`
   * reads `cpu` and `memory` through Deno's `cpus` and `systemMemoryInfo`
   * (the launcher adds what the package itself needs: every variable, `loadavg`).
   */
  metricsSource?: string;
  /** The OS the agent runs on (default: this one's, `Deno.build.os`). */
  os?: string;
}

/**
 * The agent's permissions with the `native` metrics source:
 * - `--allow-sys=hostname` (default id);
 * - on Linux `--allow-run=awk` (cpu, memory, disk read/write, net in/out:
 *   `/proc/stat`, `/proc/meminfo`, `/proc/diskstats`, `/proc/net/dev` through
 *   one long-lived reader child; Deno refuses to read /proc itself without
 *   --allow-all), elsewhere `--allow-sys=cpus` (cpu) and `systemMemoryInfo`
 *   (memory), as {@linkcode nativeMetricAccess} says; `--allow-run=df` (disk);
 * - `--allow-net` to the broker, `--allow-read` of the config file and TLS
 *   files. No gRPC environment variables: the agent's stream client is
 *   written on Deno.connect (services/rpc/client.ts) and reads none, and its
 *   etcd store uses the HTTP gateway ({@linkcode agentStorePermissions}).
 */
export function agentPermissions(input: AgentPermissionInput): AgentPermissions {
  const metrics = input.metrics ?? METRIC_NAMES;
  const viaDeno = input.metricsSource === "systeminformation"
    ? { cpu: "cpus", memory: "systemMemoryInfo" } as Record<string, string>
    : {};
  const sys = ["hostname"];
  const run: string[] = [];
  // In METRIC_NAMES order, so that the lists read the same whatever order metrics came in.
  for (const metric of METRIC_NAMES.filter((m) => metrics.includes(m))) {
    const access = viaDeno[metric]
      ? { sys: viaDeno[metric] }
      : nativeMetricAccess(metric, input.os ?? Deno.build.os);
    if (access.sys) sys.push(access.sys);
    if (access.run) run.push(access.run);
  }
  const plugins = input.plugins ?? [];
  const unique = (list: string[]) => [...new Set(list)];
  return {
    // No proto file: the agent's gRPC client uses the precompiled codec (services/rpc/codec.ts).
    read: unique([
      ...(input.configFile ? [input.configFile] : []),
      ...(input.tlsFiles ?? []),
      ...(input.tokenFile ? [input.tokenFile] : []),
      ...plugins.flatMap((p) => p.read ?? []),
    ]),
    write: [],
    net: unique([
      ...(typeof input.broker === "string" ? input.broker.split(",") : input.broker),
      ...plugins.flatMap((p) => p.net ?? []),
    ]),
    env: unique([
      "CLICOLOR_FORCE", // commander (the CLI)
      ...(input.configFile ? YAML_ENV_VARS : []),
      ...(input.tokenEnv ? [input.tokenEnv] : []),
      ...plugins.flatMap((p) => p.env ?? []),
    ]),
    sys: unique(sys),
    run: unique(run),
  };
}

/**
 * V8 settings of the agent process: a small, steady heap for a process that
 * runs for months doing little. `--max-semi-space-size=1` (MB) keeps the young
 * generation from growing to its default 16 MB per semi-space; `--lite-mode`
 * leaves out the optimizing compiler and allocates feedback lazily, which
 * the agent's little hot code does not miss. Measured with
 * `deno task bench --only footprint` (see README.md, Performance).
 */
export const AGENT_V8_FLAGS: readonly string[] = Object.freeze([
  "--max-semi-space-size=1",
  "--lite-mode",
]);

/**
 * The `deno run` flags of the agent that are not permissions:
 * {@linkcode AGENT_V8_FLAGS}, and `--no-code-cache` (Deno's V8 code cache
 * cost the agent 1-4 MiB and more start-up CPU than compiling its little
 * code lazily; measured with --lite-mode).
 */
export function agentRuntimeFlags(): string[] {
  return ["--no-code-cache", `--v8-flags=${AGENT_V8_FLAGS.join(",")}`];
}

/**
 * {@linkcode agentPermissions} as `deno run` flags (the store's flags come on
 * top), with {@linkcode agentRuntimeFlags}.
 */
export function agentPermissionFlags(input: AgentPermissionInput): string[] {
  const flags = [
    "--no-prompt",
    ...agentRuntimeFlags(),
    ...permissionFlags(agentPermissions(input)),
  ];
  if ((input.plugins ?? []).length > 0) flags.push("--unstable-worker-options");
  return flags;
}

/** The embedded store's poll period in the agent process (ms). */
export const AGENT_STORE_POLL_MS = 1000;

/**
 * How the agent process opens its store (beside monitor.yaml's `store:`).
 * On the embedded backend it polls `PRAGMA data_version` every
 * {@linkcode AGENT_STORE_POLL_MS} instead of following the SQLite file's
 * events: the broker's bus commits to the same file about five times a second
 * per agent, and each commit woke the agent twice for nothing (about a quarter
 * of its CPU at a 1 s interval; README.md, Performance). A configuration change
 * then applies within about a second instead of 5 ms. With `ticker` (the
 * agent's, `AgentOptions.ticker`) the poll and the heartbeat lease's keep-alive
 * run on it, at the last wake-up before they are due, so that they share the
 * collection's wake-up instead of timers of their own. On etcd it uses etcd's
 * HTTP/JSON gateway ({@linkcode AGENT_ETCD_OPTIONS}).
 */
export function agentStoreOptions(ticker?: Ticker): OpenStoreOptions {
  const every = ticker
    ? (work: () => void, periodMs: number) => {
      // Up to a whole period early, i.e. at the last wake-up before it is due: it falls into
      // step with the collection at its first wake-up.
      const task = ticker.task(() => {
        task.in(periodMs, periodMs);
        work();
      });
      task.in(periodMs, periodMs);
      return () => task.cancel();
    }
    : undefined;
  return {
    embedded: { watchFiles: false, pollIntervalMs: AGENT_STORE_POLL_MS, every },
    etcd: AGENT_ETCD_OPTIONS,
  };
}

/**
 * The agent's etcd client: etcd's HTTP/JSON gateway (services/store/etcd_http.ts)
 * instead of the etcd3 package: no grpc-js, protobufjs or `rpc.proto` parsed
 * at start (README.md, Performance), and so no proto directory to read and
 * no GRPC_* variables ({@linkcode agentStorePermissions}).
 */
export const AGENT_ETCD_OPTIONS: Readonly<EtcdClientOptions> = Object.freeze({ client: "http" });

/**
 * The store permissions of the agent process: those of `settings` opened
 * the agent's way ({@linkcode agentStoreOptions}).
 *
 * ```ts
 * import { agentStorePermissions } from "./permissions.ts";
 * agentStorePermissions({ backend: "etcd", endpoints: ["10.0.0.5:2379"], prefix: "/monitor", path: "" });
 * // { read: [], write: [], net: ["10.0.0.5:2379"], env: [] }
 * ```
 */
export function agentStorePermissions(settings: StoreSettings): StorePermissions {
  return storePermissions(settings, { etcd: AGENT_ETCD_OPTIONS });
}

/** {@linkcode agentStorePermissions} as `deno run` flags. */
export function agentStorePermissionFlags(settings: StoreSettings): string[] {
  return permissionFlags(agentStorePermissions(settings));
}
