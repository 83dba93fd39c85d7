/**
 * What the analysis application knows about each agent: latest values,
 * alerts currently firing, when it was last heard of. Built from the data
 * and alerts topics; the messages are checked before use.
 *
 * @module
 */
import { isPlainObject } from "../common/commands.ts";
import type { AlertMessage, DataMessage, ResultMessage } from "../common/messages.ts";

/** One agent in the live view. */
export interface AgentState {
  agent_id: string;
  hostname: string;
  /** Timestamp of the latest sample (Unix seconds). */
  timestamp: number;
  /** When the latest sample was received here (Unix ms). */
  received_at: number;
  /** Latest value of each metric. */
  metrics: Record<string, number>;
  /** Samples received. */
  samples: number;
  /** Alerts firing now, by metric. */
  firing: Record<string, AlertMessage>;
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

/** An agent first heard of at `now` (Unix ms): no sample and no alert yet. */
function newAgentState(agentId: string, hostname: string, now: number): AgentState {
  return {
    agent_id: agentId,
    hostname,
    timestamp: 0,
    received_at: now,
    metrics: {},
    samples: 0,
    firing: {},
  };
}

/** The agents known to the analysis application. */
export class AgentTable {
  #agents = new Map<string, AgentState>();

  /** Applies a data message. */
  applyData(message: DataMessage, now = Date.now()): AgentState {
    const state = this.#agents.get(message.agent_id) ??
      newAgentState(message.agent_id, message.hostname, now);
    state.samples++;
    state.received_at = now;
    state.hostname = message.hostname || state.hostname;
    if (message.timestamp >= state.timestamp) {
      state.timestamp = message.timestamp;
      state.metrics = { ...message.metrics };
    }
    this.#agents.set(message.agent_id, state);
    return state;
  }

  /** Applies an alert transition. */
  applyAlert(alert: AlertMessage, now = Date.now()): AgentState {
    const state = this.#agents.get(alert.agent_id) ??
      newAgentState(alert.agent_id, alert.agent_id, now);
    if (alert.state === "firing") state.firing[alert.metric] = alert;
    else delete state.firing[alert.metric];
    this.#agents.set(alert.agent_id, state);
    return state;
  }

  /** Every agent, sorted by id (copies). */
  list(): AgentState[] {
    return [...this.#agents.values()]
      .sort((a, b) => a.agent_id.localeCompare(b.agent_id))
      .map((s) => ({ ...s, metrics: { ...s.metrics }, firing: { ...s.firing } }));
  }

  /** Agents heard from within the last `seconds`. */
  activeSince(seconds: number, now = Date.now()): string[] {
    return this.list().filter((s) => now - s.received_at <= seconds * 1000).map((s) => s.agent_id);
  }

  /** Number of agents. */
  get size(): number {
    return this.#agents.size;
  }
}
