/**
 * The dashboard's view of the fleet: one row per agent, built from the
 * samples and alerts the analysis application consumes and from the agents'
 * heartbeats in the store. No I/O: callers feed it and read it.
 *
 * Invariants:
 * - current values and their staleness are the shared model's
 *   ({@linkcode AgentStateTable}, services/common/agent_state.ts): a metric
 *   missing from a sample is unchanged and carried forward while the
 *   agent's keep-alive window holds, then stale; stale at once when the
 *   agent is dead;
 * - `health` comes from the heartbeat only (a key that exists means alive);
 *   an agent heard of only through samples is `unknown` until its heartbeat
 *   is seen;
 * - the sparkline of a metric holds its values of the last `sparkSeconds`.
 *
 * ```ts
 * const fleet = new FleetState();
 * fleet.applySample({ agent_id: "web-1", hostname: "h", timestamp: 1700000000, metrics: { cpu: 3 } }, 1700000000_000);
 * fleet.row("web-1")?.metrics.cpu.value; // 3
 * ```
 *
 * @module
 */
import { AgentStateTable, STALE_GRACE_SECONDS } from "../common/agent_state.ts";
import type { AlertMessage, DataMessage } from "../common/messages.ts";

/** A metric's current value. */
export interface MetricNow {
  value: number;
  /** Sample time of the value (Unix seconds). */
  t: number;
  /** From this time on (Unix seconds) the value is stale unless reported again. */
  stale_at: number;
  /** True when the value is no longer current (past its keep-alive window, or the agent died). */
  stale: boolean;
}

/** A plugin as the agent's heartbeat reports it. */
export interface PluginState {
  name: string;
  state: string;
  reason?: string;
}

/** One agent's row on the fleet page. */
export interface FleetRow {
  agent_id: string;
  hostname: string;
  health: "alive" | "dead" | "unknown";
  /** Last sign of life (Unix seconds): heartbeat or sample, whichever is later. */
  last_seen: number | null;
  /** Agent version (heartbeat). */
  version: string | null;
  /** The agent's own status (`ok`, `degraded`) and why (heartbeat). */
  status: string | null;
  reasons: string[];
  plugins: PluginState[];
  /** Where the agent's configuration came from, and its store revision (heartbeat). */
  config_source: string | null;
  config_revision: number | null;
  /** Problems of the configuration (reasons that name it). */
  config_problems: string[];
  metrics: Record<string, MetricNow>;
  /** How long a value stays current without being sent again (seconds): keep-alive + interval + grace. */
  stale_window_s: number;
  /** Alerts firing now. */
  firing: AlertMessage[];
  samples: number;
}

/** A sparkline: times (Unix seconds) and values. */
export interface Sparkline {
  t: number[];
  v: number[];
}

/** Health as the heartbeat watcher reports it (see services/broker/health.ts). */
export interface HealthInput {
  status: "alive" | "dead";
  last_seen: number | null;
  hostname?: string;
  /** The heartbeat's JSON value, when known. */
  details?: Record<string, unknown>;
}

/** Options of {@linkcode FleetState}. */
export interface FleetOptions {
  /** Length of the sparklines (seconds). Default 300. */
  sparkSeconds?: number;
}

interface Entry {
  agent_id: string;
  hostname: string;
  health: HealthInput | undefined;
  spark: Map<string, Sparkline>;
  firing: Map<string, AlertMessage>;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function pluginStates(value: unknown): PluginState[] {
  if (!Array.isArray(value)) return [];
  const out: PluginState[] = [];
  for (const item of value) {
    if (!item || typeof item !== "object") continue;
    const p = item as Record<string, unknown>;
    if (typeof p.name !== "string") continue;
    const state: PluginState = {
      name: p.name,
      state: typeof p.state === "string" ? p.state : "unknown",
    };
    const reason = p.reason ?? p.error ?? p.last_error;
    if (typeof reason === "string") state.reason = reason;
    out.push(state);
  }
  return out;
}

/** The fleet as the dashboard shows it. */
export class FleetState {
  #agents = new Map<string, Entry>();
  #states = new AgentStateTable();
  #sparkSeconds: number;

  constructor(options: FleetOptions = {}) {
    this.#sparkSeconds = options.sparkSeconds ?? 300;
  }

  #entry(agentId: string, hostname = agentId): Entry {
    let entry = this.#agents.get(agentId);
    if (!entry) {
      entry = {
        agent_id: agentId,
        hostname,
        health: undefined,
        spark: new Map(),
        firing: new Map(),
      };
      this.#agents.set(agentId, entry);
    }
    return entry;
  }

  /** Applies a sample; values of metrics it lacks are carried forward. */
  applySample(sample: DataMessage, nowMs = Date.now()): void {
    const entry = this.#entry(sample.agent_id, sample.hostname);
    entry.hostname = sample.hostname || entry.hostname;
    this.#states.ingest(sample, nowMs / 1000);
    const horizon = nowMs / 1000 - this.#sparkSeconds;
    for (const [name, value] of Object.entries(sample.metrics)) {
      let spark = entry.spark.get(name);
      if (!spark) entry.spark.set(name, spark = { t: [], v: [] });
      // Samples of one agent arrive in order (keyed by agent id); an older one is skipped.
      if (spark.t.length === 0 || sample.timestamp > spark.t[spark.t.length - 1]) {
        spark.t.push(sample.timestamp);
        spark.v.push(value);
      }
      let cut = 0;
      while (cut < spark.t.length - 1 && spark.t[cut] < horizon) cut++;
      if (cut > 0) {
        spark.t.splice(0, cut);
        spark.v.splice(0, cut);
      }
    }
  }

  /** Applies an alert transition. */
  applyAlert(alert: AlertMessage): void {
    const entry = this.#entry(alert.agent_id);
    if (alert.state === "firing") entry.firing.set(alert.metric, alert);
    else entry.firing.delete(alert.metric);
  }

  /** Applies the agent's health and heartbeat. */
  applyHealth(agentId: string, health: HealthInput, nowMs = Date.now()): void {
    const entry = this.#entry(agentId, health.hostname ?? agentId);
    if (health.hostname) entry.hostname = health.hostname;
    entry.health = health;
    this.#states.heartbeat(agentId, health.status === "alive", nowMs / 1000, health.hostname);
  }

  /** Seeds a sparkline from history (e.g. after a restart). */
  seedSpark(agentId: string, metric: string, points: Sparkline): void {
    const entry = this.#entry(agentId);
    if (!entry.spark.has(metric)) entry.spark.set(metric, { t: [...points.t], v: [...points.v] });
    const known = this.#states.get(agentId)?.metrics[metric];
    const i = points.t.length - 1;
    if (!known && i >= 0) {
      this.#states.ingest({
        agent_id: agentId,
        hostname: entry.hostname,
        timestamp: points.t[i],
        metrics: { [metric]: points.v[i] },
      });
    }
  }

  /** Agent ids, sorted. */
  ids(): string[] {
    return [...this.#agents.keys()].sort();
  }

  /** One agent's row. */
  row(agentId: string, nowMs = Date.now()): FleetRow | undefined {
    const entry = this.#agents.get(agentId);
    if (!entry) return undefined;
    const details = entry.health?.details ?? {};
    const health = entry.health?.status ?? "unknown";
    const state = this.#states.get(agentId, nowMs / 1000);
    const metrics: Record<string, MetricNow> = {};
    for (const [name, m] of Object.entries(state?.metrics ?? {})) {
      metrics[name] = { value: m.value, t: m.reported_at, stale_at: m.stale_at, stale: m.stale };
    }
    const reasons = strings(details.reasons);
    const seen = [entry.health?.last_seen ?? null, state?.last_sample ?? null].filter((
      v,
    ): v is number => v !== null);
    return {
      agent_id: entry.agent_id,
      hostname: entry.hostname,
      health,
      last_seen: seen.length ? Math.max(...seen) : null,
      version: typeof details.version === "string" ? details.version : null,
      status: typeof details.status === "string" ? details.status : null,
      reasons,
      plugins: pluginStates(details.plugins),
      config_source: typeof details.config_source === "string" ? details.config_source : null,
      config_revision: typeof details.config_revision === "number" ? details.config_revision : null,
      config_problems: reasons.filter((r) => /config/i.test(r)),
      metrics,
      stale_window_s: (state?.keepalive ?? 60) + (state?.interval ?? 5) + STALE_GRACE_SECONDS,
      firing: [...entry.firing.values()],
      samples: state?.samples ?? 0,
    };
  }

  /** Every row, sorted by agent id. */
  rows(nowMs = Date.now()): FleetRow[] {
    return this.ids().map((id) => this.row(id, nowMs)!);
  }

  /** One agent's sparklines. */
  sparklines(agentId: string): Record<string, Sparkline> {
    const entry = this.#agents.get(agentId);
    if (!entry) return {};
    return Object.fromEntries(
      [...entry.spark].map(([name, s]) => [name, { t: [...s.t], v: [...s.v] }]),
    );
  }

  /** Number of agents. */
  get size(): number {
    return this.#agents.size;
  }
}
