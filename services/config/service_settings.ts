/**
 * Settings of a service process from the common flags and, optionally,
 * monitor.yaml (flags override the file). Reads only the keys a service
 * needs (`state_dir`, `store`, `bus`, and the service's own section) and
 * names the key and what was expected when one is wrong.
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { BusSettings } from "../bus/types.ts";
import type { CommonFlags } from "../common/cli.ts";
import { isLogFormat, isLogLevel, type LogFormat, type LogLevel } from "../common/log.ts";
import { DEFAULT_TOPICS, type TopicNames } from "../common/messages.ts";
import { isHostPort } from "../common/net.ts";
import type { StoreSettings } from "../store/types.ts";
import { ConfigError, type ConfigIssue, describeValue } from "./issues.ts";
import { checkMonitorConfig, DATABASE_FILE } from "./monitor_config.ts";
import { isPlainObject } from "../common/objects.ts";

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
  /** The service's own section of monitor.yaml (`broker:`, `analysis:`), or `{}`. */
  section: Record<string, unknown>;
}

function list(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** Reads and fully checks a monitor.yaml; returns its document (`{}` when empty). */
export async function readMonitorYaml(
  path: string,
): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
  // The full schema check (line:column, key path, did-you-mean), as `deno task validate`
  // and the supervisor do.
  const { issues, document } = checkMonitorConfig(text, path, { hostname: "localhost" });
  if (issues.length > 0) throw new ConfigError(issues, path);
  // A valid monitor.yaml is a mapping, or empty.
  return isPlainObject(document) ? document : {};
}

/**
 * Resolves a service's settings.
 * @param service the monitor.yaml section of the service, e.g. `broker`
 * @param flags the common flags
 * @param cwd base of relative paths when no monitor.yaml is read
 */
export async function resolveServiceSettings(
  service: string,
  flags: CommonFlags,
  cwd = Deno.cwd(),
): Promise<ServiceSettings> {
  const configFile = flags.config === undefined ? undefined : resolve(cwd, flags.config);
  const doc = configFile ? await readMonitorYaml(configFile) : {};
  const base = configFile ? dirname(configFile) : cwd;
  const issues: ConfigIssue[] = [];
  const section = (name: string): Record<string, unknown> => {
    const value = doc[name];
    if (value === undefined || value === null) return {};
    if (!isPlainObject(value)) {
      issues.push({ path: name, expected: "a mapping", found: describeValue(value) });
      return {};
    }
    return value;
  };
  const stringList = (value: unknown, path: string): string[] | undefined => {
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string" && isHostPort(v))) {
      issues.push({ path, expected: "a list of host:port", found: describeValue(value) });
      return undefined;
    }
    return value as string[];
  };

  const storeDoc = section("store");
  const busDoc = section("bus");
  const own = section(service);

  const stateDirRaw = flags.stateDir ??
    (typeof doc.state_dir === "string" ? doc.state_dir : undefined);
  if (doc.state_dir !== undefined && typeof doc.state_dir !== "string") {
    issues.push({
      path: "state_dir",
      expected: "a directory path",
      found: describeValue(doc.state_dir),
    });
  }
  const stateDir = stateDirRaw === undefined
    ? join(base, ".monitor")
    : isAbsolute(stateDirRaw)
    ? stateDirRaw
    : resolve(flags.stateDir !== undefined ? cwd : base, stateDirRaw);

  const storeBackend = flags.storeBackend ?? storeDoc.backend ?? "embedded";
  if (storeBackend !== "embedded" && storeBackend !== "etcd") {
    issues.push({
      path: flags.storeBackend !== undefined ? "--store-backend" : "store.backend",
      expected: '"embedded" or "etcd"',
      found: describeValue(storeBackend),
    });
  }
  const endpoints = list(flags.storeEndpoints) ??
    stringList(storeDoc.endpoints, "store.endpoints") ?? ["127.0.0.1:2379"];
  for (const e of endpoints) {
    if (!isHostPort(e)) {
      issues.push({ path: "--store-endpoints", expected: "host:port", found: describeValue(e) });
    }
  }
  const prefix = flags.storePrefix ?? storeDoc.prefix ?? "/monitor";
  if (typeof prefix !== "string" || !prefix.startsWith("/")) {
    issues.push({
      path: "store.prefix",
      expected: "a key prefix starting with /",
      found: describeValue(prefix),
    });
  }

  const busBackend = flags.busBackend ?? busDoc.backend ?? "embedded";
  if (busBackend !== "embedded" && busBackend !== "kafka") {
    issues.push({
      path: flags.busBackend !== undefined ? "--bus-backend" : "bus.backend",
      expected: '"embedded" or "kafka"',
      found: describeValue(busBackend),
    });
  }
  const brokers = list(flags.busBrokers) ?? stringList(busDoc.brokers, "bus.brokers") ??
    ["127.0.0.1:9092"];
  for (const b of brokers) {
    if (!isHostPort(b)) {
      issues.push({ path: "--bus-brokers", expected: "host:port", found: describeValue(b) });
    }
  }
  const topics: TopicNames = { ...DEFAULT_TOPICS };
  if (busDoc.topics !== undefined) {
    if (!isPlainObject(busDoc.topics)) {
      issues.push({
        path: "bus.topics",
        expected: "a mapping of topic names",
        found: describeValue(busDoc.topics),
      });
    } else {
      for (const key of Object.keys(DEFAULT_TOPICS) as Array<keyof TopicNames>) {
        const v = busDoc.topics[key];
        if (v === undefined) continue;
        if (typeof v !== "string" || !/^[A-Za-z0-9._-]{1,249}$/.test(v)) {
          issues.push({
            path: `bus.topics.${key}`,
            expected: "a topic name",
            found: describeValue(v),
          });
        } else topics[key] = v;
      }
    }
  }
  const logLevel = flags.logLevel ?? doc.log_level ?? "info";
  if (!isLogLevel(logLevel)) {
    issues.push({
      path: flags.logLevel !== undefined ? "--log-level" : "log_level",
      expected: "debug, info, warn or error",
      found: describeValue(logLevel),
    });
  }
  const logFormat = flags.logFormat ?? doc.log_format ?? "text";
  if (!isLogFormat(logFormat)) {
    issues.push({
      path: flags.logFormat !== undefined ? "--log-format" : "log_format",
      expected: "text or json",
      found: describeValue(logFormat),
    });
  }
  if (issues.length > 0) throw new ConfigError(issues, configFile);

  const path = join(stateDir, DATABASE_FILE);
  return {
    configFile,
    stateDir,
    store: {
      backend: storeBackend as "embedded" | "etcd",
      endpoints,
      prefix: (prefix as string).replace(/\/+$/, "") || "/monitor",
      path,
    },
    bus: {
      backend: busBackend as "embedded" | "kafka",
      brokers,
      path,
      clientId: service,
    },
    topics,
    logLevel: logLevel as LogLevel,
    logFormat: logFormat as LogFormat,
    section: own,
  };
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
