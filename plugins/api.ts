/**
 * The plugin API: what every agent plugin implements, built-in or loaded by URL.
 *
 * A plugin sees each sample in the configured order and returns the sample,
 * a changed sample, or nothing (`undefined`/`null`) to drop it. Plugins loaded
 * by URL export a factory as their default export:
 *
 * ```ts
 * // A plugin published elsewhere imports this file by its URL; here, by its path.
 * import type { Plugin, Sample } from "./api.ts";
 *
 * export default function createPlugin(): Plugin {
 *   let factor = 1;
 *   return {
 *     name: "scale",
 *     version: "1.0.0",
 *     initialize(config) {
 *       factor = typeof config.factor === "number" ? config.factor : 1;
 *     },
 *     run(sample: Sample) {
 *       const metrics = Object.fromEntries(
 *         Object.entries(sample.metrics).map(([name, value]) => [name, value * factor]),
 *       );
 *       return { ...sample, metrics };
 *     },
 *     finalize() {},
 *   };
 * }
 * ```
 *
 * @module
 */

/** One collection round of one agent. */
export interface Sample {
  /** Unix seconds, fractions allowed. */
  timestamp: number;
  /** Metric name -> value, e.g. `{"cpu": 12.5, "disk read": 1024}`. */
  metrics: Record<string, number>;
}

/** A threshold alert transition raised by a plugin. */
export interface AlertEvent {
  metric: string;
  value: number;
  threshold: number;
  state: "firing" | "resolved";
  /** Unix seconds. */
  timestamp: number;
}

/** Log levels a plugin may use. */
export type PluginLogLevel = "debug" | "info" | "warn" | "error";

/** What the agent gives a plugin when initializing it. */
export interface PluginContext {
  /** Id of the agent running the plugin. */
  readonly agentId: string;
  /** Hostname of the agent. */
  readonly hostname: string;
  /** Collection interval in seconds currently in force. */
  readonly interval: number;
  /** Writes a line to the agent's log, tagged with the plugin name. */
  log(level: PluginLogLevel, message: string): void;
  /** Publishes an alert transition (topic `monitoring-alerts`). */
  emitAlert(alert: AlertEvent): void;
}

/** What `run` may return: the sample (changed or not), or nothing to drop it. */
export type RunResult = Sample | undefined | null | void;

/** An agent plugin. */
export interface Plugin {
  /** Plugin name, e.g. `duplicate_filter`. */
  readonly name: string;
  /** Plugin version, e.g. `1.0.0`. */
  readonly version: string;
  /** Called once before the first sample and again with new settings on a config change. */
  initialize(config: Record<string, unknown>, context: PluginContext): void | Promise<void>;
  /** Called for every sample; sync or async. */
  run(sample: Sample): RunResult | Promise<RunResult>;
  /** Called when the plugin is removed from the pipeline or the agent stops. */
  finalize(): void | Promise<void>;
}

/** The default export of a plugin module loaded by URL. */
export type PluginFactory = () => Plugin;

/** One setting of a built-in plugin. */
export type SettingSpec =
  | {
    type: "number";
    description: string;
    min?: number;
    max?: number;
    integer?: boolean;
    default?: number;
  }
  | { type: "boolean"; description: string; default?: boolean }
  | { type: "string"; description: string; values?: readonly string[]; default?: string };

/** The settings a built-in plugin accepts (its `plugin_configs` entry or `config` object). */
export interface SettingsSchema {
  /** Named settings. */
  fields: Readonly<Record<string, SettingSpec>>;
  /**
   * When set, metric names (as in `METRIC_NAMES` (services/common/messages.ts)) are accepted as
   * keys too, each checked against this spec (threshold_alert: `{"cpu": 80}`).
   */
  metricKeys?: SettingSpec & { type: "number" };
  /** Metrics whose value is a percentage (their metric-keyed setting must be 0..100). */
  percentMetrics?: readonly string[];
}
