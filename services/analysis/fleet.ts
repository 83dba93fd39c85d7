/**
 * The dashboard's view of the fleet: one row per agent, built from the
 * samples and alerts the analysis application consumes and from the agents'
 * heartbeats in the store. No I/O: callers feed it and read it.
 *
 * Invariants:
 * - a metric missing from a sample is unchanged (the duplicate filter): its
 *   last value is carried forward, and marked stale once it is older than
 *   `staleAfterS` or the agent is dead;
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
import type { AlertMessage, DataMessage } from "../common/messages.ts";

/** A metric's current value. */
export interface MetricNow {
  value: number;
  /** Sample time of the value (Unix seconds). */
  t: number;
  /** True when the value is older than the stale window or the agent is dead. */
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
  /** A carried-forward value older than this is stale (seconds). Default 90. */
  staleAfterS?: number;
  /** Length of the sparklines (seconds). Default 300. */
  sparkSeconds?: number;
}

interface Entry {
  agent_id: string;
  hostname: string;
  health: HealthInput | undefined;
  metrics: Map<string, { value: number; t: number }>;
  spark: Map<string, Sparkline>;
  firing: Map<string, AlertMessage>;
  samples: number;
  lastSample: number | null;
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
    const state: PluginState = { name: p.name, state: typeof p.state === "string" ? p.state : "?" };
    const reason = p.reason ?? p.error ?? p.last_error;
    if (typeof reason === "string") state.reason = reason;
    out.push(state);
  }
  return out;
}

/** The fleet as the dashboard shows it. */
export class FleetState {
  #agents = new Map<string, Entry>();
  #staleAfterS: number;
  #sparkSeconds: number;

  constructor(options: FleetOptions = {}) {
    this.#staleAfterS = options.staleAfterS ?? 90;
    this.#sparkSeconds = options.sparkSeconds ?? 300;
  }

  #entry(agentId: string, hostname = agentId): Entry {
    let entry = this.#agents.get(agentId);
    if (!entry) {
      entry = {
        agent_id: agentId,
        hostname,
        health: undefined,
        metrics: new Map(),
        spark: new Map(),
        firing: new Map(),
        samples: 0,
        lastSample: null,
      };
      this.#agents.set(agentId, entry);
    }
    return entry;
  }

  /** Applies a sample; values of metrics it lacks are carried forward. */
  applySample(sample: DataMessage, nowMs = Date.now()): void {
    const entry = this.#entry(sample.agent_id, sample.hostname);
    entry.hostname = sample.hostname || entry.hostname;
    entry.samples++;
    entry.lastSample = Math.max(entry.lastSample ?? 0, sample.timestamp);
    const horizon = nowMs / 1000 - this.#sparkSeconds;
    for (const [name, value] of Object.entries(sample.metrics)) {
      const current = entry.metrics.get(name);
      if (!current || sample.timestamp >= current.t) {
        entry.metrics.set(name, { value, t: sample.timestamp });
      }
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
  applyHealth(agentId: string, health: HealthInput): void {
    const entry = this.#entry(agentId, health.hostname ?? agentId);
    if (health.hostname) entry.hostname = health.hostname;
    entry.health = health;
  }

  /** Seeds a sparkline from history (e.g. after a restart). */
  seedSpark(agentId: string, metric: string, points: Sparkline): void {
    const entry = this.#entry(agentId);
    if (!entry.spark.has(metric)) entry.spark.set(metric, { t: [...points.t], v: [...points.v] });
    if (!entry.metrics.has(metric) && points.t.length > 0) {
      const i = points.t.length - 1;
      entry.metrics.set(metric, { value: points.v[i], t: points.t[i] });
      entry.lastSample = Math.max(entry.lastSample ?? 0, points.t[i]);
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
    const now = nowMs / 1000;
    const metrics: Record<string, MetricNow> = {};
    for (const [name, m] of entry.metrics) {
      metrics[name] = {
        value: m.value,
        t: m.t,
        stale: health === "dead" || now - m.t > this.#staleAfterS,
      };
    }
    const reasons = strings(details.reasons);
    const seen = [entry.health?.last_seen ?? null, entry.lastSample].filter((v): v is number =>
      v !== null
    );
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
      firing: [...entry.firing.values()],
      samples: entry.samples,
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
