/**
 * monitor.yaml: the one file describing a deployment. Parsed with source
 * positions, validated against the schema of its fixed top-level keys
 * (`store`, `bus`, `broker`, `agent`, `analysis`, `agents`, `plugins`, plus
 * `state_dir`, `log_level` and `log_format`), and resolved into a {@linkcode MonitorConfig}
 * with every default filled in.
 *
 * Every issue names the file, line and column, the key path
 * (`agents.default.interval`), what was expected and what was found; unknown
 * keys come with a did-you-mean. All issues of a document are reported, not
 * only the first.
 *
 * `agents:` entries are checked by the agent's own validator
 * ({@linkcode validateAgentConfig}) and `plugins:` by the plugin loader's
 * ({@linkcode checkPluginsSection}), so monitor.yaml accepts exactly what the
 * agent and the loader accept.
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import {
  BROKER_LIST_EXPECTED,
  localAddress,
  MAX_REPLICAS,
  parseBrokerList,
  replicaAddresses,
} from "../common/broker_list.ts";
import { checkAgentId } from "../common/ids.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../common/log.ts";
import { exposureProblem } from "../common/http_security.ts";
import { DEFAULT_TOPICS, type TopicNames } from "../common/messages.ts";
import {
  type AgentConfig,
  DEFAULT_AGENT_CONFIG_JSON,
  validateAgentConfig,
} from "./agent_config.ts";
import {
  flag,
  hostPort,
  hostPortList,
  isMapping,
  Issues,
  oneOf,
  positive,
  section,
  text,
} from "./checks.ts";
import { ConfigError, type ConfigIssue, describeValue } from "./issues.ts";
import {
  checkPluginsSection,
  normalizePermissions,
  type PluginPermissions,
  specVersion,
} from "./plugin_spec.ts";
import { type FlagOverride, overrideAt, withOverrides } from "./flags.ts";
import type { YamlSource } from "./yaml_source.ts";
import { MONITOR_DEFAULTS } from "./defaults.ts";

/** File name of the shared SQLite database in the state directory. */
export const DATABASE_FILE = "monitor.db";

/** The top-level keys of monitor.yaml. */
export const MONITOR_KEYS: readonly string[] = Object.freeze([
  "state_dir",
  "log_level",
  "log_format",
  "store",
  "bus",
  "broker",
  "agent",
  "analysis",
  "agents",
  "plugins",
]);

/** Defaults of monitor.yaml: services/config/defaults.ts. */
export { MONITOR_DEFAULTS };

/** Where the store lives. */
export interface StoreConfig {
  /** `embedded` (SQLite in the state directory, one machine) or `etcd`. */
  backend: "embedded" | "etcd";
  /** etcd only: `host:port` list. */
  endpoints: string[];
  /** Key prefix, without a trailing slash (default `/monitor`). */
  prefix: string;
}

/** Where the bus lives. */
export interface BusConfig {
  /** `embedded` (SQLite in the state directory, one machine) or `kafka`. */
  backend: "embedded" | "kafka";
  /** kafka only: bootstrap brokers, `host:port` list. */
  brokers: string[];
  /** Topic names. */
  topics: TopicNames;
}

/** TLS of the broker's gRPC listener. */
export interface BrokerTlsConfig {
  /** Certificate chain (PEM file, relative to monitor.yaml's folder). */
  cert: string;
  /** Private key (PEM file). */
  key: string;
  /** CA (PEM file) agent certificates must chain to (mTLS). */
  ca?: string;
  /** Refuse agents without a certificate signed by `ca` (default: true when `ca` is set). */
  require_client_cert: boolean;
}

/** The broker's settings (`broker:`). */
export interface BrokerConfig {
  /** gRPC address agents connect to. */
  listen: string;
  /** Admin HTTP API address, or `off`. */
  admin: string;
  /** Bearer token the admin API requires (needed when `admin` is not loopback). */
  admin_token?: string;
  /** File holding the admin token (instead of `admin_token`). */
  admin_token_file?: string;
  /** Environment variable holding the admin token (instead of `admin_token`). */
  admin_token_env?: string;
  /** Shared secret agents must present. */
  token?: string;
  /** File holding the agent token (instead of `token`; relative to monitor.yaml's folder). */
  token_file?: string;
  /** Environment variable holding the agent token (instead of `token`). */
  token_env?: string;
  /** File that gets every sample as a JSON line (relative to monitor.yaml's folder). */
  sink?: string;
  /** Seconds an agent has to answer a command. */
  command_timeout: number;
  /** Largest batch accepted from an agent (samples). */
  max_batch_samples: number;
  /**
   * Brokers the supervisor starts on this host: replica i listens on the
   * `listen` port + i and serves its admin API on the `admin` port + i.
   */
  replicas: number;
  /** Streams (agents) one broker process accepts; more are refused RESOURCE_EXHAUSTED. */
  max_streams: number;
  /** TLS of the gRPC listener (plaintext when absent). */
  tls?: BrokerTlsConfig;
}

/** The analysis application's settings (`analysis:`). */
export interface AnalysisConfig {
  /** Consumer group. */
  group: string;
  /** Seconds `send` waits for results. */
  command_timeout: number;
  /** Seconds between summaries when the output is not a terminal. */
  summary_interval: number;
  /** The dashboard's address `host:port`, or `off`. */
  http: string;
  /** Bearer token the dashboard requires (needed when `http` is not loopback, unless TLS). */
  http_token?: string;
  /** File holding the dashboard token (instead of `http_token`). */
  http_token_file?: string;
  /** Environment variable holding the dashboard token (instead of `http_token`). */
  http_token_env?: string;
  /** TLS of the dashboard (plain HTTP when absent). */
  tls?: { cert: string; key: string };
  /** What the time-series history keeps. */
  history: HistoryConfig;
}

/** The analysis application's history (`analysis.history`). */
export interface HistoryConfig {
  /** Hours raw samples are kept. */
  raw_retention_hours: number;
  /** Days per-minute rollups (min, avg, max) are kept. */
  rollup_retention_days: number;
  /** Largest size of the history's data (MiB); past it the oldest data goes first. */
  max_size_mb: number;
}

/** TLS of the local agent's connection to the broker. */
export interface AgentTlsConfig {
  /** CA (PEM file) the broker's certificate must chain to. */
  ca?: string;
  /** Client certificate (PEM file), for mTLS. */
  cert?: string;
  /** Client private key (PEM file), for mTLS. */
  key?: string;
  /** Expected name in the broker's certificate. */
  server_name?: string;
}

/** The local agent the supervisor starts (`agent:`). */
export interface LocalAgentConfig {
  /** Agent id (default: the hostname). */
  id: string;
  /**
   * Broker address, or several separated by commas (a YAML list is accepted
   * too): the agent picks one by its id and fails over to the others. Default:
   * every broker of `broker.listen` and `broker.replicas`, 0.0.0.0 read as 127.0.0.1.
   */
  broker: string;
  /** Shared secret for the broker (default: `broker.token`). */
  token?: string;
  /** File holding the token (instead of `token`; default: `broker.token_file`). */
  token_file?: string;
  /** Environment variable holding the token (instead of `token`; default: `broker.token_env`). */
  token_env?: string;
  /** Where cpu and memory come from. */
  metrics_source: "auto" | "native" | "systeminformation";
  /** TLS to the broker (plaintext when absent). */
  tls?: AgentTlsConfig;
}

/** A plugin loaded by URL (`plugins: <name>:`), resolved. */
export interface UrlPluginConfig {
  /** Entry module URL. */
  url: string;
  /** Version (given, or read from the URL). */
  version: string;
  /** Granted permissions (sorted lists; empty means none). */
  permissions: PluginPermissions;
  /** Settings passed to the plugin's `initialize`. */
  config: Record<string, unknown>;
}

/** A valid monitor.yaml with every default filled in. */
export interface MonitorConfig {
  /** State directory as written (relative paths are relative to monitor.yaml's folder). */
  state_dir: string;
  /** Log level of every service. */
  log_level: LogLevel;
  /** Line format of every service's and the supervisor's logs: text or json (one object a line). */
  log_format: LogFormat;
  store: StoreConfig;
  bus: BusConfig;
  broker: BrokerConfig;
  analysis: AnalysisConfig;
  agent: LocalAgentConfig;
  /** Desired configuration by agent id (`default` included), validated by the agent's rules. */
  agents: Record<string, AgentConfig>;
  /**
   * The `agents:` entries as written (JSON values): what the supervisor puts
   * at `<prefix>/config/<id>`, in the format agents and `etcdctl put` use.
   */
  agent_documents: Record<string, Record<string, unknown>>;
  /** URL plugins by name. */
  plugins: Record<string, UrlPluginConfig>;
  /** Where the configuration came from (not part of the YAML). */
  source: {
    /** The file as given (for messages), if any. */
    file?: string;
    /** Folder relative paths are resolved against. */
    dir: string;
  };
}

/** Options of the checks (`checkMonitorConfig`, {@linkcode checkMonitorSource}, ...). */
export interface ParseOptions {
  /** Default of `agent.id` (default: `Deno.hostname()`, or `localhost` without permission). */
  hostname?: string;
  /** Folder relative paths are resolved against (default: the file's folder). */
  dir?: string;
  /**
   * Command-line flags as key paths ({@linkcode flagOverrides}), written into
   * the document before it is checked; their issues name the flag.
   */
  flags?: readonly FlagOverride[];
}

/** Outcome of {@linkcode checkMonitorSource} (and `checkMonitorConfig`): a config when there are no issues. */
export interface MonitorCheck {
  config?: MonitorConfig;
  /** The document as parsed (before defaults), when it is valid YAML. */
  document?: unknown;
  /** Every issue, with line and column when known. */
  issues: ConfigIssue[];
}

const STORE_KEYS = ["backend", "endpoints", "prefix"] as const;
const BUS_KEYS = ["backend", "brokers", "topics"] as const;
const TOPIC_KEYS = ["data", "commands", "results", "alerts"] as const;
const BROKER_KEYS = [
  "listen",
  "admin",
  "admin_token",
  "admin_token_file",
  "admin_token_env",
  "token",
  "token_file",
  "token_env",
  "sink",
  "command_timeout",
  "max_batch_samples",
  "replicas",
  "max_streams",
  "tls",
] as const;
const BROKER_TLS_KEYS = ["cert", "key", "ca", "require_client_cert"] as const;
const ANALYSIS_KEYS = [
  "group",
  "command_timeout",
  "summary_interval",
  "http",
  "http_token",
  "http_token_file",
  "http_token_env",
  "tls",
  "history",
] as const;
const HISTORY_KEYS = ["raw_retention_hours", "rollup_retention_days", "max_size_mb"] as const;
const AGENT_KEYS = [
  "id",
  "broker",
  "token",
  "token_file",
  "token_env",
  "metrics_source",
  "tls",
] as const;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The one source of a secret (`<name>`, `<name>_file` or `<name>_env`) of a
 * section, checked; adds the keys found to `into`.
 */
function secretKeys(
  doc: Record<string, unknown>,
  name: string,
  path: string,
  issues: Issues,
  into: Record<string, string>,
): boolean {
  const inline = text(doc, name, path, "a non-empty token", issues);
  const file = text(doc, `${name}_file`, path, "a file path", issues);
  const env = text(doc, `${name}_env`, path, "an environment variable name", issues);
  if (env !== undefined && !ENV_NAME.test(env)) {
    issues.wrong(`${path}.${name}_env`, "an environment variable name, e.g. MONITOR_TOKEN", env);
  }
  const given = [[name, inline], [`${name}_file`, file], [`${name}_env`, env]].filter(
    ([, v]) => v !== undefined,
  ) as Array<[string, string]>;
  if (given.length > 1) {
    issues.wrong(
      `${path}.${given[1][0]}`,
      `only one of ${name}, ${name}_file and ${name}_env`,
      doc[given[1][0]],
    );
  }
  for (const [key, value] of given) into[key] = value;
  return given.length > 0;
}
const AGENT_TLS_KEYS = ["ca", "cert", "key", "server_name"] as const;
const METRICS_SOURCES = ["auto", "native", "systeminformation"] as const;
/** Kafka's rule for topic names (the services use the same). */
const TOPIC_PATTERN = /^[A-Za-z0-9._-]{1,249}$/;

function defaultHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

function checkStore(raw: unknown, issues: Issues): StoreConfig {
  const d = MONITOR_DEFAULTS.store;
  const doc = section(raw, "store", STORE_KEYS, issues) ?? {};
  const backend = oneOf(doc, "backend", "store", ["embedded", "etcd"], "embedded", issues);
  const endpoints = hostPortList(doc, "endpoints", "store", issues, { fallback: d.endpoints });
  let prefix: string = d.prefix;
  if (doc.prefix !== undefined && doc.prefix !== null) {
    if (typeof doc.prefix !== "string" || !doc.prefix.startsWith("/") || /\s/.test(doc.prefix)) {
      issues.wrong("store.prefix", "a key prefix starting with /, e.g. /monitor", doc.prefix);
    } else prefix = doc.prefix.replace(/\/+$/, "") || d.prefix;
  }
  return { backend, endpoints, prefix };
}

function checkBus(raw: unknown, issues: Issues): BusConfig {
  const d = MONITOR_DEFAULTS.bus;
  const doc = section(raw, "bus", BUS_KEYS, issues) ?? {};
  const backend = oneOf(doc, "backend", "bus", ["embedded", "kafka"], "embedded", issues);
  const brokers = hostPortList(doc, "brokers", "bus", issues, { fallback: d.brokers });
  const topics: TopicNames = { ...DEFAULT_TOPICS };
  const topicsDoc = section(doc.topics, "bus.topics", TOPIC_KEYS, issues) ?? {};
  const seen = new Map<string, string>();
  for (const key of TOPIC_KEYS) {
    const value = topicsDoc[key];
    if (value !== undefined && value !== null) {
      if (typeof value !== "string" || !TOPIC_PATTERN.test(value)) {
        issues.wrong(
          `bus.topics.${key}`,
          "a topic name of 1 to 249 letters, digits, '.', '_' or '-'",
          value,
        );
        continue;
      }
      topics[key] = value;
    }
    const other = seen.get(topics[key]);
    if (other !== undefined) {
      issues.add({
        path: `bus.topics.${key}`,
        expected: `a topic of its own (bus.topics.${other} is ${JSON.stringify(topics[key])})`,
        found: describeValue(topics[key]),
      });
    } else seen.set(topics[key], key);
  }
  return { backend, brokers, topics };
}

const SECONDS = "a number of seconds greater than 0";

/**
 * Every broker of a resolved `broker:` section: gRPC and admin address of
 * replica i (`listen` port + i, `admin` port + i; admin undefined when off).
 */
export function brokerReplicas(broker: BrokerConfig): Array<{ listen: string; admin?: string }> {
  const listens = replicaAddresses(broker.listen, broker.replicas);
  const admins = broker.admin === "off" ? [] : replicaAddresses(broker.admin, broker.replicas);
  return listens.map((listen, i) => (admins[i] ? { listen, admin: admins[i] } : { listen }));
}

function checkBroker(raw: unknown, issues: Issues): BrokerConfig {
  const d = MONITOR_DEFAULTS.broker;
  const doc = section(raw, "broker", BROKER_KEYS, issues) ?? {};
  const listen = hostPort(doc, "listen", "broker", issues, { fallback: d.listen });
  let replicas = positive(doc, "replicas", "broker", issues, {
    fallback: d.replicas,
    what: `a whole number of brokers from 1 to ${MAX_REPLICAS}`,
    whole: true,
  });
  if (replicas > MAX_REPLICAS) {
    issues.wrong(
      "broker.replicas",
      `a whole number of brokers from 1 to ${MAX_REPLICAS}`,
      replicas,
    );
    replicas = 1;
  }
  // With replicas and no admin given, the admin ports follow the brokers' ports.
  const adminDefault = replicas > 1 && doc.admin === undefined
    ? `${d.admin.slice(0, d.admin.lastIndexOf(":"))}:${
      Number(listen.slice(listen.lastIndexOf(":") + 1)) + replicas
    }`
    : d.admin;
  const admin = hostPort(doc, "admin", "broker", issues, { fallback: adminDefault }, {
    also: "off",
    what: "the admin API's address host:port, e.g. 127.0.0.1:50053",
  });
  let addresses = [listen];
  let adminAddresses = admin === "off" ? [] : [admin];
  if (replicas > 1) {
    try {
      addresses = replicaAddresses(listen, replicas);
      if (admin !== "off") adminAddresses = replicaAddresses(admin, replicas);
    } catch (error) {
      issues.wrong(
        "broker.replicas",
        `ports that fit: ${(error as Error).message}`,
        doc.replicas,
      );
      replicas = 1;
    }
    const port = (a: string) => a.slice(a.lastIndexOf(":") + 1);
    const grpcPorts = new Set(addresses.map(port));
    const clash = adminAddresses.find((a) => grpcPorts.has(port(a)));
    if (clash !== undefined) {
      issues.wrong(
        "broker.admin",
        `admin ports (${adminAddresses[0]} and the next ${
          replicas - 1
        }) apart from the brokers' ports ${addresses[0]} to ${addresses[addresses.length - 1]}`,
        doc.admin,
        `e.g. ${adminAddresses[0].slice(0, adminAddresses[0].lastIndexOf(":"))}:${
          Number(port(addresses[addresses.length - 1])) + 1
        }`,
      );
    }
  }
  const config: BrokerConfig = {
    listen,
    admin,
    replicas,
    max_streams: positive(doc, "max_streams", "broker", issues, {
      fallback: d.max_streams,
      what: "a whole number of streams (agents) greater than 0",
      whole: true,
    }),

    command_timeout: positive(doc, "command_timeout", "broker", issues, {
      fallback: d.command_timeout,
      what: SECONDS,
    }),
    max_batch_samples: positive(doc, "max_batch_samples", "broker", issues, {
      fallback: d.max_batch_samples,
      what: "a whole number of samples greater than 0",
      whole: true,
    }),
  };
  const secrets: Record<string, string> = {};
  const adminToken = secretKeys(doc, "admin_token", "broker", issues, secrets);
  secretKeys(doc, "token", "broker", issues, secrets);
  Object.assign(config, secrets);
  const sink = text(doc, "sink", "broker", "a file path", issues);
  if (sink !== undefined) config.sink = sink;
  if (admin !== "off" && typeof doc.admin === "string") {
    const problem = exposureProblem(admin, { token: adminToken }, { token: "broker.admin_token" });
    if (problem) issues.wrong("broker.admin", problem, doc.admin);
  }
  if (doc.tls !== undefined && doc.tls !== null) {
    const tls = section(doc.tls, "broker.tls", BROKER_TLS_KEYS, issues);
    if (tls) {
      const cert = text(tls, "cert", "broker.tls", "a PEM file path", issues);
      const key = text(tls, "key", "broker.tls", "a PEM file path", issues);
      const ca = text(tls, "ca", "broker.tls", "a PEM file path", issues);
      const require = flag(tls, "require_client_cert", "broker.tls", issues, {
        fallback: tls.ca !== undefined && tls.ca !== null,
        what: "refuse agents without a client certificate",
      });
      if (!require && tls.ca !== undefined && tls.ca !== null) {
        issues.wrong(
          "broker.tls.require_client_cert",
          "true (or absent) with ca: client certificates cannot be optional",
          tls.require_client_cert,
        );
      }
      const given = (value: unknown) => value !== undefined && value !== null;
      const mtlsOnly = !given(tls.cert) && !given(tls.key) &&
        (given(tls.ca) || tls.require_client_cert === true);
      if (mtlsOnly) {
        // ca (or require_client_cert) alone: one issue naming the key (or flag) that asks for mTLS.
        issues.add({
          path: given(tls.ca) ? "broker.tls.ca" : "broker.tls.require_client_cert",
          problem: "mTLS needs TLS",
          expected: "broker.tls.cert and broker.tls.key too",
          found: "neither",
        });
      }
      if (!mtlsOnly && cert === undefined && tls.cert === undefined) {
        issues.wrong("broker.tls.cert", "the certificate (PEM file) together with key", undefined);
      }
      if (!mtlsOnly && key === undefined && tls.key === undefined) {
        issues.wrong("broker.tls.key", "the private key (PEM file) together with cert", undefined);
      }
      if (!mtlsOnly && require && ca === undefined && tls.ca === undefined) {
        issues.wrong(
          "broker.tls.ca",
          "the CA (PEM file) client certificates must chain to, since require_client_cert is true",
          undefined,
        );
      }
      if (cert !== undefined && key !== undefined) {
        config.tls = { cert, key, require_client_cert: require };
        if (ca !== undefined) config.tls.ca = ca;
      }
    }
  }
  return config;
}

function checkAnalysis(raw: unknown, issues: Issues): AnalysisConfig {
  const d = MONITOR_DEFAULTS.analysis;
  const doc = section(raw, "analysis", ANALYSIS_KEYS, issues) ?? {};
  const http = hostPort(doc, "http", "analysis", issues, { fallback: d.http }, {
    also: "off",
    what: "the dashboard's address host:port, e.g. 127.0.0.1:8090",
  });
  const historyDoc = section(doc.history, "analysis.history", HISTORY_KEYS, issues) ?? {};
  const config: AnalysisConfig = {
    group: text(doc, "group", "analysis", "a consumer group name", issues) ?? d.group,
    command_timeout: positive(doc, "command_timeout", "analysis", issues, {
      fallback: d.command_timeout,
      what: SECONDS,
    }),
    summary_interval: positive(doc, "summary_interval", "analysis", issues, {
      fallback: d.summary_interval,
      what: SECONDS,
    }),
    http,
    history: {
      raw_retention_hours: positive(historyDoc, "raw_retention_hours", "analysis.history", issues, {
        fallback: d.history.raw_retention_hours,
        what: "a number of hours greater than 0",
      }),
      rollup_retention_days: positive(
        historyDoc,
        "rollup_retention_days",
        "analysis.history",
        issues,
        { fallback: d.history.rollup_retention_days, what: "a number of days greater than 0" },
      ),
      max_size_mb: positive(historyDoc, "max_size_mb", "analysis.history", issues, {
        fallback: d.history.max_size_mb,
        what: "a size in MiB greater than 0",
      }),
    },
  };
  const secrets: Record<string, string> = {};
  const token = secretKeys(doc, "http_token", "analysis", issues, secrets);
  Object.assign(config, secrets);
  if (doc.tls !== undefined && doc.tls !== null) {
    const tls = section(doc.tls, "analysis.tls", ["cert", "key"], issues);
    if (tls) {
      const cert = text(tls, "cert", "analysis.tls", "a PEM file path", issues);
      const key = text(tls, "key", "analysis.tls", "a PEM file path", issues);
      if (cert === undefined && tls.cert === undefined) {
        issues.wrong(
          "analysis.tls.cert",
          "the certificate (PEM file) together with key",
          undefined,
        );
      }
      if (key === undefined && tls.key === undefined) {
        issues.wrong(
          "analysis.tls.key",
          "the private key (PEM file) together with cert",
          undefined,
        );
      }
      if (cert !== undefined && key !== undefined) config.tls = { cert, key };
    }
  }
  if (http !== "off" && typeof doc.http === "string") {
    const problem = exposureProblem(http, { token, tls: config.tls !== undefined }, {
      token: "analysis.http_token",
      tls: "analysis.tls",
    });
    if (problem) issues.wrong("analysis.http", problem, doc.http);
  }
  return config;
}

/**
 * The analysis application's section resolved with its defaults (the
 * section of a monitor.yaml already checked, or `{}`).
 * @throws ConfigError naming every issue
 */
export function resolveAnalysisSection(raw: unknown, file?: string): AnalysisConfig {
  const issues = new Issues();
  const config = checkAnalysis(raw, issues);
  if (issues.count > 0) throw new ConfigError(issues.list, file);
  return config;
}

function checkAgent(
  raw: unknown,
  broker: BrokerConfig,
  hostname: string,
  issues: Issues,
): LocalAgentConfig {
  const doc = section(raw, "agent", AGENT_KEYS, issues) ?? {};
  let id = hostname;
  if (doc.id !== undefined && doc.id !== null) {
    const problem = typeof doc.id === "string" ? checkAgentId(doc.id) : "a string";
    if (problem === undefined) id = doc.id as string;
    else {
      issues.wrong(
        "agent.id",
        "an agent id: 1 to 128 letters, digits, '.', '_' or '-', not \"all\"",
        doc.id,
      );
    }
  }
  let brokers = brokerReplicas(broker).map((b) => localAddress(b.listen));
  if (doc.broker !== undefined && doc.broker !== null) {
    const parsed = parseBrokerList(doc.broker);
    if (typeof parsed === "string") {
      issues.wrong(
        "agent.broker",
        `${BROKER_LIST_EXPECTED} (a string or a YAML list)`,
        doc.broker,
        parsed,
      );
    } else brokers = parsed;
  }
  const config: LocalAgentConfig = {
    id,
    broker: brokers.join(","),
    metrics_source: oneOf(doc, "metrics_source", "agent", METRICS_SOURCES, "auto", issues),
  };
  const secrets: Record<string, string> = {};
  if (!secretKeys(doc, "token", "agent", issues, secrets)) {
    for (const key of ["token", "token_file", "token_env"] as const) {
      if (broker[key] !== undefined) secrets[key] = broker[key] as string;
    }
  }
  Object.assign(config, secrets);
  if (doc.tls !== undefined && doc.tls !== null) {
    const tlsDoc = section(doc.tls, "agent.tls", AGENT_TLS_KEYS, issues);
    if (tlsDoc) {
      const tls: AgentTlsConfig = {};
      for (const key of AGENT_TLS_KEYS) {
        const what = key === "server_name" ? "a host name" : "a PEM file path";
        const value = text(tlsDoc, key, "agent.tls", what, issues);
        if (value !== undefined) tls[key] = value;
      }
      const hasCert = tlsDoc.cert !== undefined && tlsDoc.cert !== null;
      const hasKey = tlsDoc.key !== undefined && tlsDoc.key !== null;
      if (hasCert !== hasKey) {
        const missing = hasCert ? "key" : "cert";
        issues.wrong(
          `agent.tls.${missing}`,
          `both cert and key (PEM files) for mTLS, or neither`,
          undefined,
        );
      }
      if (Object.keys(tls).length > 0) config.tls = tls;
    }
  }
  return config;
}

function checkPlugins(raw: unknown, issues: Issues): Record<string, UrlPluginConfig> {
  const found: ConfigIssue[] = [];
  const specs = checkPluginsSection(raw, found, "plugins");
  for (const issue of found) issues.add(issue);
  const plugins: Record<string, UrlPluginConfig> = {};
  for (const [name, spec] of specs) {
    plugins[name] = {
      url: spec.url,
      version: specVersion(spec),
      permissions: normalizePermissions(spec.permissions),
      config: structuredClone(spec.config ?? {}),
    };
  }
  return plugins;
}

function checkAgents(
  raw: unknown,
  urlPlugins: readonly string[],
  issues: Issues,
): { agents: Record<string, AgentConfig>; documents: Record<string, Record<string, unknown>> } {
  const agents: Record<string, AgentConfig> = {};
  const documents: Record<string, Record<string, unknown>> = {};
  let entries: Array<[string, unknown]> = [];
  if (raw !== undefined && raw !== null) {
    if (!isMapping(raw)) {
      issues.wrong(
        "agents",
        "a mapping from agent id (or default) to its configuration {interval, metrics, plugins}",
        raw,
      );
    } else entries = Object.entries(raw);
  }
  if (!entries.some(([id]) => id === "default")) {
    entries.push(["default", structuredClone(DEFAULT_AGENT_CONFIG_JSON)]);
  }
  for (const [id, value] of entries) {
    const where = `agents.${id}`;
    const problem = checkAgentId(id);
    if (problem !== undefined) {
      issues.add({
        path: where,
        expected: "an agent id (1 to 128 letters, digits, '.', '_' or '-', not \"all\") or default",
        found: describeValue(id),
        anchor: "key",
      });
      continue;
    }
    const result = validateAgentConfig(value, where, { knownPlugins: { url: urlPlugins } });
    for (const issue of result.issues) issues.add(issue);
    if (result.config && isMapping(value)) {
      agents[id] = result.config;
      documents[id] = structuredClone(value);
    }
  }
  return { agents, documents };
}

/**
 * Validates a plain monitor.yaml value (already parsed) and resolves it.
 * Issues carry key paths but no positions; prefer {@linkcode checkMonitorSource}.
 * @param value the document's value (`null`/`undefined` for an empty file)
 * @param options defaults that depend on the machine
 */
export function resolveMonitorValue(
  value: unknown,
  options: ParseOptions & { file?: string } = {},
): { config?: MonitorConfig; issues: Array<ConfigIssue & { anchor?: "key" | "value" }> } {
  const issues = new Issues();
  const doc = section(value, "", MONITOR_KEYS, issues);
  if (doc === undefined) return { issues: issues.list };
  let stateDir: string = MONITOR_DEFAULTS.state_dir;
  if (doc.state_dir !== undefined && doc.state_dir !== null) {
    if (typeof doc.state_dir === "string" && doc.state_dir.trim() !== "") stateDir = doc.state_dir;
    else issues.wrong("state_dir", "a directory path, e.g. .monitor", doc.state_dir);
  }
  const logLevel = oneOf(doc, "log_level", "", LOG_LEVELS, MONITOR_DEFAULTS.log_level, issues);
  const logFormat = oneOf(doc, "log_format", "", LOG_FORMATS, MONITOR_DEFAULTS.log_format, issues);
  const store = checkStore(doc.store, issues);
  const bus = checkBus(doc.bus, issues);
  const broker = checkBroker(doc.broker, issues);
  const analysis = checkAnalysis(doc.analysis, issues);
  const agent = checkAgent(doc.agent, broker, options.hostname ?? defaultHostname(), issues);
  const plugins = checkPlugins(doc.plugins, issues);
  // Agents may name every declared plugin, even one whose declaration has issues of its own.
  const declared = isMapping(doc.plugins) ? Object.keys(doc.plugins) : [];
  const { agents, documents } = checkAgents(doc.agents, declared, issues);
  if (issues.count > 0) return { issues: issues.list };
  const config: MonitorConfig = {
    state_dir: stateDir,
    log_level: logLevel,
    log_format: logFormat,
    store,
    bus,
    broker,
    analysis,
    agent,
    agents,
    agent_documents: documents,
    plugins,
    source: { dir: options.dir ?? (options.file ? dirname(options.file) : ".") },
  };
  if (options.file !== undefined) config.source.file = options.file;
  return { config, issues: [] };
}

/**
 * Whether an issue is about an entry's key rather than its value: the
 * validators report a bad key as `unknown key "x"`, `unknown plugin "x"` or
 * `"x" (a string)` where `x` is the last part of the path.
 */
function isKeyIssue(issue: ConfigIssue & { anchor?: string }): boolean {
  if (issue.anchor) return issue.anchor === "key";
  if (issue.found.startsWith("a request for ")) return true;
  const quoted = /^(?:unknown [a-z]+ )?("(?:[^"\\]|\\.)*")(?: \(a string\))?$/.exec(issue.found)
    ?.[1];
  if (quoted === undefined) return false;
  try {
    const key = JSON.parse(quoted);
    return issue.path === key || issue.path.endsWith(`.${key}`);
  } catch {
    return false;
  }
}

/** The source of an empty monitor.yaml (what npm:yaml makes of ""), without parsing anything. */
export const EMPTY_SOURCE: YamlSource = Object.freeze({
  value: null,
  syntaxIssues: [],
  locate: () => undefined,
});

/**
 * Validates a parsed monitor.yaml without throwing: the check of
 * `checkMonitorConfig` (services/config/monitor_yaml.ts, which parses the
 * text with npm:yaml) on its {@linkcode YamlSource}, or on
 * {@linkcode EMPTY_SOURCE} for the defaults and the flags alone (no YAML
 * parser loaded: the agent's case).
 * @param source the parsed document, its syntax issues and the positions of its keys
 * @param file the file name used in messages (and, without `options.dir`, for relative paths)
 * @param options defaults that depend on the machine
 */
export function checkMonitorSource(
  source: YamlSource,
  file: string,
  options: ParseOptions = {},
): MonitorCheck {
  if (source.syntaxIssues.length > 0) return { issues: source.syntaxIssues };
  const flags = options.flags ?? [];
  const { config, issues } = resolveMonitorValue(withOverrides(source.value, flags), {
    ...options,
    file,
  });
  const located = issues.map(({ anchor, ...issue }) => {
    const flag = overrideAt(flags, issue.path);
    if (flag) {
      const out: ConfigIssue = { ...issue, path: flag.flag };
      if (flag.expected !== undefined) out.expected = flag.expected;
      if (out.hint === undefined) delete out.hint;
      return out;
    }
    const where = source.locate(issue.path, anchor ?? (isKeyIssue(issue) ? "key" : "value"));
    const out: ConfigIssue = { ...issue };
    if (out.hint === undefined) delete out.hint;
    if (where) {
      out.line = where.line;
      out.column = where.column;
    }
    return out;
  });
  // In the order of the file (issues without a position first, as found; the flags' in
  // the order of the flag table).
  const flagOrder = (issue: ConfigIssue) => flags.findIndex((f) => f.flag === issue.path);
  located.sort((a, b) =>
    (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0) ||
    flagOrder(a) - flagOrder(b)
  );
  return config
    ? { config, document: source.value, issues: [] }
    : { document: source.value, issues: located };
}

/** The error of a check's issues: the file's, unless every issue is a flag's. */
export function monitorConfigError(issues: ConfigIssue[], file?: string): ConfigError {
  const fromFlags = issues.every((i) => i.path.startsWith("--"));
  return new ConfigError(issues, fromFlags ? undefined : file);
}

/**
 * The configuration without a monitor.yaml: the defaults with the
 * command-line flags written at their key paths (`resolveConfig` without a
 * file; no YAML parser loaded). Relative paths are relative to `cwd`.
 * @throws ConfigError listing every issue (flag issues name the flag)
 */
export function resolveWithoutFile(
  options: ParseOptions & { cwd?: string } = {},
): MonitorConfig {
  const { cwd, ...parse } = options;
  const dir = resolve(cwd ?? Deno.cwd());
  const { config, issues } = checkMonitorSource(EMPTY_SOURCE, "(command line)", { dir, ...parse });
  if (!config) throw monitorConfigError(issues);
  delete config.source.file;
  return config;
}

/** Absolute (when `source.dir` is) path of a file named in the config, e.g. `broker.sink`. */
export function configPath(config: MonitorConfig, path: string): string {
  return isAbsolute(path) ? path : join(config.source.dir, path);
}

/** The state directory, resolved against monitor.yaml's folder. */
export function stateDirPath(config: MonitorConfig): string {
  return configPath(config, config.state_dir);
}

/** The shared SQLite file of the embedded backends: `<state_dir>/monitor.db`. */
export function databasePath(config: MonitorConfig): string {
  return join(stateDirPath(config), DATABASE_FILE);
}
