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
  /**
   * Optional, additive: raw cumulative counters behind the rate metrics the
   * sample's agent collects, by metric name: `"disk read"` / `"disk write"`
   * bytes read / written by the host's whole disks since boot, `"net in"` /
   * `"net out"` bytes received / sent on its interfaces (loopback excluded)
   * since boot. They only grow, except when a device goes away or the host
   * reboots (a counter reset, as Prometheus understands it). Sent with every
   * sample the agent sends, whatever the plugins dropped from `metrics`.
   */
  counters?: Metrics;
  /** Optional, additive: the agent's collection interval in force (seconds). */
  interval?: number;
  /**
   * Optional, additive: every metric of this agent is sent again within this
   * many seconds even when unchanged (the duplicate filter's
   * `max_silent_intervals` × `interval`; `interval` without the filter). A
   * metric missing from a sample means "unchanged" until this window passes
   * (see services/common/agent_state.ts).
   */
  keepalive?: number;
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
