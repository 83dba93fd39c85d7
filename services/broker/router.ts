/**
 * Command routing: commands from the bus (seed format) go to the target agent
 * or to every connected agent; each agent's answer is published as a result.
 * Every routed command gets exactly one result per agent: the agent's own, or
 * an error when the agent is not connected, drops off, or does not answer in
 * time. Nothing is silent.
 *
 * With several brokers ({@linkcode RouterOptions.fleet}) every broker sees
 * every command and delivers it only to the agents whose streams it holds;
 * the errors for agents no broker holds come from one broker only, the
 * fleet's leader, so that each agent still gets exactly one result.
 *
 * @module
 */
import type { BusMessage } from "../bus/types.ts";
import { parseCommandMessage } from "../common/commands.ts";
import { errorMessage, type Logger } from "../common/log.ts";
import type { CommandMessage, ResultMessage } from "../common/messages.ts";
import type { WireCommand } from "../rpc/messages.ts";
import type { ParsedResult } from "./validate.ts";

/** What the router needs to reach agents. */
export interface RouteTarget {
  readonly agentId: string;
  send(message: { command: WireCommand }): boolean;
}

/** Something the router did, for watchers such as the admin API's `send`. */
export type RouterEvent =
  | {
    type: "dispatched";
    command_id: string;
    target: string;
    /** Agents the command was sent to (empty when nobody was connected). */
    agents: string[];
  }
  | { type: "result"; result: ResultMessage }
  /** A result read back from the results topic (published by any broker of the fleet). */
  | { type: "remote-result"; result: ResultMessage }
  | { type: "rejected"; command_id: string; error: string };

/** Options of {@linkcode CommandRouter}. */
export interface RouterOptions {
  /** The connected agent by id. */
  get(agentId: string): RouteTarget | undefined;
  /** Every connected agent. */
  list(): RouteTarget[];
  /** Publishes results on the results topic (resolves when the bus accepted them). */
  publishResults(results: ResultMessage[]): Promise<void>;
  /** How long an agent has to answer (ms). */
  timeoutMs: number;
  log: Logger;
  /** Counts commands sent, results published and errors. */
  count?(counter: "commands" | "results" | "errors", agentId?: string): void;
  /** With several brokers: who answers for the agents this broker does not hold. */
  fleet?: RouterFleet;
}

/** What the router needs to know about the other brokers. */
export interface RouterFleet {
  /** True on exactly one live broker: it reports agents no broker holds. */
  leader(): boolean;
  /** True when a live broker other than this one holds the agent's stream. */
  heldElsewhere(agentId: string): Promise<boolean>;
  /** Agents known from heartbeats (alive) that no broker holds. */
  unheld(): string[];
  /** Agents held by any broker. */
  heldCount(): number;
}

/** How many command ids are remembered to skip re-delivered commands. */
const SEEN_LIMIT = 10_000;

interface Pending {
  command: CommandMessage;
  agentId: string;
  timer: ReturnType<typeof setTimeout>;
}

/** Routes commands to agents and results to the bus. */
export class CommandRouter {
  #options: RouterOptions;
  #pending = new Map<string, Pending>();
  #seen = new Set<string>();
  #listeners = new Set<(event: RouterEvent) => void>();
  #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  /** @param options how to reach agents and the bus */
  constructor(options: RouterOptions) {
    this.#options = options;
  }

  /** Registers a listener for router events; returns a function that removes it. */
  subscribe(listener: (event: RouterEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Number of (command, agent) pairs waiting for an answer. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  #emit(event: RouterEvent) {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (error) {
        this.#options.log.warn(`router listener failed: ${errorMessage(error)}`);
      }
    }
  }

  /** Bus handler of the commands topic: validates, then routes. */
  async handleBusMessage(message: BusMessage): Promise<void> {
    const parsed = parseCommandMessage(message.value);
    if (!parsed.ok) {
      this.#options.log.warn(
        `refused a command on ${message.topic} at offset ${message.offset}: ${parsed.error}`,
      );
      this.#options.count?.("errors");
      if (parsed.command_id !== undefined) {
        this.#emit({ type: "rejected", command_id: parsed.command_id, error: parsed.error });
        await this.#publish([
          this.#errorResult(
            parsed.command_id,
            parsed.target ?? (message.key || "unknown"),
            `invalid command: ${parsed.error}`,
          ),
        ]);
      }
      return;
    }
    await this.route(parsed.command);
  }

  /** Sends a command to its target(s); publishes error results for those it cannot reach. */
  async route(command: CommandMessage): Promise<void> {
    if (this.#closed) return;
    if (this.#seen.has(command.command_id)) {
      this.#options.log.debug(`command ${command.command_id} delivered again; already routed`);
      return;
    }
    this.#remember(command.command_id);
    const wire: WireCommand = {
      command_id: command.command_id,
      command_type: command.command_type,
      args_json: JSON.stringify(command.args ?? {}),
      timestamp: command.timestamp,
    };
    const targets = command.target === "all"
      ? this.#options.list()
      : [this.#options.get(command.target)].filter((t): t is RouteTarget => t !== undefined);
    const errors: ResultMessage[] = [];
    const sentTo: string[] = [];
    const fleet = this.#options.fleet;
    if (!fleet) {
      if (targets.length === 0) errors.push(this.#notConnected(command));
    } else if (fleet.leader()) {
      if (command.target !== "all") {
        if (targets.length === 0 && !await fleet.heldElsewhere(command.target)) {
          errors.push(this.#notConnected(command));
        }
      } else if (targets.length === 0 && fleet.heldCount() === 0) {
        errors.push(this.#notConnected(command));
      } else {
        for (const agentId of fleet.unheld()) {
          errors.push(this.#errorResult(
            command.command_id,
            agentId,
            `agent ${agentId} is not connected to any broker (its heartbeat is alive)`,
          ));
        }
      }
    }
    for (const target of targets) {
      const key = this.#key(command.command_id, target.agentId);
      if (this.#pending.has(key)) continue;
      if (!target.send({ command: wire })) {
        errors.push(
          this.#errorResult(
            command.command_id,
            target.agentId,
            `agent ${target.agentId} disconnected before the command could be sent`,
          ),
        );
        continue;
      }
      sentTo.push(target.agentId);
      this.#options.count?.("commands", target.agentId);
      const timer = setTimeout(() => this.#timeout(key), this.#options.timeoutMs);
      this.#pending.set(key, { command, agentId: target.agentId, timer });
    }
    this.#options.log.info(
      `command ${command.command_id} (${command.command_type}) for ${command.target} sent to ${
        sentTo.length === 0 ? "no agent" : sentTo.join(", ")
      }`,
    );
    this.#emit({
      type: "dispatched",
      command_id: command.command_id,
      target: command.target,
      agents: sentTo,
    });
    if (errors.length > 0) await this.#publish(errors);
  }

  /** A result read from the results topic (any broker's), for watchers such as `send`. */
  remoteResult(result: ResultMessage): void {
    if (this.#listeners.size > 0) this.#emit({ type: "remote-result", result });
  }

  /** An agent answered a command. */
  onResult(agentId: string, result: ParsedResult): Promise<void> {
    const key = this.#key(result.command_id, agentId);
    const pending = this.#pending.get(key);
    if (!pending) {
      this.#options.log.warn(
        `result of command ${result.command_id} from agent ${agentId} dropped: no such command is waiting for this agent (late or unknown)`,
      );
      return Promise.resolve();
    }
    clearTimeout(pending.timer);
    this.#pending.delete(key);
    return this.#track(this.#publish([{
      command_id: result.command_id,
      agent_id: agentId,
      status: result.status,
      output: result.output,
      timestamp: result.timestamp > 0 ? result.timestamp : Date.now() / 1000,
    }]));
  }

  #timeout(key: string) {
    const pending = this.#pending.get(key);
    if (!pending) return;
    this.#pending.delete(key);
    const seconds = Math.round(this.#options.timeoutMs / 100) / 10;
    const why = `agent ${pending.agentId} did not answer within ${seconds} s`;
    this.#options.log.warn(`command ${pending.command.command_id}: ${why}`);
    this.#track(
      this.#publish([this.#errorResult(pending.command.command_id, pending.agentId, why)]),
    );
  }

  #track(promise: Promise<void>): Promise<void> {
    this.#inFlight.add(promise);
    return promise.finally(() => this.#inFlight.delete(promise));
  }

  async #publish(results: ResultMessage[]) {
    try {
      await this.#options.publishResults(results);
      for (const result of results) {
        this.#options.count?.("results", result.agent_id);
        if (result.status === "error") this.#options.count?.("errors", result.agent_id);
        this.#emit({ type: "result", result });
      }
    } catch (error) {
      this.#options.count?.("errors");
      this.#options.log.error(
        `could not publish ${results.length} result(s) of command ${results[0]?.command_id}: ${
          errorMessage(error)
        }`,
      );
    }
  }

  #notConnected(command: CommandMessage): ResultMessage {
    const why = command.target === "all"
      ? "no agents are connected"
      : `agent ${command.target} is not connected`;
    this.#options.log.warn(`command ${command.command_id} (${command.command_type}): ${why}`);
    return this.#errorResult(command.command_id, command.target, why);
  }

  #errorResult(commandId: string, agentId: string, output: string): ResultMessage {
    return {
      command_id: commandId,
      agent_id: agentId,
      status: "error",
      output,
      timestamp: Date.now() / 1000,
    };
  }

  #key(commandId: string, agentId: string) {
    return `${commandId}\u0000${agentId}`;
  }

  #remember(commandId: string) {
    this.#seen.add(commandId);
    if (this.#seen.size > SEEN_LIMIT) {
      const oldest = this.#seen.values().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
  }

  /**
   * Stops routing. Commands still waiting get an error result with `reason`;
   * resolves once those and other in-flight results are published.
   */
  async close(reason: string): Promise<void> {
    this.#closed = true;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) clearTimeout(p.timer);
    if (pending.length > 0) {
      await this.#publish(
        pending.map((p) => this.#errorResult(p.command.command_id, p.agentId, reason)),
      );
    }
    await Promise.all([...this.#inFlight]);
  }
}
