/**
 * `send`: publishes a seed-format command on the commands topic and follows
 * it through the router (dispatched to which agents, each result) until
 * every dispatched agent answered or the wait times out.
 *
 * @module
 */
import type { Bus } from "../bus/types.ts";
import { buildCommand, isPlainObject } from "../common/commands.ts";
import { errorMessage, type Logger } from "../common/log.ts";
import type { ResultMessage } from "../common/messages.ts";
import type { CommandRouter } from "./router.ts";

/** A command to send through the bus (`send`, `POST /send`). */
export interface SendRequest {
  /** Agent id or `all`. */
  target: string;
  command_type: string;
  args?: Record<string, unknown>;
  /** How long to wait for results (ms). Default: the command timeout + 5 s. */
  timeout_ms?: number;
}

/** Progress of a `send`, streamed by `POST /send` as JSON lines. */
export type SendEvent =
  | { event: "published"; command_id: string; target: string; command_type: string }
  | { event: "dispatched"; command_id: string; agents: string[] }
  | { event: "result"; result: ResultMessage }
  | { event: "summary"; summary: SendSummary };

/** Outcome of a `send`. */
export interface SendSummary {
  command_id: string;
  target: string;
  command_type: string;
  /** Agents the broker sent it to; null when routing was not seen within the timeout. */
  dispatched: string[] | null;
  /** Every result received, in arrival order. */
  results: ResultMessage[];
  /** Agents that answered `ok`. */
  ok: string[];
  /** Agents with an `error` result (including not connected / no answer). */
  errors: string[];
  /** Dispatched agents without any result when the wait ended. */
  missing: string[];
  /** True when the wait ended by the timeout. */
  timed_out: boolean;
}

/** What {@linkcode sendCommand} needs. */
export interface SendDeps {
  bus: Bus;
  /** The commands topic. */
  topic: string;
  router: CommandRouter;
  /** Default wait for results (ms). */
  timeoutMs: number;
  log: Logger;
  /**
   * With several brokers: the agents expected to answer `target` anywhere in
   * the fleet (results then come from the results topic too, as the router's
   * `remote-result` events).
   */
  fleetTargets?(target: string): string[];
}

/** Publishes a command and collects its results; `onEvent` sees the progress. */
export async function sendCommand(
  deps: SendDeps,
  request: SendRequest,
  onEvent?: (event: SendEvent) => void,
): Promise<SendSummary> {
  const args = request.args;
  if (args !== undefined && !isPlainObject(args)) {
    throw new TypeError("args: expected a JSON object");
  }
  const command = buildCommand(request.target, request.command_type, args);
  const timeoutMs = request.timeout_ms ?? deps.timeoutMs;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new TypeError("timeout_ms: expected a positive number of milliseconds");
  }
  const summary: SendSummary = {
    command_id: command.command_id,
    target: command.target,
    command_type: command.command_type,
    dispatched: null,
    results: [],
    ok: [],
    errors: [],
    missing: [],
    timed_out: false,
  };
  // Events seen before the bus confirmed the publish are held back so that
  // listeners always see "published" first.
  let held: SendEvent[] | undefined = [];
  const deliver = (event: SendEvent) => {
    try {
      onEvent?.(event);
    } catch (error) {
      deps.log.debug(`send listener failed: ${errorMessage(error)}`);
    }
  };
  const emit = (event: SendEvent) => {
    if (held && event.event !== "published") held.push(event);
    else deliver(event);
  };
  let finish!: () => void;
  const done = new Promise<void>((resolve) => finish = resolve);
  const answered = new Set<string>();
  const complete = () => {
    if (summary.dispatched === null) return false;
    if (summary.dispatched.length === 0) return summary.results.length > 0;
    return summary.dispatched.every((id) => answered.has(id));
  };
  const fleet = deps.fleetTargets;
  const unsubscribe = deps.router.subscribe((event) => {
    if (event.type === "dispatched" && event.command_id === command.command_id) {
      if (fleet) return;
      summary.dispatched = event.agents;
      emit({ event: "dispatched", command_id: command.command_id, agents: event.agents });
    } else if (
      (event.type === "result" || event.type === "remote-result") &&
      event.result.command_id === command.command_id
    ) {
      // This broker's own results come back from the topic too: the first one counts.
      if (answered.has(event.result.agent_id)) return;
      summary.results.push(event.result);
      answered.add(event.result.agent_id);
      (event.result.status === "ok" ? summary.ok : summary.errors).push(event.result.agent_id);
      emit({ event: "result", result: event.result });
    } else if (event.type === "rejected" && event.command_id === command.command_id) {
      summary.dispatched = [];
    } else return;
    if (complete()) finish();
  });
  const timer = setTimeout(() => {
    summary.timed_out = true;
    finish();
  }, timeoutMs);
  try {
    await deps.bus.publish(deps.topic, [{
      key: command.target,
      value: JSON.stringify(command),
    }]);
    emit({
      event: "published",
      command_id: command.command_id,
      target: command.target,
      command_type: command.command_type,
    });
    if (fleet && summary.dispatched === null) {
      // Every broker delivers to the agents it holds: expect an answer from each of them.
      summary.dispatched = fleet(command.target);
      emit({ event: "dispatched", command_id: command.command_id, agents: summary.dispatched });
      if (complete()) finish();
    }
    for (const event of held.splice(0)) deliver(event);
    held = undefined;
    await done;
  } finally {
    clearTimeout(timer);
    unsubscribe();
  }
  summary.missing = (summary.dispatched ?? []).filter((id) => !answered.has(id));
  emit({ event: "summary", summary });
  return summary;
}
