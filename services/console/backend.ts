/**
 * What the console commands need from a service. The broker console talks
 * to a {@linkcode BrokerBackend} (the broker in the same process, or its
 * admin API over HTTP); the analysis console to an {@linkcode AnalysisBackend}.
 *
 * @module
 */
import type {
  AgentInfo,
  Broker,
  BrokerStats,
  ConfigView,
  ConfigWrite,
  HealthEntry,
  SendEvent,
  SendRequest,
  SendSummary,
} from "../broker/mod.ts";
import type { ResultMessage } from "../common/messages.ts";
import type { Analysis, AnalysisSendSummary, AnalysisStats } from "../analysis/mod.ts";

/** The broker's console operations. */
export interface BrokerBackend {
  /** Connected agents. */
  agents(): Promise<AgentInfo[]>;
  /** Health from heartbeats. */
  health(): Promise<HealthEntry[]>;
  /** Statistics. */
  stats(): Promise<BrokerStats>;
  /** An agent's configuration. */
  getConfig(agentId: string): Promise<ConfigView>;
  /** Validates and writes an agent's configuration; rejects naming every problem. */
  putConfig(agentId: string, config: unknown): Promise<ConfigWrite>;
  /** Publishes a command and collects the results. */
  send(request: SendRequest, onEvent?: (event: SendEvent) => void): Promise<SendSummary>;
}

/** The analysis application's console operations. */
export interface AnalysisBackend {
  /** Statistics of the analysis application. */
  stats(): Promise<AnalysisStats>;
  /** Agent ids seen in the data (for completion and choices). */
  agentIds(): Promise<string[]>;
  /** Publishes a command and collects the results. */
  send(
    target: string,
    commandType: string,
    args: Record<string, unknown> | undefined,
    onResult: (result: ResultMessage) => void,
  ): Promise<AnalysisSendSummary>;
}

/** A {@linkcode BrokerBackend} on a broker running in this process. */
export function localBrokerBackend(broker: Broker): BrokerBackend {
  return {
    agents: () => Promise.resolve(broker.agents()),
    health: () => Promise.resolve(broker.health()),
    stats: () => Promise.resolve(broker.stats()),
    getConfig: (agentId) => broker.getConfig(agentId),
    putConfig: (agentId, config) => broker.putConfig(agentId, config),
    send: (request, onEvent) => broker.send(request, onEvent),
  };
}

/** An {@linkcode AnalysisBackend} on an analysis application running in this process. */
export function localAnalysisBackend(analysis: Analysis): AnalysisBackend {
  return {
    stats: () => Promise.resolve(analysis.stats()),
    agentIds: () => Promise.resolve(analysis.agentIds()),
    send: (target, commandType, args, onResult) =>
      analysis.send(target, commandType, args, { onResult }),
  };
}
