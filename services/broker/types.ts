/**
 * What a running broker offers its callers (the command line, the admin API,
 * the consoles): the {@linkcode Broker} handle and the views it returns.
 * Types only; services/broker/broker.ts implements them.
 *
 * @module
 */
import type { ConfigView, ConfigWrite } from "../config/config_store.ts";
import type { ExpositionFormat } from "./prometheus.ts";
import type { RouterEvent } from "./router.ts";
import type { SendEvent, SendRequest, SendSummary } from "./send.ts";
import type { StatsSnapshot } from "./stats.ts";

/** A connected agent as listed by `list` and `GET /agents`. */
export interface AgentInfo {
  agent_id: string;
  hostname: string;
  version: string;
  peer: string;
  /** Unix seconds. */
  connected_since: number;
  /** Unix seconds of the last acknowledged batch, or null. */
  last_batch: number | null;
  /** Batches acknowledged on this connection. */
  batches: number;
  /**
   * Current values of this agent: the newest of each metric, carried forward
   * while the keep-alive window holds (stale ones left out); null before the
   * first sample, and null for agents on other brokers.
   */
  latest: Record<string, number> | null;
  /** Id of the broker holding the agent's stream. */
  broker: string;
}

/** One agent in `health` and `GET /health`. */
export interface HealthEntry {
  agent_id: string;
  /** From heartbeats: alive or dead; `unknown` for a connected agent without heartbeat. */
  status: "alive" | "dead" | "unknown";
  /** Last sign of life (heartbeat or batch), Unix seconds, or null. */
  last_seen: number | null;
  /** When the current status began (Unix seconds), or null when unknown. */
  since: number | null;
  /** Connected to a broker of the fleet right now. */
  connected: boolean;
  /** Id of the broker holding the agent's stream, or null. */
  broker: string | null;
  hostname?: string;
  /** Timestamp of the agent's newest sample (Unix seconds), or null before the first. */
  last_sample?: number | null;
  /** Metrics not reported within the agent's keep-alive window (their values are stale). */
  stale_metrics?: string[];
}

/** One broker of the fleet in `stats` and `GET /stats`. */
export interface FleetBroker {
  broker_id: string;
  address: string;
  admin?: string;
  /** Agents whose streams it holds. */
  connected: number;
  /** True for the broker answering these statistics. */
  self: boolean;
}

/** `stats` and `GET /stats`. */
export interface BrokerStats {
  uptime_s: number;
  /** This broker's id. */
  broker_id: string;
  /** Agents connected to this broker. */
  connected: number;
  /** Every live broker and the agents each holds. */
  fleet: FleetBroker[];
  /** Commands waiting for an agent's answer. */
  pending_commands: number;
  total: StatsSnapshot;
  agents: Record<string, StatsSnapshot>;
}

/** A running broker. */
export interface Broker {
  /** The gRPC address (`host:port`, real port). */
  readonly address: string;
  /** The admin API address, when enabled. */
  readonly adminAddress: string | undefined;
  /** This broker's id in the fleet. */
  readonly brokerId: string;
  /** Connected agents (the whole fleet: each with the broker holding it). */
  agents(): AgentInfo[];
  /** Health of every agent seen in heartbeats or connected. */
  health(): HealthEntry[];
  /** Statistics. */
  stats(): BrokerStats;
  /** An agent's configuration from the store. */
  getConfig(agentId: string): Promise<ConfigView>;
  /** Validates and writes an agent's configuration; throws ConfigError when invalid. */
  putConfig(agentId: string, config: unknown): Promise<ConfigWrite>;
  /** Publishes a command on the commands topic and collects the results. */
  send(request: SendRequest, onEvent?: (event: SendEvent) => void): Promise<SendSummary>;
  /** `/metrics`: the exposition in the format asked for (default the Prometheus text format). */
  metrics(format?: ExpositionFormat): Promise<{ body: string; contentType: string }>;
  /** Watches router events (commands dispatched, results published). */
  onRouterEvent(listener: (event: RouterEvent) => void): () => void;
  /** Graceful shutdown; idempotent. */
  stop(reason?: string): Promise<void>;
}

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
