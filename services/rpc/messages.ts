/**
 * TypeScript shapes of `proto/monitoring.proto` as decoded by the gRPC
 * adapter (field names as in the proto, 64-bit integers as numbers, the
 * `oneof body` as an optional field per case). No gRPC import here, so agent
 * and broker code can use these types without touching the client library.
 *
 * @module
 */

/** First message of every stream. */
export interface Hello {
  agent_id: string;
  hostname: string;
  version: string;
  token: string;
  /** Chosen at agent start; tells a reconnect from another process with the same id ("" when not sent). */
  instance_id?: string;
}

/** The broker's answer to Hello. */
export interface Welcome {
  broker_version: string;
  max_batch_samples: number;
}

/** One collection round. */
export interface WireSample {
  timestamp: number;
  metrics: Record<string, number>;
  /** Raw cumulative counters by metric name (see DataMessage.counters); empty or absent when none. */
  counters?: Record<string, number>;
  /** The agent's collection interval (seconds); 0 or absent when not said. */
  interval?: number;
  /** The agent's keep-alive window (seconds, see DataMessage.keepalive); 0 or absent when not said. */
  keepalive?: number;
}

/** A threshold alert transition. */
export interface WireAlert {
  metric: string;
  value: number;
  threshold: number;
  state: string;
  timestamp: number;
}

/** A group of samples with its sequence number. */
export interface Batch {
  seq: number;
  samples: WireSample[];
  alerts: WireAlert[];
}

/** Acknowledgement of a durably published batch. */
export interface Ack {
  seq: number;
}

/** A command for the agent. */
export interface WireCommand {
  command_id: string;
  command_type: string;
  args_json: string;
  timestamp: number;
}

/** The agent's answer to one command. */
export interface CommandResult {
  command_id: string;
  status: string;
  output_json: string;
  timestamp: number;
}

/** The broker ends the stream on purpose. */
export interface Close {
  reason: string;
}

/** Everything the agent sends: exactly one field is set. */
export interface AgentMessage {
  hello?: Hello;
  batch?: Batch;
  result?: CommandResult;
}

/** Everything the broker sends: exactly one field is set. */
export interface BrokerMessage {
  welcome?: Welcome;
  ack?: Ack;
  command?: WireCommand;
  close?: Close;
}
