/**
 * Message shapes of the bus topics (fixed contracts, see ARCHITECTURE.md).
 * Every message is one JSON object, UTF-8, keyed by agent id.
 * `timestamp` is Unix time in seconds (fractions allowed).
 *
 * @module
 */

/** Metric values by name, e.g. `{"cpu": 12.5, "disk read": 1024}`. */
export type Metrics = Record<string, number>;

/** `monitoring-data`: one sample of one agent. */
export interface DataMessage {
  agent_id: string;
  hostname: string;
  timestamp: number;
  metrics: Metrics;
}

/** `monitoring-commands`: the seed's format. `target` is an agent id or `all`. */
export interface CommandMessage {
  command_id: string;
  target: string;
  command_type: string;
  timestamp: number;
  args?: Record<string, unknown>;
}

/** `monitoring-results`: one per agent that ran (or could not run) a command. */
export interface ResultMessage {
  command_id: string;
  agent_id: string;
  status: "ok" | "error";
  /** A string, or a JSON object for structured output such as `status`. */
  output: unknown;
  timestamp: number;
}

/** `monitoring-alerts`: a threshold alert transition. */
export interface AlertMessage {
  agent_id: string;
  metric: string;
  value: number;
  threshold: number;
  state: "firing" | "resolved";
  timestamp: number;
}

/** Names of the bus topics, as in monitor.yaml's `bus.topics`. */
export interface TopicNames {
  data: string;
  commands: string;
  results: string;
  alerts: string;
}

/** Default topic names. */
export const DEFAULT_TOPICS: Readonly<TopicNames> = Object.freeze({
  data: "monitoring-data",
  commands: "monitoring-commands",
  results: "monitoring-results",
  alerts: "monitoring-alerts",
});

/** The metric names agents know, exactly as the seed writes them. */
export const METRIC_NAMES = [
  "cpu",
  "memory",
  "disk read",
  "disk write",
  "net in",
  "net out",
  "disk",
] as const;

/** One of {@linkcode METRIC_NAMES}. */
export type MetricName = typeof METRIC_NAMES[number];

/** Current Unix time in seconds with millisecond fractions. */
export function nowSeconds(): number {
  return Date.now() / 1000;
}
