/**
 * The Bus port: keyed publish and consumer-group subscribe with at-least-once
 * delivery. Services use only this interface; the backends (`kafka`,
 * `embedded`) live in their own modules and are chosen by {@linkcode openBus}.
 *
 * @module
 */

/** A message to publish. */
export interface OutgoingMessage {
  /** Partitioning key: the agent id, so one agent's messages stay ordered. */
  key: string;
  /** UTF-8 payload: one JSON object for every topic the product uses. */
  value: string;
}

/** A delivered message. */
export interface BusMessage {
  /** Topic the message was published to. */
  topic: string;
  /** The key it was published with. */
  key: string;
  /** The payload, UTF-8. */
  value: string;
  /** Partition (embedded backend: always 0). */
  partition: number;
  /** Offset within the partition, as a decimal string. */
  offset: string;
  /** Time the bus accepted the message, Unix milliseconds. */
  timestamp: number;
}

/** Options of {@linkcode Bus.subscribe}. */
export interface SubscribeOptions {
  /** Topics to consume. */
  topics: string[];
  /** Consumer group: members of one group share the partitions; offsets are committed per group. */
  group: string;
  /**
   * Where a group without committed offsets starts: the beginning of the
   * topic (true) or only new messages (false, the default).
   */
  fromBeginning?: boolean;
  /**
   * Called for each message, in order per partition. The offset is committed
   * only after the returned promise resolves, so a crash before that means
   * the message is delivered again (at-least-once). A throw is retried.
   */
  handler: (message: BusMessage) => void | Promise<void>;
}

/** A running subscription. */
export interface Subscription {
  /** Stops consuming after the message in progress and commits what was processed. */
  close(): Promise<void>;
}

/** The Bus port. */
export interface Bus {
  /** `"kafka"` or `"embedded"`. */
  readonly backend: string;
  /**
   * Publishes a batch to one topic. Resolves only when the backend has
   * durably accepted every message (Kafka: acks from all in-sync replicas).
   */
  publish(topic: string, messages: OutgoingMessage[]): Promise<void>;
  /** Starts consuming; resolves once the subscription is running. */
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  /** Ensures topics exist where the backend needs it (tolerates brokers that refuse CreateTopics). */
  ensureTopics(topics: string[]): Promise<void>;
  /** Closes subscriptions (committing processed offsets) and connections. Idempotent. */
  close(): Promise<void>;
}

/** Bus connection settings, as in monitor.yaml's `bus:` section. */
export interface BusSettings {
  /** Which backend {@linkcode openBus} opens. */
  backend: "embedded" | "kafka";
  /** kafka only: `host:port` list. */
  brokers: string[];
  /** embedded only: path of the SQLite file. */
  path: string;
  /** Client id reported to Kafka (the service name). */
  clientId?: string;
  /** embedded only: retention. */
  retention?: { maxAgeSeconds: number; maxMessages: number };
  /** How long connecting may take before failing with an error naming the endpoint (ms). */
  connectTimeoutMs?: number;
  /** Consumer-group timing (both backends; defaults suit production). */
  group?: GroupTiming;
  /**
   * How long `publish` keeps retrying across broker failures before it
   * rejects (ms). Default 30000. kafka only (the embedded backend waits at
   * most the SQLite busy timeout).
   */
  publishTimeoutMs?: number;
  /**
   * kafka only: use the idempotent producer (no duplicates from retries).
   * Needs a cluster that reports a controller; the librdkafka mock cluster
   * does not, so the default is false.
   */
  idempotent?: boolean;
}

/** Consumer-group timing, see {@linkcode BusSettings.group}. */
export interface GroupTiming {
  /**
   * How long a silent member keeps its partitions (kafka: session timeout,
   * default 30000; embedded: lease of the (group, topic) row, default 10000).
   */
  sessionTimeoutMs?: number;
  /** How often a member proves it is alive (default 3000). */
  heartbeatIntervalMs?: number;
  /** kafka only: how long a rebalance waits for members to rejoin (default 60000). */
  rebalanceTimeoutMs?: number;
  /** kafka only: longest wait of an empty fetch (default 1000). */
  maxWaitMs?: number;
}

/** Error raised when a backend cannot be reached; the message names the endpoint. */
export class BusUnavailableError extends Error {
  /** What was tried, e.g. `kafka at 127.0.0.1:9092`. */
  readonly endpoint: string;

  /**
   * Creates the error.
   *
   * @param endpoint what was tried, e.g. `kafka at 127.0.0.1:9092`
   * @param message the full message, naming the endpoint
   * @param options standard error options (`cause`)
   */
  constructor(endpoint: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.endpoint = endpoint;
    this.name = "BusUnavailableError";
  }
}
