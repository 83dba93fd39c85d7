/**
 * The broker's `/metrics`: its own counters and each agent's current state
 * (from {@linkcode AgentStateTable}) in the Prometheus text format 0.0.4, or
 * OpenMetrics 1.0 when the scraper's `Accept` header asks for it. Built on
 * `prom-client`, named as node_exporter names things: base units in names
 * (`_bytes`, `_seconds`; `_percent` for 0–100 values, said in HELP),
 * `_total` only on counters, latencies as histograms, and no name shared by
 * a total and a labelled family. Agent series carry `agent` and `host`
 * labels.
 *
 * A stale metric (see services/common/agent_state.ts) is left out, so its
 * series ends in Prometheus instead of repeating an invented value.
 *
 * Each scrape builds its families afresh from the current state (const
 * metrics, as node_exporter's collectors do); only the publish latency
 * histogram lives on between scrapes.
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry, type RegistryContentType } from "prom-client";
import type { AgentSnapshot } from "../common/agent_state.ts";
import type { Counters } from "./stats.ts";

/** Content type of the Prometheus text format. */
export const PROMETHEUS_CONTENT_TYPE: string = Registry.PROMETHEUS_CONTENT_TYPE;
/** Content type of OpenMetrics. */
export const OPENMETRICS_CONTENT_TYPE: string = Registry.OPENMETRICS_CONTENT_TYPE;

/** Exposition formats. */
export type ExpositionFormat = "prometheus" | "openmetrics";

/** Turns any text into a valid metric name fragment: `disk read` -> `disk_read`. */
export function sanitizeMetricName(name: string): string {
  let out = name.replace(/[^a-zA-Z0-9_:]/g, "_").replace(/_+/g, "_");
  if (out === "" || /^[0-9]/.test(out)) out = `_${out}`;
  return out;
}

/**
 * Picks the format from an `Accept` header: OpenMetrics when it is listed
 * with a quality above 0 and at least that of `text/plain`; the text format
 * otherwise (also without a header).
 *
 * ```ts
 * import { negotiateFormat } from "./prometheus.ts";
 * negotiateFormat("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"); // "openmetrics"
 * negotiateFormat("text/plain"); // "prometheus"
 * ```
 */
export function negotiateFormat(accept: string | null | undefined): ExpositionFormat {
  if (!accept) return "prometheus";
  let open = -1;
  let text = -1;
  for (const part of accept.split(",")) {
    const [type, ...params] = part.split(";").map((p) => p.trim().toLowerCase());
    let q = 1;
    for (const param of params) {
      const match = /^q=([0-9.]+)$/.exec(param);
      if (match) q = Number(match[1]);
    }
    if (!Number.isFinite(q)) continue;
    if (type === "application/openmetrics-text") open = Math.max(open, q);
    else if (type === "text/plain" || type === "*/*" || type === "text/*") text = Math.max(text, q);
  }
  return open > 0 && open >= text ? "openmetrics" : "prometheus";
}

/** A known agent metric: the family its gauge goes to, and for rates the counter family. */
interface KnownMetric {
  gauge: string;
  help: string;
  counter?: { name: string; help: string };
}

/**
 * The exported family of each metric agents know (the seed's names). Other
 * metrics (from plugins) go to `monitor_agent_metric{metric="..."}`.
 */
export const AGENT_METRIC_FAMILIES: Readonly<Record<string, KnownMetric>> = Object.freeze({
  "cpu": {
    gauge: "monitor_cpu_busy_percent",
    help:
      "CPU time busy (user, nice, system, irq) over the agent's last interval, in percent (0-100).",
  },
  "memory": {
    gauge: "monitor_memory_used_percent",
    help: "Memory in use ((total - available) / total), in percent (0-100).",
  },
  "disk": {
    gauge: "monitor_filesystem_used_percent",
    help: "Space used on the root filesystem, in percent (0-100).",
  },
  "disk read": {
    gauge: "monitor_disk_read_bytes_per_second",
    help: "Bytes read from the whole disks per second over the agent's last interval.",
    counter: {
      name: "monitor_disk_read_bytes_total",
      help: "Bytes read from the whole disks since boot (the kernel's counter; use rate()).",
    },
  },
  "disk write": {
    gauge: "monitor_disk_written_bytes_per_second",
    help: "Bytes written to the whole disks per second over the agent's last interval.",
    counter: {
      name: "monitor_disk_written_bytes_total",
      help: "Bytes written to the whole disks since boot (the kernel's counter; use rate()).",
    },
  },
  "net in": {
    gauge: "monitor_network_receive_bytes_per_second",
    help:
      "Bytes received per second on the network interfaces (loopback excluded) over the agent's last interval.",
    counter: {
      name: "monitor_network_receive_bytes_total",
      help:
        "Bytes received on the network interfaces (loopback excluded) since boot (the kernel's counter; use rate()).",
    },
  },
  "net out": {
    gauge: "monitor_network_transmit_bytes_per_second",
    help:
      "Bytes sent per second on the network interfaces (loopback excluded) over the agent's last interval.",
    counter: {
      name: "monitor_network_transmit_bytes_total",
      help:
        "Bytes sent on the network interfaces (loopback excluded) since boot (the kernel's counter; use rate()).",
    },
  },
});

/** Family of agent metrics without a known unit. */
export const OTHER_METRIC_FAMILY = "monitor_agent_metric";
/** Family of agent counters without a known unit. */
export const OTHER_COUNTER_FAMILY = "monitor_agent_cumulative_total";

/** The broker's counters: counter key, name fragment, help. */
const BROKER_COUNTERS: ReadonlyArray<[keyof Counters, string, string]> = [
  ["batches", "batches", "Batches received from agents and acknowledged"],
  ["samples", "samples", "Samples published to the data topic"],
  ["alerts", "alerts", "Alerts published to the alerts topic"],
  ["bytes", "published_bytes", "Bytes of JSON published to the bus"],
  ["duplicates", "duplicate_batches", "Batches received again after being acknowledged"],
  ["publish_failures", "publish_failures", "Publishes the bus refused"],
  ["invalid_messages", "invalid_messages", "Malformed messages refused"],
  ["commands", "commands", "Commands sent to agents"],
  ["results", "results", "Command results published"],
  ["errors", "errors", "Errors of any kind"],
];

/** Buckets of the publish latency histogram (seconds). */
export const PUBLISH_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** Creates the publish latency histogram (observe seconds). */
export function createPublishHistogram(): Histogram {
  return new Histogram({
    name: "monitor_broker_publish_duration_seconds",
    help: "Time from handing a group of batches to the bus until it acknowledged them, in seconds.",
    buckets: [...PUBLISH_BUCKETS],
    registers: [],
  });
}

/** What the exposition is built from. */
export interface ExpositionInput {
  /** When the broker started (Unix seconds). */
  startTimeSeconds: number;
  /** Agents connected right now. */
  connectedAgents: number;
  /** Commands waiting for an agent's answer. */
  pendingCommands: number;
  /** The broker's counters in total. */
  total: Counters;
  /** The broker's counters per agent id. */
  perAgent: Map<string, Counters>;
  /** Every agent's state (the model's snapshots, taken now). */
  agents: AgentSnapshot[];
  /** The publish latency histogram. */
  publishDuration: Histogram;
}

/** Renders the exposition in `format`. */
export async function renderExposition(
  input: ExpositionInput,
  format: ExpositionFormat = "prometheus",
): Promise<{ body: string; contentType: string }> {
  const registry = new Registry<RegistryContentType>();
  registry.setContentType(
    format === "openmetrics" ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE,
  );
  const registers = [registry];
  const gauge = (name: string, help: string, labelNames: string[] = []) =>
    new Gauge({ name, help, labelNames, registers });
  const counter = (name: string, help: string, labelNames: string[] = []) =>
    new Counter({ name, help, labelNames, registers });
  const agentLabels = ["agent", "host"];
  const hostOf = new Map(input.agents.map((a) => [a.agent_id, a.hostname]));
  const labelsOf = (agent: string) => ({ agent, host: hostOf.get(agent) ?? "" });

  gauge("monitor_broker_start_time_seconds", "When the broker started (Unix seconds).")
    .set(input.startTimeSeconds);
  gauge("monitor_broker_connected_agents", "Agents connected to this broker right now.")
    .set(input.connectedAgents);
  gauge("monitor_broker_pending_commands", "Commands waiting for an agent's answer.")
    .set(input.pendingCommands);
  const perAgent = [...input.perAgent.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
  for (const [key, fragment, help] of BROKER_COUNTERS) {
    counter(`monitor_broker_${fragment}_total`, `${help}, all agents together.`)
      .inc(input.total[key]);
    const family = counter(
      `monitor_broker_agent_${fragment}_total`,
      `${help}, per agent.`,
      agentLabels,
    );
    for (const [agent, counters] of perAgent) family.inc(labelsOf(agent), counters[key]);
  }
  registry.registerMetric(input.publishDuration);

  const up = gauge(
    "monitor_agent_up",
    "1 while the agent's heartbeat is present (or, without heartbeat information, while it is connected), 0 once it is gone.",
    agentLabels,
  );
  const connected = gauge(
    "monitor_agent_connected",
    "1 while the agent is connected to this broker, else 0.",
    agentLabels,
  );
  const lastSample = gauge(
    "monitor_agent_last_sample_timestamp_seconds",
    "Timestamp of the agent's newest sample (Unix seconds, the agent's clock).",
    agentLabels,
  );
  const staleCount = gauge(
    "monitor_agent_stale_metrics",
    "Metrics of the agent not reported within its keep-alive window (their series have ended).",
    agentLabels,
  );
  const keepalive = gauge(
    "monitor_agent_keepalive_seconds",
    "The agent's keep-alive window: every metric is sent again within it even when unchanged.",
    agentLabels,
  );
  const gauges = new Map<string, Gauge>();
  const counters = new Map<string, Counter>();
  const knownGauge = (metric: string) => {
    const known = AGENT_METRIC_FAMILIES[metric];
    let family = gauges.get(known.gauge);
    if (!family) gauges.set(known.gauge, family = gauge(known.gauge, known.help, agentLabels));
    return family;
  };
  const other = () => {
    let family = gauges.get(OTHER_METRIC_FAMILY);
    if (!family) {
      gauges.set(
        OTHER_METRIC_FAMILY,
        family = gauge(
          OTHER_METRIC_FAMILY,
          "Current value of an agent metric without a known unit (e.g. from a plugin), by its name.",
          [...agentLabels, "metric"],
        ),
      );
    }
    return family;
  };
  const counterFamily = (metric: string) => {
    const known = AGENT_METRIC_FAMILIES[metric]?.counter;
    const name = known?.name ?? OTHER_COUNTER_FAMILY;
    let family = counters.get(name);
    if (!family) {
      counters.set(
        name,
        family = known ? counter(name, known.help, agentLabels) : counter(
          name,
          "Raw cumulative counter of an agent without a known unit, by its metric name.",
          [...agentLabels, "metric"],
        ),
      );
    }
    return { family, known: known !== undefined };
  };

  for (const agent of input.agents) {
    const labels = labelsOf(agent.agent_id);
    const isUp = agent.up ?? agent.connected === true;
    up.set(labels, isUp ? 1 : 0);
    connected.set(labels, agent.connected ? 1 : 0);
    if (agent.last_sample !== null) lastSample.set(labels, agent.last_sample);
    keepalive.set(labels, agent.keepalive);
    let stale = 0;
    for (const [metric, state] of Object.entries(agent.metrics)) {
      if (state.stale) {
        stale++;
        continue;
      }
      if (Object.hasOwn(AGENT_METRIC_FAMILIES, metric)) knownGauge(metric).set(labels, state.value);
      else other().set({ ...labels, metric }, state.value);
    }
    staleCount.set(labels, stale);
    for (const [metric, state] of Object.entries(agent.counters)) {
      if (state.stale || !(state.value >= 0)) continue;
      const { family, known } = counterFamily(metric);
      family.inc(known ? labels : { ...labels, metric }, state.value);
    }
  }
  return { body: await registry.metrics(), contentType: registry.contentType };
}
