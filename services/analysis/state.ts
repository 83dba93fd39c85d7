/**
 * What the analysis application knows about each agent: latest values,
 * alerts currently firing, when it was last heard of. Built from the data
 * and alerts topics; the messages are checked before use.
 *
 * @module
 */
import { isPlainObject } from "../common/commands.ts";
import type { AlertMessage, DataMessage, ResultMessage } from "../common/messages.ts";
import { type AgentSnapshot, AgentStateTable } from "../common/agent_state.ts";

/** One agent in the live view. */
export interface AgentState {
  agent_id: string;
  hostname: string;
  /** Timestamp of the latest sample (Unix seconds). */
  timestamp: number;
  /** When the latest sample was received here (Unix ms). */
  received_at: number;
  /**
   * Current value of each metric: the newest, carried forward while the
   * agent's keep-alive window holds (a metric missing from a sample is
   * unchanged; see services/common/agent_state.ts).
   */
  metrics: Record<string, number>;
  /** Last value of each metric not reported within the keep-alive window (stale). */
  stale_metrics: Record<string, number>;
  /** Samples received. */
  samples: number;
  /** Alerts firing now, by metric. */
  firing: Record<string, AlertMessage>;
  /** Everything the shared state model knows (undefined before the first sample). */
  state?: AgentSnapshot;
}

/** Parses `text` as a JSON object; a string names what is wrong. */
function parseObject(text: string): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "expected a JSON object, found invalid JSON";
  }
  return isPlainObject(value) ? value : "expected a JSON object";
}

/** Parses a data message; a string names what is wrong. */
export function parseData(text: string): DataMessage | string {
  const value = parseObject(text);
  if (typeof value === "string") return value;
  if (typeof value.agent_id !== "string" || value.agent_id === "") {
    return "agent_id: expected a non-empty string";
  }
  if (typeof value.timestamp !== "number" || !Number.isFinite(value.timestamp)) {
    return "timestamp: expected Unix seconds";
  }
  if (!isPlainObject(value.metrics)) return "metrics: expected an object of numbers";
  const metrics: Record<string, number> = {};
  for (const [name, v] of Object.entries(value.metrics)) {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      return `metrics[${JSON.stringify(name)}]: expected a number`;
    }
    metrics[name] = v;
  }
  const message: DataMessage = {
    agent_id: value.agent_id,
    hostname: typeof value.hostname === "string" ? value.hostname : value.agent_id,
    timestamp: value.timestamp,
    metrics,
  };
  // Additive fields (see DataMessage): checked when present.
  if (value.counters !== undefined) {
    if (!isPlainObject(value.counters)) return "counters: expected an object of numbers";
    const counters: Record<string, number> = {};
    for (const [name, v] of Object.entries(value.counters)) {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
        return `counters[${JSON.stringify(name)}]: expected a number >= 0`;
      }
      counters[name] = v;
    }
    message.counters = counters;
  }
  for (const field of ["interval", "keepalive"] as const) {
    const v = value[field];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      return `${field}: expected a number of seconds > 0`;
    }
    message[field] = v;
  }
  return message;
}

/** Parses an alert message; a string names what is wrong. */
export function parseAlert(text: string): AlertMessage | string {
  const value = parseObject(text);
  if (typeof value === "string") return value;
  if (typeof value.agent_id !== "string" || value.agent_id === "") {
    return "agent_id: expected a non-empty string";
  }
  if (typeof value.metric !== "string") return "metric: expected a string";
  for (const field of ["value", "threshold", "timestamp"] as const) {
    if (typeof value[field] !== "number") return `${field}: expected a number`;
  }
  if (value.state !== "firing" && value.state !== "resolved") {
    return 'state: expected "firing" or "resolved"';
  }
  return value as unknown as AlertMessage;
}

/** Parses a result message; a string names what is wrong. */
export function parseResultMessage(text: string): ResultMessage | string {
  const value = parseObject(text);
  if (typeof value === "string") return value;
  if (typeof value.command_id !== "string") return "command_id: expected a string";
  if (typeof value.agent_id !== "string") return "agent_id: expected a string";
  if (value.status !== "ok" && value.status !== "error") {
    return 'status: expected "ok" or "error"';
  }
  return {
    command_id: value.command_id,
    agent_id: value.agent_id,
    status: value.status,
    output: value.output,
    timestamp: typeof value.timestamp === "number" ? value.timestamp : Date.now() / 1000,
  };
}

/** The agents known to the analysis application: their state from the shared model, plus alerts. */
export class AgentTable {
  #states = new AgentStateTable();
  #firing = new Map<string, Record<string, AlertMessage>>();
  /** When agents known only from alerts were first heard of (Unix ms). */
  #firstHeard = new Map<string, number>();

  /** Applies a data message. `now` in Unix ms. */
  applyData(message: DataMessage, now = Date.now()): AgentState {
    this.#states.ingest(message, now / 1000);
    return this.#state(message.agent_id, now)!;
  }

  /** Applies an alert transition. `now` in Unix ms. */
  applyAlert(alert: AlertMessage, now = Date.now()): AgentState {
    const firing = this.#firing.get(alert.agent_id) ?? {};
    if (alert.state === "firing") firing[alert.metric] = alert;
    else delete firing[alert.metric];
    this.#firing.set(alert.agent_id, firing);
    if (!this.#firstHeard.has(alert.agent_id)) this.#firstHeard.set(alert.agent_id, now);
    return this.#state(alert.agent_id, now)!;
  }

  #state(agentId: string, now: number): AgentState | undefined {
    const snapshot = this.#states.get(agentId, now / 1000);
    const firing = this.#firing.get(agentId);
    if (!snapshot && !firing) return undefined;
    const metrics: Record<string, number> = {};
    const stale: Record<string, number> = {};
    for (const [name, metric] of Object.entries(snapshot?.metrics ?? {})) {
      (metric.stale ? stale : metrics)[name] = metric.value;
    }
    return {
      agent_id: agentId,
      hostname: snapshot?.hostname ?? agentId,
      timestamp: snapshot?.last_sample ?? 0,
      received_at: snapshot?.received_at != null
        ? snapshot.received_at * 1000
        : this.#firstHeard.get(agentId) ?? now,
      metrics,
      stale_metrics: stale,
      samples: snapshot?.samples ?? 0,
      firing: { ...firing },
      state: snapshot,
    };
  }

  /** Every agent at `now` (Unix ms), sorted by id (copies). */
  list(now = Date.now()): AgentState[] {
    const ids = new Set([...this.#states.ids(), ...this.#firing.keys()]);
    return [...ids].sort((a, b) => a.localeCompare(b)).map((id) => this.#state(id, now)!);
  }

  /** The shared state model behind this table (for views that need every detail). */
  get states(): AgentStateTable {
    return this.#states;
  }

  /** Agents heard from within the last `seconds`. */
  activeSince(seconds: number, now = Date.now()): string[] {
    return this.list(now).filter((s) => now - s.received_at <= seconds * 1000).map((s) =>
      s.agent_id
    );
  }

  /** Number of agents. */
  get size(): number {
    return new Set([...this.#states.ids(), ...this.#firing.keys()]).size;
  }
}
