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
import { PROC_READER_PROGRAM } from "./proc_reader.ts";
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
}

/**
 * The agent's permissions with the `native` metrics source:
 * - `--allow-sys=hostname` (default id), `cpus` (cpu), `systemMemoryInfo` (memory);
 * - `--allow-run=awk` (disk read/write, net in/out: `/proc/diskstats`,
 *   `/proc/net/dev` through one long-lived reader child; Deno refuses to read
 *   /proc itself without --allow-all) and `df` (disk);
 * - `--allow-net` to the broker, `--allow-read` of the config file and TLS
 *   files. No gRPC environment variables: the agent's stream client is
 *   written on node:http2 (services/rpc/client.ts) and reads none, and its
 *   etcd store uses the HTTP gateway ({@linkcode agentStorePermissions}).
 */
export function agentPermissions(input: AgentPermissionInput): AgentPermissions {
  const metrics = input.metrics ?? METRIC_NAMES;
  const sys = ["hostname"];
  if (metrics.includes("cpu")) sys.push("cpus");
  if (metrics.includes("memory")) sys.push("systemMemoryInfo");
  const run: string[] = [];
  if (metrics.some((m) => m === "disk read" || m === "disk write" || m.startsWith("net "))) {
    run.push(PROC_READER_PROGRAM);
  }
  if (metrics.includes("disk")) run.push("df");
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
    sys,
    run,
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
