/**
 * The analysis application: consumes the data, results and alerts topics in
 * its own consumer group, keeps the live view's state and statistics, and
 * sends commands (seed format) whose results it collects.
 *
 * @module
 */
import type { Bus, BusMessage, Subscription } from "../bus/types.ts";
import { buildCommand } from "../common/commands.ts";
import { errorMessage, getLogger, type Logger } from "../common/log.ts";
import {
  type AlertMessage,
  type DataMessage,
  DEFAULT_TOPICS,
  type ResultMessage,
  type TopicNames,
} from "../common/messages.ts";
import { type AgentState, AgentTable, parseAlert, parseData, parseResultMessage } from "./state.ts";

/** Options of {@linkcode startAnalysis}. */
export interface AnalysisOptions {
  /** The bus (opened by the caller). */
  bus: Bus;
  /** Topic names. Default {@linkcode DEFAULT_TOPICS}. */
  topics?: Partial<TopicNames>;
  /** Consumer group. Default `analysis`. */
  group?: string;
  /** A new group starts from the beginning of the topics (true) or with new messages (default). */
  fromBeginning?: boolean;
  /** How long `send` waits for results (ms). Default 15000 (longer than the broker's 10 s). */
  commandTimeoutMs?: number;
  /** Agents heard from within this many seconds are expected to answer `send all`. Default 60. */
  activeWindowSeconds?: number;
  /**
   * The agents up right now (from their heartbeats in the store): `send all`
   * expects exactly these, as the broker console does with the broker's
   * connected agents. Returning undefined (the store not open yet) falls back
   * to the agents heard from within `activeWindowSeconds`.
   */
  connectedAgents?: () => string[] | undefined;
  /**
   * `send all` when no agent was heard from yet (so none is known to be
   * connected): the wait ends this long after the latest result (ms). The
   * broker sends the command to every connected agent at once, so their
   * answers arrive together. Default 1000.
   */
  settleMs?: number;
  /** Close the bus on stop. Default false. */
  closeBus?: boolean;
  /** Logger. Default `analysis`. */
  log?: Logger;
}

/** Counters of the analysis application. */
export interface AnalysisStats {
  uptime_s: number;
  agents: number;
  /** Messages consumed per topic kind. */
  consumed: { data: number; results: number; alerts: number };
  /** Messages skipped because they were not valid. */
  invalid: number;
  /** Samples per second over the last minute. */
  samples_per_s: number;
  /** Alerts firing now. */
  alerts_firing: number;
  /** Commands sent from here. */
  commands_sent: number;
  /** Delay from sample timestamp to arrival here (ms), over the last 1024 samples. */
  delivery_delay_ms: { p50: number | null; p99: number | null };
  /** Per agent: samples received and last sample time. */
  per_agent: Record<string, { samples: number; last_timestamp: number; alerts_firing: number }>;
}

/** What happened, for live views and consoles. */
export type AnalysisEvent =
  | { type: "data"; agent: AgentState; sample: DataMessage }
  | { type: "alert"; alert: AlertMessage }
  | { type: "result"; result: ResultMessage };

/** Options of {@linkcode Analysis.send}. */
export interface AnalysisSendOptions {
  /** How long to wait for results (ms). */
  timeoutMs?: number;
  /** Called with each result as it arrives. */
  onResult?(result: ResultMessage): void;
  /** The command id to use (default: a new one). */
  commandId?: string;
}

/** Outcome of {@linkcode Analysis.send}. */
export interface AnalysisSendSummary {
  command_id: string;
  target: string;
  command_type: string;
  /** Agents expected to answer: the target, or the agents active recently for `all`. */
  expected: string[];
  results: ResultMessage[];
  ok: string[];
  errors: string[];
  /** Expected agents that did not answer in time. */
  missing: string[];
  timed_out: boolean;
}

/** A running analysis application. */
export interface Analysis {
  /** Agents in the live view. */
  agents(): AgentState[];
  /** Statistics. */
  stats(): AnalysisStats;
  /** Known agent ids (for completion). */
  agentIds(): string[];
  /** Publishes a seed-format command and collects the results. */
  send(
    target: string,
    commandType: string,
    args?: Record<string, unknown>,
    options?: AnalysisSendOptions,
  ): Promise<AnalysisSendSummary>;
  /** Registers a listener; returns a function that removes it. */
  onEvent(listener: (event: AnalysisEvent) => void): () => void;
  /** Stops consuming (committing what was processed); idempotent. */
  stop(): Promise<void>;
}

/** Starts consuming; resolves once the subscription runs. */
export async function startAnalysis(options: AnalysisOptions): Promise<Analysis> {
  const log = options.log ?? getLogger("analysis");
  const topics: TopicNames = { ...DEFAULT_TOPICS, ...options.topics };
  const bus = options.bus;
  const table = new AgentTable();
  const listeners = new Set<(event: AnalysisEvent) => void>();
  const startedAt = Date.now();
  const consumed = { data: 0, results: 0, alerts: 0 };
  let invalid = 0;
  let commandsSent = 0;
  const sampleTimes: number[] = [];
  const delays: number[] = [];
  let delayNext = 0;
  let lastInvalidLog = 0;
  /** Ends the sends waiting for results (on stop). */
  const pendingSends = new Set<() => void>();

  const emit = (event: AnalysisEvent) => {
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (error) {
        log.warn(`listener failed: ${errorMessage(error)}`);
      }
    }
  };
  const skip = (message: BusMessage, why: string) => {
    invalid++;
    const now = Date.now();
    // At most one warning per second: a flood of bad messages must not flood the log.
    if (now - lastInvalidLog > 1000) {
      lastInvalidLog = now;
      log.warn(`skipped a message on ${message.topic} at offset ${message.offset}: ${why}`);
    }
  };

  const handler = (message: BusMessage) => {
    const now = Date.now();
    if (message.topic === topics.data) {
      const data = parseData(message.value);
      if (typeof data === "string") return skip(message, data);
      consumed.data++;
      sampleTimes.push(now);
      const delay = Math.max(0, now - data.timestamp * 1000);
      if (delays.length < 1024) delays.push(delay);
      else delays[delayNext] = delay;
      delayNext = (delayNext + 1) % 1024;
      emit({ type: "data", agent: table.applyData(data, now), sample: data });
    } else if (message.topic === topics.alerts) {
      const alert = parseAlert(message.value);
      if (typeof alert === "string") return skip(message, alert);
      consumed.alerts++;
      table.applyAlert(alert, now);
      log.log(
        alert.state === "firing" ? "warn" : "info",
        `alert ${alert.state}: ${alert.agent_id} ${alert.metric} ${alert.value} (threshold ${alert.threshold})`,
      );
      emit({ type: "alert", alert });
    } else if (message.topic === topics.results) {
      const result = parseResultMessage(message.value);
      if (typeof result === "string") return skip(message, result);
      consumed.results++;
      emit({ type: "result", result });
    }
  };

  const subscription: Subscription = await bus.subscribe({
    topics: [topics.data, topics.results, topics.alerts],
    group: options.group ?? "analysis",
    fromBeginning: options.fromBeginning ?? false,
    handler,
  });
  log.info(
    `consuming ${topics.data}, ${topics.results} and ${topics.alerts} as group ${
      options.group ?? "analysis"
    } (bus ${bus.backend})`,
  );

  const percentile = (values: number[], q: number) => {
    if (values.length === 0) return null;
    const sorted = [...values].sort((a, b) => a - b);
    return Math.round(sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]);
  };

  const stats = (): AnalysisStats => {
    const now = Date.now();
    while (sampleTimes.length > 0 && sampleTimes[0] < now - 60_000) sampleTimes.shift();
    const span = Math.max(1, Math.min(60, (now - startedAt) / 1000));
    const agents = table.list();
    const perAgent: AnalysisStats["per_agent"] = {};
    for (const a of agents) {
      perAgent[a.agent_id] = {
        samples: a.samples,
        last_timestamp: a.timestamp,
        alerts_firing: Object.keys(a.firing).length,
      };
    }
    return {
      uptime_s: Math.round((now - startedAt) / 100) / 10,
      agents: agents.length,
      consumed: { ...consumed },
      invalid,
      samples_per_s: Math.round((sampleTimes.length / span) * 100) / 100,
      alerts_firing: agents.reduce((n, a) => n + Object.keys(a.firing).length, 0),
      commands_sent: commandsSent,
      delivery_delay_ms: { p50: percentile(delays, 0.5), p99: percentile(delays, 0.99) },
      per_agent: perAgent,
    };
  };

  const send = async (
    target: string,
    commandType: string,
    args?: Record<string, unknown>,
    sendOptions: AnalysisSendOptions = {},
  ): Promise<AnalysisSendSummary> => {
    const command = buildCommand(target, commandType, args, sendOptions.commandId);
    const timeoutMs = sendOptions.timeoutMs ?? options.commandTimeoutMs ?? 15_000;
    const expected = target === "all"
      ? options.connectedAgents?.() ?? table.activeSince(options.activeWindowSeconds ?? 60)
      : [target];
    const summary: AnalysisSendSummary = {
      command_id: command.command_id,
      target,
      command_type: commandType,
      expected,
      results: [],
      ok: [],
      errors: [],
      missing: [],
      timed_out: false,
    };
    let finish!: () => void;
    const done = new Promise<void>((resolve) => finish = resolve);
    const answered = new Set<string>();
    const listener = (event: AnalysisEvent) => {
      if (event.type !== "result" || event.result.command_id !== command.command_id) return;
      const result = event.result;
      if (answered.has(result.agent_id)) return;
      answered.add(result.agent_id);
      summary.results.push(result);
      (result.status === "ok" ? summary.ok : summary.errors).push(result.agent_id);
      try {
        sendOptions.onResult?.(result);
      } catch (error) {
        log.debug(`onResult failed: ${errorMessage(error)}`);
      }
      // The broker answers "all" with agent_id "all" when no agent is connected.
      if (result.agent_id === target || (target === "all" && result.agent_id === "all")) finish();
      else if (expected.length > 0 && expected.every((id) => answered.has(id))) finish();
      else if (target === "all" && expected.length === 0) {
        // No agent known yet: the answers of every connected agent arrive together.
        clearTimeout(settle);
        settle = setTimeout(finish, options.settleMs ?? 1000);
      }
    };
    let settle: ReturnType<typeof setTimeout> | undefined;
    listeners.add(listener);
    const giveUp = () => {
      summary.timed_out = true;
      finish();
    };
    pendingSends.add(giveUp);
    const timer = setTimeout(giveUp, timeoutMs);
    try {
      await bus.publish(topics.commands, [{ key: target, value: JSON.stringify(command) }]);
      commandsSent++;
      log.info(`sent command ${command.command_id} (${commandType}) to ${target}`);
      await done;
    } finally {
      clearTimeout(timer);
      pendingSends.delete(giveUp);
      clearTimeout(settle);
      listeners.delete(listener);
    }
    summary.missing = expected.filter((id) => !answered.has(id));
    return summary;
  };

  let stopped: Promise<void> | undefined;
  return {
    agents: () => table.list(),
    stats,
    agentIds: () => table.list().map((a) => a.agent_id),
    send,
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    stop() {
      stopped ??= (async () => {
        for (const giveUp of [...pendingSends]) giveUp();
        listeners.clear();
        await subscription.close().catch((error) =>
          log.warn(`closing the subscription: ${errorMessage(error)}`)
        );
        if (options.closeBus) {
          await bus.close().catch((error) => log.warn(`closing the bus: ${errorMessage(error)}`));
        }
        log.info("stopped");
      })();
      return stopped;
    },
  };
}
