/**
 * Command-line flags as monitor.yaml key paths: each service flag that
 * stands for a setting (`--listen` is `broker.listen`, `--store-endpoints`
 * is `store.endpoints`) is written into the document before it is validated,
 * so a flag and the key it stands for obey one rule and resolve into one
 * {@linkcode MonitorConfig}. An issue about a value that came from a flag
 * names the flag (`--listen: expected host:port ...`), not a line of the file.
 *
 * Paths given on the command line are relative to the current folder, paths
 * in monitor.yaml to the file's folder: flag paths are made absolute before
 * they are merged.
 *
 * A new flag that changes what a service needs from Deno's permission
 * system (an address, a file) must be listed here: the launcher of
 * `deno task broker|agent|analysis|plugins` computes the permissions from
 * the resolved configuration.
 *
 * @example
 * ```ts
 * import { flagOverrides } from "./flags.ts";
 *
 * const overrides = flagOverrides("broker", ["--listen", "0.0.0.0:50052", "--sink=out.txt"], "/srv");
 * // [{ flag: "--listen", path: "broker.listen", value: "0.0.0.0:50052" },
 * //  { flag: "--sink", path: "broker.sink", value: "/srv/out.txt" }]
 * ```
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { isPlainObject } from "../common/objects.ts";

/** The processes with a command line of their own that read monitor.yaml. */
export const FLAG_SERVICES = ["broker", "agent", "analysis", "plugins"] as const;
/** One of {@linkcode FLAG_SERVICES}. */
export type FlagService = typeof FLAG_SERVICES[number];

/** How a flag's text becomes the key's value. */
export type FlagKind =
  /** As given. */
  | "text"
  /** A path: made absolute against the current folder. */
  | "path"
  /** Comma-separated: a list of strings. */
  | "list"
  /** A number when the text is one (otherwise the text, which the schema then refuses). */
  | "number";

/** A flag that stands for a key of monitor.yaml. */
export interface FlagKey {
  /** The flag, e.g. `--listen`. */
  flag: string;
  /** The dotted key path, e.g. `broker.listen`. */
  path: string;
  kind: FlagKind;
  /**
   * Keys beside it that the flag replaces (a secret comes from one of
   * `token`, `token_file` and `token_env`: a flag naming one wins over the file's).
   */
  clears?: readonly string[];
  /** What an issue of the flag says was expected, in the command line's words. */
  expected?: string;
}

/** A flag's value at its key path. */
export interface FlagOverride {
  flag: string;
  path: string;
  value: unknown;
  /** Keys beside `path` removed from the document ({@linkcode FlagKey.clears}). */
  clears?: readonly string[];
  /** {@linkcode FlagKey.expected}. */
  expected?: string;
}

// In the order their issues are reported: store, state directory, bus, log.
const COMMON: readonly FlagKey[] = [
  { flag: "--store-backend", path: "store.backend", kind: "text" },
  { flag: "--store-endpoints", path: "store.endpoints", kind: "list" },
  { flag: "--store-prefix", path: "store.prefix", kind: "text" },
  { flag: "--state-dir", path: "state_dir", kind: "path" },
];
const BUS: readonly FlagKey[] = [
  { flag: "--bus-backend", path: "bus.backend", kind: "text" },
  { flag: "--bus-brokers", path: "bus.brokers", kind: "list" },
];
const LOG: readonly FlagKey[] = [
  {
    flag: "--log-level",
    path: "log_level",
    kind: "text",
    expected: "debug, info, warn or error",
  },
  { flag: "--log-format", path: "log_format", kind: "text", expected: "text or json" },
];

const TOKEN = ["token", "token_file", "token_env"];
const ADMIN = ["admin_token", "admin_token_file", "admin_token_env"];

/** The flags of each command line that stand for a key of monitor.yaml. */
export const SERVICE_FLAG_KEYS: Readonly<Record<FlagService, readonly FlagKey[]>> = Object.freeze({
  broker: [
    ...COMMON,
    ...BUS,
    ...LOG,
    { flag: "--listen", path: "broker.listen", kind: "text" },
    { flag: "--admin", path: "broker.admin", kind: "text" },
    { flag: "--admin-token-file", path: "broker.admin_token_file", kind: "path", clears: ADMIN },
    { flag: "--admin-token-env", path: "broker.admin_token_env", kind: "text", clears: ADMIN },
    { flag: "--token-file", path: "broker.token_file", kind: "path", clears: TOKEN },
    { flag: "--token-env", path: "broker.token_env", kind: "text", clears: TOKEN },
    { flag: "--sink", path: "broker.sink", kind: "path" },
    { flag: "--command-timeout", path: "broker.command_timeout", kind: "number" },
    { flag: "--max-batch-samples", path: "broker.max_batch_samples", kind: "number" },
    { flag: "--max-streams", path: "broker.max_streams", kind: "number" },
    { flag: "--tls-cert", path: "broker.tls.cert", kind: "path" },
    { flag: "--tls-key", path: "broker.tls.key", kind: "path" },
    { flag: "--tls-ca", path: "broker.tls.ca", kind: "path" },
  ],
  agent: [
    ...COMMON,
    ...BUS,
    ...LOG,
    { flag: "--broker", path: "agent.broker", kind: "text" },
    { flag: "--id", path: "agent.id", kind: "text" },
    { flag: "--token-file", path: "agent.token_file", kind: "path", clears: TOKEN },
    { flag: "--token-env", path: "agent.token_env", kind: "text", clears: TOKEN },
    { flag: "--tls-ca", path: "agent.tls.ca", kind: "path" },
    { flag: "--tls-cert", path: "agent.tls.cert", kind: "path" },
    { flag: "--tls-key", path: "agent.tls.key", kind: "path" },
    { flag: "--tls-server-name", path: "agent.tls.server_name", kind: "text" },
    { flag: "--metrics-source", path: "agent.metrics_source", kind: "text" },
  ],
  analysis: [
    ...COMMON,
    ...BUS,
    ...LOG,
    { flag: "--group", path: "analysis.group", kind: "text" },
    { flag: "--command-timeout", path: "analysis.command_timeout", kind: "number" },
    { flag: "--summary-interval", path: "analysis.summary_interval", kind: "number" },
    { flag: "--http", path: "analysis.http", kind: "text" },
  ],
  plugins: [...COMMON, ...LOG],
});

/**
 * The value of every flag of `args` named in `keys` (`--flag value` or
 * `--flag=value`; the last one given wins). Other arguments are passed over.
 */
export function flagValues(args: readonly string[], keys: readonly FlagKey[]): Map<string, string> {
  const known = new Set(keys.map((k) => k.flag));
  const values = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") break;
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (!known.has(name)) continue;
    if (eq > 0) values.set(name, arg.slice(eq + 1));
    else if (i + 1 < args.length) values.set(name, args[++i]);
  }
  return values;
}

function valueOf(text: string, kind: FlagKind, cwd: string): unknown {
  switch (kind) {
    case "text":
      return text;
    case "path":
      return text === "" || isAbsolute(text) ? text : resolve(cwd, text);
    case "list":
      return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
    case "number": {
      const n = Number(text);
      return text.trim() !== "" && Number.isFinite(n) ? n : text;
    }
  }
}

/**
 * The flags of `args` that stand for keys of monitor.yaml, as key paths and
 * values (paths absolute against `cwd`).
 */
export function flagOverrides(
  service: FlagService,
  args: readonly string[],
  cwd: string,
): FlagOverride[] {
  const keys = SERVICE_FLAG_KEYS[service];
  const values = flagValues(args, keys);
  return keys.filter((k) => values.has(k.flag)).map((k) => {
    const override: FlagOverride = {
      flag: k.flag,
      path: k.path,
      value: valueOf(values.get(k.flag)!, k.kind, cwd),
    };
    if (k.clears) override.clears = k.clears;
    if (k.expected) override.expected = k.expected;
    return override;
  });
}

/** The value of `--config` in `args`, if given. */
export function configFlag(args: readonly string[]): string | undefined {
  return flagValues(args, [{ flag: "--config", path: "", kind: "path" }]).get("--config");
}

/**
 * A copy of `document` (a monitor.yaml value; `null` for an empty file) with
 * the keys the overrides replace removed, then each override written at its
 * key path; a section that is absent or not a mapping is replaced by a
 * mapping. A document that is neither empty nor a mapping is returned as it
 * is (the schema check reports it).
 */
export function withOverrides(document: unknown, overrides: readonly FlagOverride[]): unknown {
  if (overrides.length === 0) return document;
  if (document !== null && document !== undefined && !isPlainObject(document)) return document;
  const root: Record<string, unknown> = isPlainObject(document) ? structuredClone(document) : {};
  const parentOf = (path: string) => {
    const keys = path.split(".");
    let node = root;
    for (const key of keys.slice(0, -1)) {
      if (!isPlainObject(node[key])) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    return { node, key: keys[keys.length - 1] };
  };
  for (const { path, clears } of overrides) {
    const { node } = parentOf(path);
    for (const key of clears ?? []) delete node[key];
  }
  for (const { path, value } of overrides) {
    const { node, key } = parentOf(path);
    node[key] = value;
  }
  return root;
}

/** The override an issue at `path` is about (its key path, or a key below it), if any. */
export function overrideAt(
  overrides: readonly FlagOverride[],
  path: string,
): FlagOverride | undefined {
  return overrides.find((o) =>
    path === o.path || path.startsWith(`${o.path}.`) || path.startsWith(`${o.path}[`)
  );
}

/**
 * The flags of a command line as commander gives them (`storeBackend` for
 * `--store-backend`), as key paths and values, like {@linkcode flagOverrides}
 * does for raw arguments, for the keys `keys` of the table.
 */
function parsedFlagOverrides(
  service: FlagService,
  flags: object,
  cwd: string,
  keys: readonly FlagKey[],
): FlagOverride[] {
  const args: string[] = [];
  for (const key of keys) {
    const name = key.flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const value = (flags as Record<string, unknown>)[name];
    if (typeof value === "string") args.push(key.flag, value);
  }
  return flagOverrides(service, args, cwd);
}

/**
 * The common flags (store, bus, state directory, log) of a command line as
 * commander gives them (`storeBackend` for `--store-backend`), as key paths
 * and values, like {@linkcode flagOverrides} does for raw arguments.
 */
export function commonFlagOverrides(flags: object, cwd: string): FlagOverride[] {
  return parsedFlagOverrides("broker", flags, cwd, [...COMMON, ...BUS, ...LOG]);
}

/** True for the flags of transport security: TLS files and where the tokens come from. */
function isSecurityKey(key: FlagKey): boolean {
  return /\.tls\.|\.(admin_)?token_/.test(key.path);
}

/**
 * The common flags and the transport security flags (`--tls-*`,
 * `--token-file`, `--admin-token-env`, ...) of `service`'s command line as
 * commander gives them, as key paths and values: what a service main hands
 * the resolver, so that a TLS or token rule is checked once, with one wording.
 *
 * @example
 * ```ts
 * import { serviceFlagOverrides } from "./flags.ts";
 *
 * serviceFlagOverrides("broker", { tlsCa: "ca.pem", logLevel: "debug" }, "/srv");
 * // [{ flag: "--log-level", path: "log_level", value: "debug", ... },
 * //  { flag: "--tls-ca", path: "broker.tls.ca", value: "/srv/ca.pem" }]
 * ```
 */
export function serviceFlagOverrides(
  service: string,
  flags: object,
  cwd: string,
): FlagOverride[] {
  const common = commonFlagOverrides(flags, cwd);
  if (!(FLAG_SERVICES as readonly string[]).includes(service)) return common;
  const own = service as FlagService;
  const security = SERVICE_FLAG_KEYS[own].filter(isSecurityKey);
  return [...common, ...parsedFlagOverrides(own, flags, cwd, security)];
}
