/**
 * Prometheus text exposition (format 0.0.4) of the broker's own counters and
 * each agent's latest metric values.
 *
 * Agent values are exposed as `monitor_metric_<sanitized metric name>` gauges
 * with labels `agent` and `metric` (the original name), e.g.
 * `monitor_metric_disk_read{agent="web-1",metric="disk read"} 1024`.
 *
 * @module
 */
import type { Counters, StatsSnapshot } from "./stats.ts";

/** Content type of the exposition. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Turns any text into a valid metric name fragment: `disk read` -> `disk_read`. */
export function sanitizeMetricName(name: string): string {
  let out = name.replace(/[^a-zA-Z0-9_:]/g, "_").replace(/_+/g, "_");
  if (out === "" || /^[0-9]/.test(out)) out = `_${out}`;
  return out;
}

/** Escapes a label value (backslash, double quote, newline). */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function labels(pairs: Record<string, string>): string {
  const parts = Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/** What the exposition is built from. */
export interface MetricsInput {
  total: StatsSnapshot;
  agents: Map<string, StatsSnapshot>;
  /** Latest sample values per agent. */
  latest: Map<string, { timestamp: number; metrics: Record<string, number> }>;
  /** Agent ids connected right now. */
  connected: Set<string>;
  /** Heartbeat status per agent id. */
  alive: Map<string, boolean>;
  /** Seconds since the broker started. */
  uptimeSeconds: number;
}

const COUNTERS: Array<[keyof Counters, string, string]> = [
  ["batches", "batches_total", "Batches received from agents and acknowledged."],
  ["samples", "samples_total", "Samples published to the data topic."],
  ["alerts", "alerts_total", "Alerts published to the alerts topic."],
  ["bytes", "published_bytes_total", "Bytes of JSON published to the bus."],
  ["duplicates", "duplicate_batches_total", "Batches received again after being acknowledged."],
  ["publish_failures", "publish_failures_total", "Publishes the bus refused."],
  ["invalid_messages", "invalid_messages_total", "Malformed messages refused."],
  ["commands", "commands_total", "Commands sent to agents."],
  ["results", "results_total", "Command results published."],
  ["errors", "errors_total", "Errors of any kind."],
];

/** Builds the exposition text. */
export function renderMetrics(input: MetricsInput): string {
  const lines: string[] = [];
  const family = (name: string, type: string, help: string) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  family("monitor_broker_uptime_seconds", "gauge", "Seconds since the broker started.");
  lines.push(`monitor_broker_uptime_seconds ${formatValue(input.uptimeSeconds)}`);
  family("monitor_broker_connected_agents", "gauge", "Agents connected right now.");
  lines.push(`monitor_broker_connected_agents ${input.connected.size}`);
  for (const [key, suffix, help] of COUNTERS) {
    const name = `monitor_broker_${suffix}`;
    family(name, "counter", help);
    lines.push(`${name} ${formatValue(input.total[key])}`);
    for (const [agent, stats] of sortedEntries(input.agents)) {
      lines.push(`${name}${labels({ agent })} ${formatValue(stats[key])}`);
    }
  }
  family(
    "monitor_broker_publish_latency_ms",
    "gauge",
    "Publish latency percentiles over the most recent publishes (milliseconds).",
  );
  for (
    const [quantile, value] of [["0.5", input.total.publish_latency_ms.p50], [
      "0.99",
      input.total.publish_latency_ms.p99,
    ]] as const
  ) {
    if (value !== null) {
      lines.push(`monitor_broker_publish_latency_ms${labels({ quantile })} ${formatValue(value)}`);
    }
  }
  family("monitor_agent_connected", "gauge", "1 while the agent is connected to this broker.");
  const known = new Set([...input.agents.keys(), ...input.latest.keys(), ...input.alive.keys()]);
  for (const agent of [...known].sort()) {
    lines.push(`monitor_agent_connected${labels({ agent })} ${input.connected.has(agent) ? 1 : 0}`);
  }
  family(
    "monitor_agent_up",
    "gauge",
    "1 while the agent's heartbeat is present, 0 once it is gone.",
  );
  for (const [agent, alive] of sortedEntries(input.alive)) {
    lines.push(`monitor_agent_up${labels({ agent })} ${alive ? 1 : 0}`);
  }
  family(
    "monitor_agent_last_sample_timestamp_seconds",
    "gauge",
    "Timestamp of the agent's latest sample (Unix seconds).",
  );
  for (const [agent, latest] of sortedEntries(input.latest)) {
    lines.push(
      `monitor_agent_last_sample_timestamp_seconds${labels({ agent })} ${
        formatValue(latest.timestamp)
      }`,
    );
  }
  // Latest metric values, one family per sanitized metric name.
  const families = new Map<string, Array<{ agent: string; metric: string; value: number }>>();
  for (const [agent, latest] of sortedEntries(input.latest)) {
    for (
      const [metric, value] of Object.entries(latest.metrics).sort(([a], [b]) => a < b ? -1 : 1)
    ) {
      const name = `monitor_metric_${sanitizeMetricName(metric)}`;
      const rows = families.get(name) ?? [];
      rows.push({ agent, metric, value });
      families.set(name, rows);
    }
  }
  for (const [name, rows] of [...families.entries()].sort(([a], [b]) => a < b ? -1 : 1)) {
    family(name, "gauge", `Latest value of agent metric "${escapeHelp(rows[0].metric)}".`);
    for (const row of rows) {
      lines.push(
        `${name}${labels({ agent: row.agent, metric: row.metric })} ${formatValue(row.value)}`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function sortedEntries<V>(map: Map<string, V>): Array<[string, V]> {
  return [...map.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
}
