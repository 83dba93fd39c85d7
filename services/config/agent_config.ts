/**
 * The agent configuration: its format, its defaults and THE validator used by
 * the agent (for `<prefix>/config/<id>`), the supervisor (monitor.yaml's
 * `agents:` entries) and the broker console's `config` command.
 *
 * The seed's format works exactly as written with `etcdctl put`:
 *
 * ```json
 * {"interval": 5, "metrics": ["cpu", "memory", "disk read", "disk write", "net in", "net out"],
 *  "plugins": ["plugins.duplicate_filter.DuplicateFilterPlugin",
 *              "plugins.threshold_alert.ThresholdAlertPlugin"],
 *  "plugin_configs": {"ThresholdAlertPlugin": {"cpu": 80, "memory": 90, "disk": 95}}}
 * ```
 *
 * Plugins may also be given by short name (`duplicate_filter`), class name
 * (`DuplicateFilterPlugin`), or as objects `{"name", "url"?, "config"?}`
 * where a name that is not built in refers to a URL plugin declared in
 * monitor.yaml `plugins:` (pinned in the store at `<prefix>/plugins/<name>`).
 *
 * @module
 */
import { isLogLevel, LOG_LEVELS, type LogLevel } from "../common/log.ts";
import { METRIC_NAMES, type MetricName } from "../common/messages.ts";
import { type ConfigIssue, describeValue, didYouMean, someOf } from "./issues.ts";
import { BUILTIN_PLUGINS, type BuiltinPlugin, findBuiltinPlugin } from "../../plugins/mod.ts";
import type { SettingSpec, SettingsSchema } from "../../plugins/api.ts";
import { isPlainObject } from "../common/objects.ts";

/** The plugin settings schema is the plugin API's (plugins/api.ts). */
export type { SettingSpec, SettingsSchema };

/** A plugin in the pipeline, after validation. */
export interface PluginSpec {
  /** Canonical name: the short name of a built-in (`duplicate_filter`) or the URL plugin's name. */
  name: string;
  /** Built into the agent, or loaded by URL (pinned at `<prefix>/plugins/<name>`). */
  kind: "builtin" | "url";
  /** URL plugins: the URL the configuration expects (must match the pin when given). */
  url?: string;
  /** Settings handed to `initialize()`. */
  config: Record<string, unknown>;
}

/** A valid agent configuration with every default filled in. */
export interface AgentConfig {
  /** Collection interval in seconds (1..3600). */
  interval: number;
  /** Metrics to collect, in the configured order. */
  metrics: MetricName[];
  /** Plugins, in pipeline order. */
  plugins: PluginSpec[];
  /** Heartbeat lease TTL in seconds (default 10). */
  heartbeat_ttl: number;
  /** Most batches kept while waiting for acknowledgements (default 1000). */
  buffer: number;
  /** Most samples in one batch (default 50). */
  batch_max_samples: number;
  /** Time budget of one plugin call in milliseconds (default 1000). */
  plugin_timeout_ms: number;
  /** Consecutive failures after which a plugin is disabled (default 5). */
  plugin_max_failures: number;
  /** Log level of the agent, when the configuration sets one. */
  log_level?: LogLevel;
}

/** Limits and defaults of the agent-level fields. */
export const AGENT_CONFIG_LIMITS = Object.freeze({
  interval: { min: 1, max: 3600 },
  heartbeat_ttl: { min: 2, max: 3600, default: 10 },
  buffer: { min: 1, max: 1_000_000, default: 1000 },
  batch_max_samples: { min: 1, max: 1000, default: 50 },
  plugin_timeout_ms: { min: 1, max: 600_000, default: 1000 },
  plugin_max_failures: { min: 1, max: 1000, default: 5 },
});

/** The seed's default configuration, used by an agent when the store has none. */
export const DEFAULT_AGENT_CONFIG_JSON: Readonly<Record<string, unknown>> = Object.freeze({
  interval: 5,
  metrics: ["cpu", "memory", "disk read", "disk write", "net in", "net out"],
  plugins: [
    "plugins.duplicate_filter.DuplicateFilterPlugin",
    "plugins.threshold_alert.ThresholdAlertPlugin",
  ],
  plugin_configs: { ThresholdAlertPlugin: { cpu: 80, memory: 90, disk: 95 } },
});

/** Which plugins exist besides the built-ins. */
export interface KnownPlugins {
  /**
   * Names of URL plugins that can be referenced (monitor.yaml `plugins:` or
   * the pins under `<prefix>/plugins/`). When omitted, a plugin object whose
   * name is not built in is accepted as a URL plugin reference and resolved
   * when the agent loads it.
   */
  url?: readonly string[];
}

/** Options of {@linkcode validateAgentConfig}. */
export interface ValidateOptions {
  knownPlugins?: KnownPlugins;
}

/** Outcome of validation: a config when there are no issues. */
export interface ValidationResult {
  config?: AgentConfig;
  issues: ConfigIssue[];
}

const TOP_LEVEL_KEYS = [
  "interval",
  "metrics",
  "plugins",
  "plugin_configs",
  "heartbeat_ttl",
  "buffer",
  "batch_max_samples",
  "plugin_timeout_ms",
  "plugin_max_failures",
  "log_level",
] as const;

const PLUGIN_OBJECT_KEYS = ["name", "url", "config"] as const;

/** URL plugin names: like agent ids. */
const PLUGIN_NAME_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/** `parent.key`, or `key` at the top level. */
export function joinPath(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key;
}

/** True for a plain (non-list) object (services/common/objects.ts). */
export const isMapping: (value: unknown) => value is Record<string, unknown> = isPlainObject;

/** Every name a built-in plugin may be referred to by. */
export function builtinPluginAliases(): string[] {
  return BUILTIN_PLUGINS.flatMap((p) => [p.name, p.className, p.seedName]);
}

/**
 * Checks a settings object of a built-in plugin against its schema.
 * @param settings the value given in the configuration
 * @param schema the plugin's schema
 * @param path dotted path of `settings` for the issues
 */
export function checkPluginSettings(
  settings: unknown,
  schema: SettingsSchema,
  path: string,
): ConfigIssue[] {
  if (!isMapping(settings)) {
    return [{ path, expected: "a mapping of plugin settings", found: describeValue(settings) }];
  }
  const issues: ConfigIssue[] = [];
  const fieldNames = Object.keys(schema.fields);
  const metricNames: readonly string[] = schema.metricKeys ? METRIC_NAMES : [];
  for (const [key, value] of Object.entries(settings)) {
    const where = joinPath(path, key);
    const spec = schema.fields[key] ??
      (metricNames.includes(key) ? schema.metricKeys : undefined);
    if (!spec) {
      const candidates = [...fieldNames, ...metricNames];
      const hint = didYouMean(key, candidates);
      issues.push({
        path: where,
        expected: `one of the settings ${candidates.map((c) => JSON.stringify(c)).join(", ")}`,
        found: `unknown setting ${JSON.stringify(key)}`,
        hint: hint ? `did you mean ${JSON.stringify(hint)}?` : undefined,
      });
      continue;
    }
    const percent = spec === schema.metricKeys && (schema.percentMetrics ?? []).includes(key);
    const problem = checkSetting(value, spec, percent);
    if (problem) issues.push({ path: where, expected: problem, found: describeValue(value) });
  }
  return issues;
}

function checkSetting(value: unknown, spec: SettingSpec, percent: boolean): string | undefined {
  switch (spec.type) {
    case "number": {
      const min = spec.min ?? -Infinity;
      const max = percent ? Math.min(spec.max ?? Infinity, 100) : spec.max ?? Infinity;
      const what = spec.integer ? "a whole number" : "a number";
      const range = Number.isFinite(min) && Number.isFinite(max)
        ? ` from ${min} to ${max}`
        : Number.isFinite(min)
        ? ` >= ${min}`
        : Number.isFinite(max)
        ? ` <= ${max}`
        : "";
      const expected = `${what}${range}${percent ? " (percent)" : ""} (${spec.description})`;
      if (typeof value !== "number" || !Number.isFinite(value)) return expected;
      if (spec.integer && !Number.isInteger(value)) return expected;
      if (value < min || value > max) return expected;
      return undefined;
    }
    case "boolean":
      return typeof value === "boolean" ? undefined : `true or false (${spec.description})`;
    case "string": {
      if (spec.values) {
        return typeof value === "string" && spec.values.includes(value)
          ? undefined
          : `one of ${spec.values.map((v) => JSON.stringify(v)).join(", ")} (${spec.description})`;
      }
      return typeof value === "string" ? undefined : `a string (${spec.description})`;
    }
  }
}

function checkWholeNumber(
  value: unknown,
  where: string,
  limits: { min: number; max: number },
  unit: string,
  issues: ConfigIssue[],
): number | undefined {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < limits.min ||
    value > limits.max
  ) {
    issues.push({
      path: where,
      expected: `a whole number of ${unit} from ${limits.min} to ${limits.max}`,
      found: describeValue(value),
    });
    return undefined;
  }
  return value;
}

interface PluginRef {
  /** Where it was given (for issues). */
  where: string;
  spec: PluginSpec;
  builtin?: BuiltinPlugin;
  /** Settings given inline in a plugin object. */
  inline?: unknown;
}

function resolvePluginName(
  name: string,
  where: string,
  allowUrl: boolean,
  options: ValidateOptions,
  issues: ConfigIssue[],
): { builtin?: BuiltinPlugin; url?: string } | undefined {
  const builtin = findBuiltinPlugin(name);
  if (builtin) return { builtin };
  const urlNames = options.knownPlugins?.url;
  if (urlNames?.includes(name)) return { url: name };
  if (allowUrl && urlNames === undefined && PLUGIN_NAME_PATTERN.test(name)) return { url: name };
  const candidates = [...builtinPluginAliases(), ...(urlNames ?? [])];
  const hint = didYouMean(name, candidates);
  const builtinList = BUILTIN_PLUGINS.map((p) => p.name).join(", ");
  issues.push({
    path: where,
    expected: `a built-in plugin (${builtinList}, or their class names and dotted seed names)${
      urlNames && urlNames.length > 0
        ? ` or a URL plugin declared in monitor.yaml plugins: (${someOf(urlNames)})`
        : " or a URL plugin declared in monitor.yaml plugins:"
    }`,
    found: `unknown plugin ${JSON.stringify(name)}`,
    hint: hint ? `did you mean ${JSON.stringify(hint)}?` : undefined,
  });
  return undefined;
}

function checkPluginEntry(
  entry: unknown,
  where: string,
  options: ValidateOptions,
  issues: ConfigIssue[],
): PluginRef | undefined {
  if (typeof entry === "string") {
    const resolved = resolvePluginName(entry, where, false, options, issues);
    if (!resolved) return undefined;
    if (resolved.builtin) {
      return {
        where,
        builtin: resolved.builtin,
        spec: { name: resolved.builtin.name, kind: "builtin", config: {} },
      };
    }
    return { where, spec: { name: entry, kind: "url", config: {} } };
  }
  if (!isMapping(entry)) {
    issues.push({
      path: where,
      expected: 'a plugin name or an object {"name": ..., "url"?: ..., "config"?: {...}}',
      found: describeValue(entry),
    });
    return undefined;
  }
  let ok = true;
  for (const key of Object.keys(entry)) {
    if (!(PLUGIN_OBJECT_KEYS as readonly string[]).includes(key)) {
      const hint = didYouMean(key, PLUGIN_OBJECT_KEYS);
      issues.push({
        path: joinPath(where, key),
        expected: 'one of the plugin keys "name", "url", "config"',
        found: `unknown key ${JSON.stringify(key)}`,
        hint: hint ? `did you mean ${JSON.stringify(hint)}?` : undefined,
      });
      ok = false;
    }
  }
  const name = entry.name;
  if (typeof name !== "string" || name.length === 0) {
    issues.push({
      path: joinPath(where, "name"),
      expected: "the plugin's name (a non-empty string)",
      found: describeValue(name),
    });
    return undefined;
  }
  const url = entry.url;
  if (url !== undefined) {
    let valid = typeof url === "string";
    if (valid) {
      try {
        const parsed = new URL(url as string);
        valid = ["https:", "http:"].includes(parsed.protocol);
      } catch {
        valid = false;
      }
    }
    if (!valid) {
      issues.push({
        path: joinPath(where, "url"),
        expected: "an absolute https: or http: URL of the plugin module",
        found: describeValue(url),
      });
      ok = false;
    }
  }
  if (entry.config !== undefined && !isMapping(entry.config)) {
    issues.push({
      path: joinPath(where, "config"),
      expected: "a mapping of plugin settings",
      found: describeValue(entry.config),
    });
    ok = false;
  }
  const resolved = resolvePluginName(name, joinPath(where, "name"), true, options, issues);
  if (!resolved) return undefined;
  if (resolved.builtin && url !== undefined) {
    issues.push({
      path: joinPath(where, "url"),
      expected: `no url: ${JSON.stringify(name)} is a built-in plugin`,
      found: describeValue(url),
    });
    ok = false;
  }
  if (!ok) return undefined;
  if (resolved.builtin) {
    return {
      where,
      builtin: resolved.builtin,
      inline: entry.config,
      spec: { name: resolved.builtin.name, kind: "builtin", config: {} },
    };
  }
  const spec: PluginSpec = { name, kind: "url", config: {} };
  if (typeof url === "string") spec.url = url;
  return { where, inline: entry.config, spec };
}

/**
 * Validates an agent configuration value (parsed JSON or YAML).
 *
 * @param value the configuration
 * @param path dotted path of `value` in its document, e.g. `agents.default`
 *   (issues then read `agents.default.interval`); `""` for a whole document
 * @param options which URL plugins exist
 * @returns the normalized configuration (defaults filled in) when there are no issues
 */
export function validateAgentConfig(
  value: unknown,
  path = "",
  options: ValidateOptions = {},
): ValidationResult {
  const issues: ConfigIssue[] = [];
  if (!isMapping(value)) {
    issues.push({
      path,
      expected:
        'an agent configuration object such as {"interval": 5, "metrics": ["cpu"], "plugins": []}',
      found: describeValue(value),
    });
    return { issues };
  }
  for (const key of Object.keys(value)) {
    if (!(TOP_LEVEL_KEYS as readonly string[]).includes(key)) {
      const hint = didYouMean(key, TOP_LEVEL_KEYS);
      issues.push({
        path: joinPath(path, key),
        expected: `one of the agent configuration keys ${TOP_LEVEL_KEYS.join(", ")}`,
        found: `unknown key ${JSON.stringify(key)}`,
        hint: hint ? `did you mean ${JSON.stringify(hint)}?` : undefined,
      });
    }
  }

  // interval (required)
  let interval: number | undefined;
  const rawInterval = value.interval;
  const { min: iMin, max: iMax } = AGENT_CONFIG_LIMITS.interval;
  if (
    typeof rawInterval !== "number" || !Number.isFinite(rawInterval) || rawInterval < iMin ||
    rawInterval > iMax
  ) {
    issues.push({
      path: joinPath(path, "interval"),
      expected: `the collection interval in seconds, a number from ${iMin} to ${iMax}`,
      found: describeValue(rawInterval),
      hint: typeof rawInterval === "string" && /^\d+(\.\d+)?\s*s$/.test(rawInterval)
        ? `write ${parseFloat(rawInterval)} without the unit`
        : undefined,
    });
  } else interval = rawInterval;

  // metrics (required, non-empty, unique, known)
  const metrics: MetricName[] = [];
  const rawMetrics = value.metrics;
  const metricsPath = joinPath(path, "metrics");
  if (!Array.isArray(rawMetrics) || rawMetrics.length === 0) {
    issues.push({
      path: metricsPath,
      expected: `a non-empty list of metric names (${
        METRIC_NAMES.map((m) => JSON.stringify(m)).join(", ")
      })`,
      found: describeValue(rawMetrics),
    });
  } else {
    rawMetrics.forEach((metric, i) => {
      const where = `${metricsPath}[${i}]`;
      if (typeof metric !== "string" || !(METRIC_NAMES as readonly string[]).includes(metric)) {
        const hint = typeof metric === "string"
          ? didYouMean(metric.replace(/[_-]/g, " "), METRIC_NAMES)
          : undefined;
        issues.push({
          path: where,
          expected: `a metric name (${METRIC_NAMES.map((m) => JSON.stringify(m)).join(", ")})`,
          found: typeof metric === "string"
            ? `unknown metric ${JSON.stringify(metric)}`
            : describeValue(metric),
          hint: hint ? `did you mean ${JSON.stringify(hint)}?` : undefined,
        });
      } else if (metrics.includes(metric as MetricName)) {
        issues.push({
          path: where,
          expected: "each metric once",
          found: `${JSON.stringify(metric)} a second time`,
        });
      } else metrics.push(metric as MetricName);
    });
  }

  // plugins (optional, default none)
  const refs: PluginRef[] = [];
  const rawPlugins = value.plugins;
  const pluginsPath = joinPath(path, "plugins");
  if (rawPlugins !== undefined) {
    if (!Array.isArray(rawPlugins)) {
      issues.push({
        path: pluginsPath,
        expected: "a list of plugins (names or objects)",
        found: describeValue(rawPlugins),
      });
    } else {
      rawPlugins.forEach((entry, i) => {
        const ref = checkPluginEntry(entry, `${pluginsPath}[${i}]`, options, issues);
        if (!ref) return;
        if (refs.some((r) => r.spec.name === ref.spec.name)) {
          issues.push({
            path: ref.where,
            expected: "each plugin once",
            found: `plugin ${JSON.stringify(ref.spec.name)} a second time`,
          });
          return;
        }
        refs.push(ref);
      });
    }
  }

  // plugin_configs (optional): settings keyed by any name of a plugin
  const rawConfigs = value.plugin_configs;
  const configsPath = joinPath(path, "plugin_configs");
  const fromConfigs = new Map<string, { where: string; settings: unknown }>();
  if (rawConfigs !== undefined) {
    if (!isMapping(rawConfigs)) {
      issues.push({
        path: configsPath,
        expected: "a mapping from plugin name to its settings",
        found: describeValue(rawConfigs),
      });
    } else {
      for (const [key, settings] of Object.entries(rawConfigs)) {
        const where = joinPath(configsPath, key);
        const builtin = findBuiltinPlugin(key);
        const ref = refs.find((r) => r.spec.name === (builtin?.name ?? key));
        if (!builtin && !ref) {
          const candidates = [...builtinPluginAliases(), ...refs.map((r) => r.spec.name)];
          const hint = didYouMean(key, candidates);
          issues.push({
            path: where,
            expected: "the name of a built-in plugin or of a plugin listed in plugins",
            found: `unknown plugin ${JSON.stringify(key)}`,
            hint: hint ? `did you mean ${JSON.stringify(hint)}?` : undefined,
          });
          continue;
        }
        const canonical = builtin?.name ?? key;
        if (fromConfigs.has(canonical)) {
          issues.push({
            path: where,
            expected: "one settings entry per plugin",
            found: `a second entry for ${JSON.stringify(canonical)} (also ${
              fromConfigs.get(canonical)!.where
            })`,
          });
          continue;
        }
        fromConfigs.set(canonical, { where, settings });
        // Settings of a built-in that is not in the pipeline are still checked.
        if (builtin && !ref) issues.push(...checkPluginSettings(settings, builtin.settings, where));
        if (!builtin && !isMapping(settings)) {
          issues.push({
            path: where,
            expected: "a mapping of plugin settings",
            found: describeValue(settings),
          });
        }
      }
    }
  }
  for (const ref of refs) {
    const external = fromConfigs.get(ref.spec.name);
    if (ref.inline !== undefined && external) {
      issues.push({
        path: joinPath(ref.where, "config"),
        expected: `the settings of ${JSON.stringify(ref.spec.name)} in one place`,
        found: `settings here and in ${external.where}`,
      });
      continue;
    }
    const settings = ref.inline ?? external?.settings ?? {};
    const where = ref.inline !== undefined ? joinPath(ref.where, "config") : external?.where ??
      ref.where;
    if (ref.builtin) {
      const problems = checkPluginSettings(settings, ref.builtin.settings, where);
      issues.push(...problems);
      if (problems.length === 0) ref.spec.config = { ...(settings as Record<string, unknown>) };
    } else if (isMapping(settings)) {
      ref.spec.config = structuredClone(settings);
    }
  }

  // optional agent-level fields
  const L = AGENT_CONFIG_LIMITS;
  const optional = (key: keyof typeof L & string, unit: string, fallback: number) =>
    value[key] === undefined
      ? fallback
      : checkWholeNumber(value[key], joinPath(path, key), L[key], unit, issues) ?? fallback;
  const heartbeatTtl = optional("heartbeat_ttl", "seconds", L.heartbeat_ttl.default);
  const buffer = optional("buffer", "batches", L.buffer.default);
  const batchMax = optional("batch_max_samples", "samples", L.batch_max_samples.default);
  const timeoutMs = optional("plugin_timeout_ms", "milliseconds", L.plugin_timeout_ms.default);
  const maxFailures = optional(
    "plugin_max_failures",
    "consecutive failures",
    L.plugin_max_failures.default,
  );
  let logLevel: LogLevel | undefined;
  if (value.log_level !== undefined) {
    if (isLogLevel(value.log_level)) logLevel = value.log_level;
    else {
      issues.push({
        path: joinPath(path, "log_level"),
        expected: `one of ${LOG_LEVELS.join(", ")}`,
        found: describeValue(value.log_level),
      });
    }
  }

  if (issues.length > 0 || interval === undefined) return { issues };
  const config: AgentConfig = {
    interval,
    metrics,
    plugins: refs.map((r) => r.spec),
    heartbeat_ttl: heartbeatTtl,
    buffer,
    batch_max_samples: batchMax,
    plugin_timeout_ms: timeoutMs,
    plugin_max_failures: maxFailures,
  };
  if (logLevel) config.log_level = logLevel;
  return { config, issues };
}

/**
 * Parses agent configuration JSON text (for example a store value) and
 * validates it. Bad JSON is reported with its line and column.
 *
 * @param text the JSON text
 * @param source where it came from (store key or file), used in messages by callers
 * @param options which URL plugins exist
 */
export function parseAgentConfigText(
  text: string,
  source: string,
  options: ValidateOptions = {},
): ValidationResult & { source: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const { line, column } = jsonErrorPosition(text, message);
    return {
      source,
      issues: [{
        path: "",
        expected: "a JSON object",
        found: `invalid JSON (${message.replace(/\s*\(line \d+ column \d+\)/, "")})`,
        line,
        column,
      }],
    };
  }
  return { ...validateAgentConfig(value, "", options), source };
}

/** Line and column (1-based) of a JSON.parse error. */
function jsonErrorPosition(text: string, message: string): { line?: number; column?: number } {
  const lc = /line (\d+) column (\d+)/.exec(message);
  if (lc) return { line: Number(lc[1]), column: Number(lc[2]) };
  const pos = /position (\d+)/.exec(message);
  const offset = pos ? Number(pos[1]) : jsonErrorOffset(text);
  if (offset === undefined) return {};
  const lines = text.slice(0, offset).split("\n");
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

/**
 * Offset of the first syntax error in `text` (V8 does not always say where):
 * a small JSON scanner that only checks structure.
 */
function jsonErrorOffset(text: string): number | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const literal = (word: string) => {
    if (text.startsWith(word, i)) i += word.length;
    else fail();
  };
  const string = () => {
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === "\\") i++;
      else if (text.charCodeAt(i) < 0x20) fail();
      i++;
    }
    if (i >= text.length) fail();
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      while (true) {
        ws();
        string();
        ws();
        if (text[i] !== ":") fail();
        i++;
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return;
        } else fail();
      }
    }
    if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      while (true) {
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return;
        } else fail();
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true");
    if (c === "f") return literal("false");
    if (c === "n") return literal("null");
    const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!number) fail();
    i += number![0].length;
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
    return undefined;
  } catch (at) {
    return typeof at === "number" ? at : undefined;
  }
}

/** True when two configurations would behave the same (used to skip no-op updates). */
export function sameAgentConfig(a: AgentConfig, b: AgentConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
