/**
 * Settings of a service process from the common flags and, optionally,
 * monitor.yaml (flags override the file), resolved and validated once by the
 * configuration resolver: the common flags are key paths of the document
 * (services/config/flags.ts). The service's own section is also given as
 * written, for the settings the service reads itself ({@linkcode sectionString}).
 *
 * @module
 */
import { dirname, resolve } from "node:path";
import type { BusSettings } from "../bus/types.ts";
import type { CommonFlags } from "../common/cli.ts";
import type { LogFormat, LogLevel } from "../common/log.ts";
import type { TopicNames } from "../common/messages.ts";
import { isPlainObject } from "../common/objects.ts";
import type { StoreSettings } from "../store/types.ts";
import { type FlagOverride, overrideAt, serviceFlagOverrides } from "./flags.ts";
import { ConfigError, describeValue } from "./issues.ts";
import {
  databasePath,
  type MonitorConfig,
  monitorConfigError,
  resolveWithoutFile,
  stateDirPath,
} from "./monitor_config.ts";

/** Resolved settings of a service. */
export interface ServiceSettings {
  /** The monitor.yaml read, if any (absolute). */
  configFile?: string;
  /** State directory (absolute). */
  stateDir: string;
  store: StoreSettings;
  bus: BusSettings;
  topics: TopicNames;
  logLevel: LogLevel;
  /** `--log-format`, else monitor.yaml's `log_format`, else `text`. */
  logFormat: LogFormat;
  /** The service's own section of monitor.yaml (`broker:`, `analysis:`) as written, or `{}`. */
  section: Record<string, unknown>;
  /**
   * The resolved configuration (monitor.yaml or the defaults, with the common
   * and transport security flags).
   */
  config: MonitorConfig;
  /** The flags written into the document at their key paths. */
  overrides: readonly FlagOverride[];
}

/**
 * Reads a monitor.yaml and checks it fully with the flags written at their
 * key paths ({@linkcode commonFlagOverrides}): the document as written and
 * the resolved configuration.
 * @throws ConfigError listing every issue; Error when the file cannot be read
 */
async function readChecked(
  path: string,
  flags: readonly FlagOverride[],
): Promise<{ document: Record<string, unknown>; config: MonitorConfig }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
  // The full schema check (line:column, key path, did-you-mean), as `deno task validate`
  // and the supervisor do. The hostname is not needed (agent.id is read as written).
  // npm:yaml is loaded only here: a process without a monitor.yaml never loads it.
  const { checkMonitorConfig } = await import("./monitor_yaml.ts");
  const { issues, document, config } = checkMonitorConfig(text, path, {
    hostname: "localhost",
    dir: dirname(path),
    flags,
  });
  if (!config) throw monitorConfigError(issues, path);
  // A valid monitor.yaml is a mapping, or empty.
  return { document: isPlainObject(document) ? document : {}, config };
}

/** Reads and fully checks a monitor.yaml; returns its document (`{}` when empty). */
export async function readMonitorYaml(path: string): Promise<Record<string, unknown>> {
  return (await readChecked(path, [])).document;
}

/**
 * Resolves a service's settings: monitor.yaml (with `--config`), the common
 * flags and the service's transport security flags (`--tls-*`, `--token-*`;
 * {@linkcode serviceFlagOverrides}), validated once by THE resolver (services/config/monitor_config.ts);
 * the store, bus, topics, state directory and log settings are the
 * resolved configuration's.
 * @param service the monitor.yaml section of the service, e.g. `broker`
 * @param flags the flags as commander gives them (only the common and security ones are read)
 * @param cwd base of relative paths when no monitor.yaml is read
 */
export async function resolveServiceSettings(
  service: string,
  flags: CommonFlags,
  cwd = Deno.cwd(),
): Promise<ServiceSettings> {
  const configFile = flags.config === undefined ? undefined : resolve(cwd, flags.config);
  const overrides = serviceFlagOverrides(service, flags, cwd);
  let document: Record<string, unknown> = {};
  let config: MonitorConfig;
  if (configFile) ({ document, config } = await readChecked(configFile, overrides));
  else config = resolveWithoutFile({ cwd, flags: overrides, hostname: "localhost" });
  const own = document[service];
  const path = databasePath(config);
  return {
    configFile,
    config,
    stateDir: stateDirPath(config),
    store: { ...config.store, endpoints: [...config.store.endpoints], path },
    bus: {
      backend: config.bus.backend,
      brokers: [...config.bus.brokers],
      path,
      clientId: service,
    },
    topics: { ...config.bus.topics },
    logLevel: config.log_level,
    logFormat: config.log_format,
    section: isPlainObject(own) ? own : {},
    overrides,
  };
}

/**
 * The name messages use for the setting at key path `path`: the flag that
 * set it (`--tls-ca`), else the path itself (`broker.tls.ca`).
 */
export function settingName(settings: ServiceSettings, path: string): string {
  return overrideAt(settings.overrides, path)?.flag ?? path;
}

/** Reads an optional string setting of a section; `flag` wins. Throws naming the key. */
export function sectionString(
  settings: ServiceSettings,
  service: string,
  key: string,
  flag: string | undefined,
): string | undefined {
  if (flag !== undefined) return flag;
  const value = settings.section[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") {
    throw new ConfigError(
      [{ path: `${service}.${key}`, expected: "a string", found: describeValue(value) }],
      settings.configFile,
    );
  }
  return value;
}

/** Reads an optional positive number setting of a section; `flag` (text) wins. */
export function sectionNumber(
  settings: ServiceSettings,
  service: string,
  key: string,
  flag: string | undefined,
  what: string,
): number | undefined {
  const raw: unknown = flag ?? settings.section[key];
  if (raw === undefined || raw === null) return undefined;
  const value = typeof raw === "string" ? Number(raw) : raw;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(
      [{
        path: flag !== undefined ? `--${key.replace(/_/g, "-")}` : `${service}.${key}`,
        expected: what,
        found: describeValue(raw),
      }],
      flag !== undefined ? undefined : settings.configFile,
    );
  }
  return value;
}
