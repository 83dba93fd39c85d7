/**
 * The exact `deno run` command line of every process the supervisor starts,
 * derived from the resolved monitor.yaml: each gets explicit permission
 * lists (network only to the addresses it uses, files only the ones it
 * needs and the state directory, named environment variables, `--allow-sys`
 * and `--allow-run` by name), never `--allow-all`, never `--allow-ffi`.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  agentPermissions,
  agentRuntimeFlags,
  agentStorePermissions,
} from "../agent/permissions.ts";
import { analysisPermissions } from "../analysis/permissions.ts";
import { brokerPermissions } from "../broker/permissions.ts";
import { busPermissions } from "../bus/permissions.ts";
import type { BusSettings } from "../bus/types.ts";
import {
  COMMANDER_ENV_VARS,
  permissionFlags,
  type PermissionLists,
  YAML_ENV_VARS,
} from "../common/permissions.ts";
import { flagValues } from "../config/flags.ts";
import { dialAddress } from "../common/net.ts";
import { CONSOLE_ENV_VARS } from "../console/permissions.ts";
import { agentPluginPermissions } from "../plugin_loader/permissions.ts";
import type { PluginPermissions } from "../plugin_loader/types.ts";
import { storePermissions } from "../store/permissions.ts";
import type { StoreSettings } from "../store/types.ts";
import type { ServiceCommand } from "./process.ts";

/** Root of the repository (the children run there so that deno.json's import map applies). */
export const REPO_ROOT: string = fileURLToPath(new URL("../../", import.meta.url)).replace(
  /\/$/,
  "",
);

/** Exit code of the supervisor asking `deno task up` to validate monitor.yaml again and start it anew. */
export const RELAUNCH_EXIT_CODE = 75;

/** Names of the services, in start order (each depends on the ones before it). */
export const SERVICE_NAMES = ["broker", "analysis", "agent"] as const;
/** One of {@linkcode SERVICE_NAMES}. */
export type ServiceName = typeof SERVICE_NAMES[number];

/** Entry module of each service, relative to the repository. */
export const SERVICE_SCRIPTS: Readonly<Record<ServiceName, string>> = Object.freeze({
  broker: "services/broker/main.ts",
  analysis: "services/analysis/main.ts",
  agent: "services/agent/main.ts",
});

/** The supervisor's own long-running process and the plugin pinning process. */
export const SUPERVISOR_SCRIPT = "services/supervisor/supervise.ts";
/** `deno task plugins` entry, used to pin URL plugins. */
export const PLUGINS_SCRIPT = "services/plugin_loader/main.ts";

/** A URL plugin as far as permissions go: a spec, or a pin (which names every module). */
export interface PluginNeeds {
  url: string;
  permissions?: Partial<PluginPermissions>;
  modules?: { url: string }[];
}

/** What the command lines depend on (all paths absolute). */
export interface DeploymentSettings {
  /**
   * monitor.yaml (passed to every service with `--config`). Always set under
   * the supervisor; a service run alone may have none.
   */
  configFile?: string;
  stateDir: string;
  store: StoreSettings;
  bus: BusSettings;
  /** `--log-level` for every service, when not `info`. */
  logLevel?: string;
  /** `log_format` of monitor.yaml (services get `--log-format` when not text). */
  logFormat?: string;
  broker: {
    /** gRPC address agents connect to (`host:port`). */
    listen: string;
    /** Admin HTTP address (`host:port`), undefined when `off`. */
    admin?: string;
    /** Sink file, if any. */
    sink?: string;
    /** TLS files (certificate, key, CA). */
    tlsFiles: string[];
    /** Files holding the agent and admin tokens (`token_file`, `admin_token_file`). */
    secretFiles?: string[];
    /** Environment variables holding them (`token_env`, `admin_token_env`). */
    secretEnv?: string[];
    /** The admin token's file or variable (the supervisor's console reads it too). */
    adminTokenFile?: string;
    adminTokenEnv?: string;
    /**
     * `broker.replicas`: every broker started on this host, the first being
     * `listen`/`admin` itself (absent: that one only).
     */
    replicas?: Array<{ listen: string; admin?: string }>;
  };
  /** The analysis application's dashboard. */
  analysis?: {
    /** `host:port` of the dashboard, undefined when `off`. */
    http?: string;
    /** TLS of the dashboard (https). */
    tls?: boolean;
    /** The dashboard's TLS files and token file. */
    files: string[];
    /** The environment variable holding its token. */
    env: string[];
  };
  agent: {
    /** Broker address the local agent connects to. */
    broker: string;
    tlsFiles: string[];
    /** File holding the agent token (`agent.token_file`, or the broker's). */
    tokenFile?: string;
    /** Environment variable holding the agent token (`agent.token_env`, or the broker's). */
    tokenEnv?: string;
    /** `auto`/`native` (default) or `systeminformation`. */
    metricsSource?: string;
  };
  /** URL plugins declared under `plugins:` (pins when known). */
  plugins: PluginNeeds[];
  /**
   * The program `config` in the supervisor's console starts ($VISUAL, else
   * $EDITOR, of whoever ran `deno task up`; see console/permissions.ts).
   * Set by the launcher, which reads the environment; none: inline editing.
   */
  editor?: string;
}

/**
 * Permission lists of one process, every list present; `["*"]` means all of
 * that kind (e.g. `--allow-env` without a list).
 */
export type PermissionSet = Required<PermissionLists>;

function emptySet(): PermissionSet {
  return { read: [], write: [], net: [], env: [], sys: [], run: [] };
}

/** Unites permission lists (order kept, duplicates dropped). */
export function mergePermissions(...parts: Array<Partial<PermissionSet>>): PermissionSet {
  const out = emptySet();
  for (const part of parts) {
    for (const key of Object.keys(out) as Array<keyof PermissionSet>) {
      for (const item of part[key] ?? []) if (!out[key].includes(item)) out[key].push(item);
    }
  }
  return out;
}

/** Permission lists as `deno run` flags ({@linkcode permissionFlags}), always led by `--no-prompt`. */
export function permissionArgs(p: PermissionSet): string[] {
  return ["--no-prompt", ...permissionFlags(p)];
}

/** The monitor.yaml the supervisor runs (it always has one). */
function supervisedFile(settings: DeploymentSettings): string {
  if (settings.configFile === undefined) {
    throw new TypeError("the supervisor runs a monitor.yaml: expected deployment.configFile");
  }
  return settings.configFile;
}

function commonServiceArgs(settings: DeploymentSettings): string[] {
  const args = [
    "--config",
    supervisedFile(settings),
    "--state-dir",
    settings.stateDir,
    "--supervised",
  ];
  if (settings.logLevel && settings.logLevel !== "info") {
    args.push("--log-level", settings.logLevel);
  }
  if (settings.logFormat && settings.logFormat !== "text") {
    args.push("--log-format", settings.logFormat);
  }
  return args;
}

/** The broker's permissions: its own, the store's and the bus's (`replica` i: its addresses). */
export function brokerPermissionSet(settings: DeploymentSettings, replica = 0): PermissionSet {
  const own = replica === 0
    ? { listen: settings.broker.listen, admin: settings.broker.admin }
    : settings.broker.replicas![replica];
  return mergePermissions(
    brokerPermissions({
      stateDir: settings.stateDir,
      configFile: settings.configFile,
      listen: own.listen,
      admin: own.admin,
      sink: settings.broker.sink,
      tlsFiles: settings.broker.tlsFiles,
      secretFiles: settings.broker.secretFiles,
      secretEnv: settings.broker.secretEnv,
    }),
    storePermissions(settings.store),
    busPermissions(settings.bus),
  );
}

/**
 * The analysis application's permissions: its own (with the dashboard's
 * address, files and token variable), the bus's and the store's (heartbeats
 * and configurations for the dashboard).
 */
export function analysisPermissionSet(settings: DeploymentSettings): PermissionSet {
  return mergePermissions(
    analysisPermissions({
      stateDir: settings.stateDir,
      configFile: settings.configFile,
      http: settings.analysis?.http,
      files: settings.analysis?.files,
      env: settings.analysis?.env,
    }),
    busPermissions(settings.bus),
    storePermissions(settings.store),
  );
}

/** The dashboard's URL (a wildcard address shown as 127.0.0.1), or undefined when it is off. */
export function dashboardUrl(settings: DeploymentSettings): string | undefined {
  const http = settings.analysis?.http;
  if (!http) return undefined;
  const shown = dialAddress(http);
  return `${settings.analysis?.tls ? "https" : "http"}://${shown}/`;
}

/**
 * The local agent's permissions: its own (metrics, broker, TLS), the
 * store's, and, with URL plugins, the plugin cache, the module hosts and
 * what each plugin declares. The `systeminformation` metrics source needs
 * every environment variable and `--allow-sys=loadavg` (see the agent's README).
 */
export function agentPermissionSet(settings: DeploymentSettings): PermissionSet {
  const own = agentPermissions({
    broker: settings.agent.broker,
    configFile: settings.configFile,
    tlsFiles: settings.agent.tlsFiles,
    tokenFile: settings.agent.tokenFile,
    tokenEnv: settings.agent.tokenEnv,
    metricsSource: settings.agent.metricsSource,
  });
  const plugins = agentPluginPermissions(settings.plugins, settings.stateDir);
  const extra: Partial<PermissionSet> = settings.agent.metricsSource === "systeminformation"
    ? { env: ["*"], sys: ["loadavg"] }
    : {};
  // Read access to the state directory: the agent reads its configuration file relative to it.
  return mergePermissions(own, agentStorePermissions(settings.store), plugins, extra);
}

/** The permissions of one service: the one place that picks its builder. */
export function servicePermissionSet(
  name: ServiceName,
  settings: DeploymentSettings,
): PermissionSet {
  return name === "broker"
    ? brokerPermissionSet(settings)
    : name === "analysis"
    ? analysisPermissionSet(settings)
    : agentPermissionSet(settings);
}

/**
 * Flags beside the permissions: the agent's runtime settings (V8 heap, no
 * code cache: agentRuntimeFlags) and Worker permissions for an agent with
 * URL plugins.
 */
function unstableArgs(name: ServiceName, settings: DeploymentSettings): string[] {
  if (name !== "agent") return [];
  return [
    ...agentRuntimeFlags(),
    ...(settings.plugins.length > 0 ? ["--unstable-worker-options"] : []),
  ];
}

/** The command line of one service. */
export function serviceCommand(name: ServiceName, settings: DeploymentSettings): ServiceCommand {
  const permissions = servicePermissionSet(name, settings);
  const extra = unstableArgs(name, settings);
  // With replicas the first broker's admin port is derived (after the brokers' ports):
  // every broker gets its addresses on the command line.
  const replicas = settings.broker.replicas ?? [];
  const addresses = name === "broker" && replicas.length > 1
    ? ["--listen", replicas[0].listen, "--admin", replicas[0].admin ?? "off"]
    : [];
  return {
    program: "deno",
    args: [
      "run",
      ...permissionArgs(permissions),
      ...extra,
      SERVICE_SCRIPTS[name],
      ...commonServiceArgs(settings),
      ...addresses,
    ],
    cwd: REPO_ROOT,
  };
}

/** Name of broker replica `i` (0-based) as the supervisor reports it: `broker`, `broker-2`, ... */
export function brokerReplicaName(i: number): string {
  return i === 0 ? "broker" : `broker-${i + 1}`;
}

/**
 * The command line of broker replica `i` (1-based beyond the first, which is
 * {@linkcode serviceCommand}`("broker")`): the same file with its own
 * `--listen` and `--admin` (port + i), and permissions for those addresses.
 */
export function brokerReplicaCommand(settings: DeploymentSettings, i: number): ServiceCommand {
  const replica = settings.broker.replicas?.[i];
  if (i === 0 || replica === undefined) return serviceCommand("broker", settings);
  return {
    program: "deno",
    args: [
      "run",
      ...permissionArgs(brokerPermissionSet(settings, i)),
      SERVICE_SCRIPTS.broker,
      ...commonServiceArgs(settings),
      "--listen",
      replica.listen,
      "--admin",
      replica.admin ?? "off",
    ],
    cwd: REPO_ROOT,
  };
}

/** The command lines `deno task broker|agent|analysis|plugins` run (services run alone). */
export const STANDALONE_NAMES = ["broker", "agent", "analysis", "plugins"] as const;
/** One of {@linkcode STANDALONE_NAMES}. */
export type StandaloneName = typeof STANDALONE_NAMES[number];

/**
 * A service run alone (`deno task broker ...`): `deno run` with the
 * permissions its resolved configuration calls for (the same builders as
 * under the supervisor), the entry module, and the user's own arguments,
 * run in the user's folder. `plugins try --allow-read/--allow-env` are
 * granted to the process too (the Worker it runs the plugin in gets no more).
 */
export function standaloneCommand(
  name: StandaloneName,
  settings: DeploymentSettings,
  args: readonly string[],
  cwd: string,
): ServiceCommand {
  let permissions: PermissionSet;
  const extra: string[] = [];
  if (name === "plugins") {
    const given = flagValues(args, [
      { flag: "--allow-read", path: "", kind: "list" },
      { flag: "--allow-env", path: "", kind: "list" },
    ]);
    const list = (flag: string) =>
      (given.get(flag) ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
    permissions = pluginsPermissionSet(settings, {
      read: [cwd, ...list("--allow-read").map((p) => resolve(cwd, p))],
      env: list("--allow-env"),
    });
    extra.push("--unstable-worker-options");
  } else {
    permissions = mergePermissions(
      servicePermissionSet(name, settings),
      // A broker run alone hosts a console whose `config` may start the editor.
      name === "broker" && settings.editor ? { run: [settings.editor] } : {},
    );
    extra.push(...unstableArgs(name, settings));
  }
  const script = name === "plugins" ? PLUGINS_SCRIPT : SERVICE_SCRIPTS[name];
  return {
    program: "deno",
    args: ["run", ...permissionArgs(permissions), ...extra, join(REPO_ROOT, script), ...args],
    cwd,
  };
}

/** Every service's command line, in start order. */
export function serviceCommands(
  settings: DeploymentSettings,
): Record<ServiceName, ServiceCommand> {
  return {
    broker: serviceCommand("broker", settings),
    analysis: serviceCommand("analysis", settings),
    agent: serviceCommand("agent", settings),
  };
}

/**
 * The plugins process (`deno task plugins`; the supervisor runs it to pin):
 * reads monitor.yaml, fetches every module of each plugin's graph (hosts
 * known only once the graph is resolved, hence network access is not
 * limited to a list; nothing of the plugin runs in it except under `try`,
 * in a Worker), writes the pins to the store and the module cache. `extra`
 * adds what `try` grants the plugin it runs (a Worker gets no more than its parent).
 */
export function pluginsPermissionSet(
  settings: DeploymentSettings,
  extra: Partial<PermissionSet> = {},
): PermissionSet {
  return mergePermissions(
    {
      read: [...(settings.configFile ? [settings.configFile] : []), settings.stateDir],
      write: [settings.stateDir],
      net: ["*"],
      env: [
        ...(settings.configFile ? YAML_ENV_VARS : []),
        ...COMMANDER_ENV_VARS,
      ],
      run: ["deno"],
    },
    storePermissions(settings.store),
    extra,
  );
}

/** The plugin pinning process the supervisor runs (`plugins pin` with its monitor.yaml). */
export function pinCommand(settings: DeploymentSettings): ServiceCommand {
  return {
    program: "deno",
    args: [
      "run",
      ...permissionArgs(pluginsPermissionSet(settings)),
      PLUGINS_SCRIPT,
      "pin",
      "--config",
      supervisedFile(settings),
      "--state-dir",
      settings.stateDir,
    ],
    cwd: REPO_ROOT,
  };
}

/** Directory of a file path. */
function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/**
 * The supervisor's own long-running process: reads (and watches) the
 * directory of monitor.yaml, opens the store (agent configurations), keeps
 * its console history in the state directory, talks to the broker's admin
 * API, runs `deno` (the services and the pinning process).
 */
export function supervisorPermissionSet(settings: DeploymentSettings): PermissionSet {
  return mergePermissions(
    {
      read: [
        dirOf(supervisedFile(settings)),
        settings.stateDir,
        ...(settings.broker.adminTokenFile ? [settings.broker.adminTokenFile] : []),
      ],
      write: [settings.stateDir],
      net: settings.broker.admin ? [settings.broker.admin] : [],
      env: [
        ...CONSOLE_ENV_VARS,
        ...YAML_ENV_VARS,
        ...(settings.broker.adminTokenEnv ? [settings.broker.adminTokenEnv] : []),
      ],
      run: ["deno"],
    },
    settings.editor ? { run: [settings.editor] } : {},
    storePermissions(settings.store),
  );
}

/** The supervisor's own command line (started by `deno task up`, which only reads). */
export function supervisorCommand(
  settings: DeploymentSettings,
  flags: string[] = [],
): ServiceCommand {
  return {
    program: "deno",
    args: [
      "run",
      ...permissionArgs(supervisorPermissionSet(settings)),
      SUPERVISOR_SCRIPT,
      "--config",
      supervisedFile(settings),
      ...flags,
    ],
    cwd: REPO_ROOT,
  };
}

/** Quotes an argument for a POSIX shell when needed. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A command as one line a user could paste into a shell (run in {@linkcode REPO_ROOT}). */
export function formatCommand(command: ServiceCommand): string {
  return [command.program, ...command.args].map(shellQuote).join(" ");
}
