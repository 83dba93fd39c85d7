/**
 * The current state of each agent as every consumer of `monitoring-data`
 * sees it (broker `/metrics` and health, the analysis live view, summaries
 * and dashboard): each metric's current value, when it was last reported,
 * whether it is stale, and whether the agent is up. No I/O: callers feed it
 * samples, heartbeats and connection changes, and pass the time.
 *
 * Invariant: a metric's value is the one of the newest sample (by its
 * `timestamp`) that carried it. A sample without the metric means
 * "unchanged" (the duplicate filter drops values that did not change), so
 * the value is kept, fresh, until the agent's keep-alive window plus one
 * interval and {@linkcode STALE_GRACE_SECONDS} passed with no sample carrying it; then it is
 * stale: shown as such, never exported as current, and never revived except
 * by a sample that carries the metric again. The keep-alive window is the
 * sample's `keepalive` (the duplicate filter's `max_silent_intervals` ×
 * `interval`: within it every metric is sent again even when unchanged), or
 * {@linkcode DEFAULT_KEEPALIVE_SECONDS} for agents that do not say. When the
 * agent is known to be down (its heartbeat expired or was deleted), every
 * value reported before that is stale at once. Reconnects, restarts and
 * re-delivered (older) samples reset nothing that is still valid.
 *
 * Times are Unix seconds. Freshness compares sample timestamps (the agent's
 * clock) with `now` (this process's clock), so hosts need synchronized clocks
 * (NTP), as for any time series; a timestamp in the future counts as now.
 *
 * ```ts
 * import { AgentStateTable } from "./agent_state.ts";
 * const table = new AgentStateTable();
 * table.ingest({ agent_id: "web-1", hostname: "web-1", timestamp: 100,
 *   metrics: { cpu: 12.5, memory: 40 }, interval: 5, keepalive: 60 }, 100);
 * table.ingest({ agent_id: "web-1", hostname: "web-1", timestamp: 105,
 *   metrics: { memory: 41 }, interval: 5, keepalive: 60 }, 105);
 * table.values("web-1", 110); // { cpu: 12.5, memory: 41 }: cpu unchanged, still current
 * table.values("web-1", 200); // {}: nothing sent for longer than the keep-alive window
 * ```
 *
 * @module
 */
import type { DataMessage } from "./messages.ts";

/**
 * Keep-alive window assumed for samples that do not carry `keepalive`
 * (seconds): the default configuration's interval (5 s) × the duplicate
 * filter's default `max_silent_intervals` (12); a unit test holds the two
 * defaults to it.
 */
export const DEFAULT_KEEPALIVE_SECONDS = 60;

/** Interval assumed for samples that do not carry `interval` (seconds). */
export const DEFAULT_INTERVAL_SECONDS = 5;

/**
 * Slack on top of keep-alive + one interval before a value is stale
 * (seconds): batching, publishing and consuming take time.
 */
export const STALE_GRACE_SECONDS = 2;

/** One metric (or raw counter) of one agent. */
export interface MetricState {
  /** The value last reported. */
  value: number;
  /** Timestamp of the sample that last carried it (Unix seconds, agent clock). */
  reported_at: number;
  /** From this time on (Unix seconds) the value is stale unless reported again. */
  stale_at: number;
  /** True when the value is no longer current (see the module's invariant). */
  stale: boolean;
}

/** One agent as {@linkcode AgentStateTable} knows it at a given time. */
export interface AgentSnapshot {
  agent_id: string;
  hostname: string;
  /**
   * From heartbeats: true while present, false once expired or deleted;
   * null when this consumer has no heartbeat information.
   */
  up: boolean | null;
  /** Connected to this consumer (a broker), or null when it does not know. */
  connected: boolean | null;
  /** Timestamp of the newest sample (Unix seconds), or null before the first. */
  last_sample: number | null;
  /** When the newest sample was ingested here (Unix seconds, this clock), or null. */
  received_at: number | null;
  /** Samples ingested. */
  samples: number;
  /** The agent's collection interval (seconds) as its newest sample said, or the default. */
  interval: number;
  /** The agent's keep-alive window (seconds) as its newest sample said, or the default. */
  keepalive: number;
  /** Metrics by name, stale ones included (marked). */
  metrics: Record<string, MetricState>;
  /**
   * Raw cumulative counters by metric name (e.g. `"disk read"`: bytes read
   * since boot), stale ones included (marked).
   */
  counters: Record<string, MetricState>;
  /** True when no metric is current (or there is none). */
  stale: boolean;
}

interface Reported {
  value: number;
  reportedAt: number;
}

interface Entry {
  agentId: string;
  hostname: string;
  up: boolean | null;
  /** When the agent was last seen going down (Unix seconds); values reported before are stale. */
  downAt: number | null;
  connected: boolean | null;
  lastSample: number | null;
  receivedAt: number | null;
  samples: number;
  interval: number | undefined;
  keepalive: number | undefined;
  metrics: Map<string, Reported>;
  counters: Map<string, Reported>;
}

function positive(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : undefined;
}

function nowSeconds(): number {
  return Date.now() / 1000;
}

/** Stores each finite value reported at `at` unless a newer one is known (updated in place: this runs per sample). */
function applyValues(into: Map<string, Reported>, values: Record<string, number>, at: number) {
  for (const name in values) {
    if (!Object.hasOwn(values, name)) continue;
    const value = values[name];
    if (typeof value !== "number" || !Number.isFinite(value)) continue;
    const known = into.get(name);
    if (!known) into.set(name, { value, reportedAt: at });
    else if (at >= known.reportedAt) {
      known.value = value;
      known.reportedAt = at;
    }
  }
}

/** The state of every agent heard of. */
export class AgentStateTable {
  #agents = new Map<string, Entry>();

  #entry(agentId: string, hostname?: string): Entry {
    let entry = this.#agents.get(agentId);
    if (!entry) {
      entry = {
        agentId,
        hostname: hostname || agentId,
        up: null,
        downAt: null,
        connected: null,
        lastSample: null,
        receivedAt: null,
        samples: 0,
        interval: undefined,
        keepalive: undefined,
        metrics: new Map(),
        counters: new Map(),
      };
      this.#agents.set(agentId, entry);
    } else if (hostname) entry.hostname = hostname;
    return entry;
  }

  /**
   * Applies one sample. Values older than what is known (a re-delivered or
   * late sample) do not replace newer ones.
   * @param now when it arrived (Unix seconds); a sample timestamp after it counts as `now`
   */
  ingest(message: DataMessage, now: number = nowSeconds()): void {
    const entry = this.#entry(message.agent_id, message.hostname);
    const at = Math.min(message.timestamp, now);
    entry.samples++;
    entry.receivedAt = now;
    if (entry.lastSample === null || at >= entry.lastSample) {
      entry.lastSample = at;
      entry.interval = positive(message.interval) ?? entry.interval;
      entry.keepalive = positive(message.keepalive) ?? entry.keepalive;
    }
    if (message.metrics) applyValues(entry.metrics, message.metrics, at);
    if (message.counters) applyValues(entry.counters, message.counters, at);
  }

  /**
   * Applies what heartbeats say: `alive` false (expired or deleted) makes
   * every value reported until `now` stale; true only marks the agent up
   * (values come back with samples).
   */
  heartbeat(agentId: string, alive: boolean, now: number = nowSeconds(), hostname?: string): void {
    const entry = this.#entry(agentId, hostname);
    if (!alive && entry.up !== false) entry.downAt = now;
    entry.up = alive;
  }

  /** Applies a connection change (a broker's own sessions). Values stay as they are. */
  connection(agentId: string, connected: boolean, hostname?: string): void {
    this.#entry(agentId, hostname).connected = connected;
  }

  /** Forgets an agent entirely. */
  forget(agentId: string): boolean {
    return this.#agents.delete(agentId);
  }

  /** Agent ids known, sorted. */
  ids(): string[] {
    return [...this.#agents.keys()].sort();
  }

  /** Number of agents known. */
  get size(): number {
    return this.#agents.size;
  }

  /** One agent at time `now`, or undefined when never heard of. */
  get(agentId: string, now: number = nowSeconds()): AgentSnapshot | undefined {
    const entry = this.#agents.get(agentId);
    return entry ? this.#snapshot(entry, now) : undefined;
  }

  /** Every agent at time `now`, sorted by id. */
  list(now: number = nowSeconds()): AgentSnapshot[] {
    return this.ids().map((id) => this.#snapshot(this.#agents.get(id)!, now));
  }

  /** The current (not stale) metric values of an agent at `now`. */
  values(agentId: string, now: number = nowSeconds()): Record<string, number> {
    const snapshot = this.get(agentId, now);
    const out: Record<string, number> = {};
    for (const [name, metric] of Object.entries(snapshot?.metrics ?? {})) {
      if (!metric.stale) out[name] = metric.value;
    }
    return out;
  }

  #snapshot(entry: Entry, now: number): AgentSnapshot {
    const interval = entry.interval ?? DEFAULT_INTERVAL_SECONDS;
    const keepalive = entry.keepalive ?? DEFAULT_KEEPALIVE_SECONDS;
    const window = keepalive + interval + STALE_GRACE_SECONDS;
    let fresh = 0;
    const view = (from: Map<string, Reported>) => {
      const out: Record<string, MetricState> = {};
      for (const name of [...from.keys()].sort()) {
        const { value, reportedAt } = from.get(name)!;
        const staleAt = entry.downAt !== null && reportedAt <= entry.downAt
          ? Math.min(reportedAt + window, entry.downAt)
          : reportedAt + window;
        const stale = now >= staleAt;
        if (!stale && from === entry.metrics) fresh++;
        out[name] = { value, reported_at: reportedAt, stale_at: staleAt, stale };
      }
      return out;
    };
    const metrics = view(entry.metrics);
    const counters = view(entry.counters);
    return {
      agent_id: entry.agentId,
      hostname: entry.hostname,
      up: entry.up,
      connected: entry.connected,
      last_sample: entry.lastSample,
      received_at: entry.receivedAt,
      samples: entry.samples,
      interval,
      keepalive,
      metrics,
      counters,
      stale: fresh === 0,
    };
  }
}
