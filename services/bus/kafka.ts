/**
 * The `kafka` Bus backend, through `npm:kafkajs` (the only module that
 * imports it, with its fix kafkajs_patch.ts).
 *
 * - Publish: one `send` per batch (kafkajs sends one Produce request per
 *   partition leader), `acks: -1` (all in-sync replicas), keyed by the
 *   message key with the Java-compatible murmur2 partitioner, retried across
 *   broker failures until `publishTimeoutMs`; it resolves only once acknowledged.
 * - Subscribe: one kafkajs consumer per subscription, `eachBatch` with manual
 *   `resolveOffset` after the handler finished, so only handled messages are
 *   committed (at-least-once). Close stops after the message in progress and
 *   commits what was resolved.
 * - A group without committed offsets and `fromBeginning: false` starts at
 *   the end offsets read when `subscribe` was called, so nothing published
 *   after `subscribe` resolved is missed while the group is still joining.
 * - ensureTopics: CreateTopics when the cluster reports a controller; brokers
 *   that have none (such as librdkafka's mock cluster) or refuse it fall back
 *   to auto-creation, verified through metadata.
 * - kafkajs's own log lines go to the `bus/kafka` logger at warn level.
 *
 * Note: kafkajs 2.2.4's request queue schedules `setTimeout(fn, throttledUntil -
 * Date.now())` with `throttledUntil = -1` after every response even when
 * nothing waits: a timer loop of about 1 ms per Kafka connection for ever
 * (tulios/kafkajs#1556), and a `TimeoutNegativeWarning` printed by Deno once
 * per process. kafkajs_patch.ts (imported here) stops the loop; loading this
 * module also drops that one warning ({@linkcode silenceKafkajsTimeoutWarning})
 * should another path of kafkajs arm such a timer; every other process
 * warning is printed as before.
 *
 * @module
 */
import {
  type Admin,
  type Consumer,
  type EachBatchPayload,
  Kafka,
  type LogEntry,
  logLevel as KafkaLogLevel,
  Partitioners,
  type Producer,
} from "kafkajs";
import "./kafkajs_patch.ts";
import process from "node:process";
import { sleep } from "../common/async.ts";
import { errorMessage, getLogger } from "../common/log.ts";
import {
  checkMessages,
  checkSubscribeOptions,
  checkTopic,
  checkTopics,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_PUBLISH_TIMEOUT_MS,
  positiveMs,
  runHandler,
} from "./common.ts";
import {
  type Bus,
  type BusMessage,
  type BusSettings,
  BusUnavailableError,
  type OutgoingMessage,
  type SubscribeOptions,
  type Subscription,
} from "./types.ts";

const log = getLogger("bus/kafka");

let warningFilterInstalled = false;

/**
 * Drops the `TimeoutNegativeWarning` that kafkajs's request queue triggers
 * (see the module notes) and passes every other warning on. Idempotent;
 * called when this module is loaded.
 */
export function silenceKafkajsTimeoutWarning(): void {
  if (warningFilterInstalled) return;
  warningFilterInstalled = true;
  const emitWarning = process.emitWarning;
  const filtered = (warning: string | Error, ...rest: unknown[]) => {
    const type = typeof rest[0] === "string"
      ? rest[0]
      : (rest[0] as { type?: unknown } | undefined)?.type;
    const name = warning instanceof Error ? warning.name : type;
    if (name === "TimeoutNegativeWarning") return;
    // deno-lint-ignore no-explicit-any
    return (emitWarning as (...args: any[]) => void).call(process, warning, ...rest);
  };
  process.emitWarning = filtered as typeof process.emitWarning;
}
silenceKafkajsTimeoutWarning();

const BROKER_PATTERN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/;

/** Validates `bus.brokers`; throws a TypeError naming the bad entry. */
export function checkBrokers(brokers: unknown): string[] {
  if (!Array.isArray(brokers) || brokers.length === 0) {
    throw new TypeError("bus.brokers: expected a non-empty list of host:port (kafka backend)");
  }
  return brokers.map((b, i) => {
    const match = typeof b === "string" ? BROKER_PATTERN.exec(b) : null;
    const port = match ? Number(match[1]) : 0;
    if (!match || port < 1 || port > 65535) {
      throw new TypeError(
        `bus.brokers[${i}]: expected host:port with a port 1-65535, got ${
          JSON.stringify(b) ?? String(b)
        }`,
      );
    }
    return b as string;
  });
}

/** Identical kafkajs lines are printed at most once per this period (ms). */
const LOG_REPEAT_MS = 10000;
const lastLogged = new Map<string, { at: number; suppressed: number }>();

/**
 * Routes kafkajs log entries into the `bus/kafka` logger at warn level
 * (rebalance chatter at debug). During an outage kafkajs logs every retry;
 * identical lines are repeated at most every {@linkcode LOG_REPEAT_MS} with a
 * count of the suppressed ones.
 */
function logCreator(): (entry: LogEntry) => void {
  return ({ namespace, log: entry }) => {
    const { message, broker, error } = entry;
    // Expected when the idempotent producer's retries are bounded by publishTimeoutMs.
    if (message.startsWith("Limiting retries for the idempotent producer")) return;
    const why = error && error !== message ? `: ${error}` : "";
    // Rebalances are routine (members join and leave); kafkajs rejoins on its own.
    const routine = /group is rebalancing|rejoin/i.test(`${message}${why}`);
    const where = broker ? ` (broker ${broker})` : "";
    const line = `${namespace}: ${message}${where}${why}`;
    const now = Date.now();
    const last = lastLogged.get(line);
    if (last && now - last.at < LOG_REPEAT_MS) {
      last.suppressed++;
      return;
    }
    if (lastLogged.size > 1000) lastLogged.clear();
    lastLogged.set(line, { at: now, suppressed: 0 });
    const repeats = last?.suppressed ? ` (repeated ${last.suppressed} more times)` : "";
    log.log(routine ? "debug" : "warn", `${line}${repeats}`);
  };
}

/** True when `error` or one of its causes is a retriable kafkajs error. */
function isRetriable(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 5; depth++) {
    if (typeof e !== "object") return false;
    const record = e as { retriable?: unknown; cause?: unknown; name?: unknown };
    if (record.retriable === true) return true;
    if (record.name === "KafkaJSConnectionError") return true;
    e = record.cause;
  }
  return false;
}

/** Rejects with `makeError()` after `ms` unless `promise` settles first; clears its timer. */
async function withTimeout<T>(promise: Promise<T>, ms: number, makeError: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(makeError()), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

interface Tuning {
  clientId: string;
  connectTimeoutMs: number;
  publishTimeoutMs: number;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  rebalanceTimeoutMs: number;
  maxWaitMs: number;
  idempotent: boolean;
}

function tuning(settings: BusSettings): Tuning {
  const group = settings.group ?? {};
  return {
    clientId: settings.clientId ?? "monitor",
    connectTimeoutMs: positiveMs(
      settings.connectTimeoutMs,
      "connectTimeoutMs",
      DEFAULT_CONNECT_TIMEOUT_MS,
    ),
    publishTimeoutMs: positiveMs(
      settings.publishTimeoutMs,
      "publishTimeoutMs",
      DEFAULT_PUBLISH_TIMEOUT_MS,
    ),
    sessionTimeoutMs: positiveMs(group.sessionTimeoutMs, "group.sessionTimeoutMs", 30000),
    heartbeatIntervalMs: positiveMs(group.heartbeatIntervalMs, "group.heartbeatIntervalMs", 3000),
    rebalanceTimeoutMs: positiveMs(group.rebalanceTimeoutMs, "group.rebalanceTimeoutMs", 60000),
    maxWaitMs: positiveMs(group.maxWaitMs, "group.maxWaitMs", 1000),
    idempotent: settings.idempotent ?? false,
  };
}

/**
 * Checks that at least one broker answers (ApiVersions + Metadata) within
 * `timeoutMs`, with a throw-away client that never retries on its own, so an
 * unreachable cluster fails in bounded time and leaves no timers behind.
 */
async function probe(brokers: string[], endpoint: string, t: Tuning): Promise<void> {
  const deadline = Date.now() + t.connectTimeoutMs;
  let lastError: unknown;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const client = new Kafka({
      clientId: t.clientId,
      brokers,
      connectionTimeout: Math.max(50, Math.min(remaining, 3000)),
      requestTimeout: Math.max(100, remaining),
      enforceRequestTimeout: true,
      retry: { retries: 0 },
      logLevel: KafkaLogLevel.NOTHING,
    });
    const admin = client.admin({ retry: { retries: 0 } });
    try {
      await admin.connect();
      await admin.disconnect();
      return;
    } catch (error) {
      lastError = error;
      await admin.disconnect().catch(() => {});
    }
    await sleep(Math.min(250, deadline - Date.now()));
  }
  throw new BusUnavailableError(
    endpoint,
    `${endpoint} is unreachable: no broker answered within ${t.connectTimeoutMs} ms (${
      errorMessage(lastError)
    })`,
    { cause: lastError },
  );
}

/**
 * Connects to Kafka. Fails with {@linkcode BusUnavailableError} naming the
 * brokers when none answers within `connectTimeoutMs` (default 5 s).
 */
export async function openKafkaBus(settings: BusSettings): Promise<Bus> {
  const brokers = checkBrokers(settings.brokers);
  const t = tuning(settings);
  const endpoint = `kafka at ${brokers.join(",")}`;
  await probe(brokers, endpoint, t);
  const kafka = new Kafka({
    clientId: t.clientId,
    brokers,
    connectionTimeout: Math.min(t.connectTimeoutMs, 3000),
    requestTimeout: 30000,
    enforceRequestTimeout: true,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 5 },
    logLevel: KafkaLogLevel.WARN,
    logCreator,
  });
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: true,
    idempotent: t.idempotent,
    ...(t.idempotent ? { maxInFlightRequests: 1 } : {}),
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 3 },
  });
  const admin = kafka.admin();
  try {
    await withTimeout(
      Promise.all([producer.connect(), admin.connect()]),
      t.connectTimeoutMs,
      () => new Error(`connecting took longer than ${t.connectTimeoutMs} ms`),
    );
  } catch (error) {
    await Promise.allSettled([producer.disconnect(), admin.disconnect()]);
    throw new BusUnavailableError(
      endpoint,
      `${endpoint}: cannot connect: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  return new KafkaBus(kafka, producer, admin, endpoint, t);
}

class KafkaBus implements Bus {
  readonly backend = "kafka";
  readonly #kafka: Kafka;
  readonly #producer: Producer;
  readonly #admin: Admin;
  readonly #endpoint: string;
  readonly #t: Tuning;
  readonly #abort = new AbortController();
  readonly #subscriptions = new Set<KafkaSubscription>();
  readonly #readyTopics = new Set<string>();
  #closing: Promise<void> | undefined;

  constructor(kafka: Kafka, producer: Producer, admin: Admin, endpoint: string, t: Tuning) {
    this.#kafka = kafka;
    this.#producer = producer;
    this.#admin = admin;
    this.#endpoint = endpoint;
    this.#t = t;
  }

  #checkOpen(what: string) {
    if (this.#closing) throw new Error(`${what}: the bus (${this.#endpoint}) is closed`);
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    this.#checkOpen("publish");
    checkTopic(topic, "publish");
    checkMessages(topic, messages);
    if (messages.length === 0) return;
    const payload = messages.map(({ key, value }) => ({ key, value }));
    const deadline = Date.now() + this.#t.publishTimeoutMs;
    for (let attempt = 1;; attempt++) {
      try {
        await this.#producer.send({ topic, acks: -1, messages: payload });
        return;
      } catch (error) {
        const what = `publish of ${messages.length} message(s) to ${topic} on ${this.#endpoint}`;
        if (this.#closing) throw new Error(`${what} aborted: the bus was closed`, { cause: error });
        if (!isRetriable(error)) {
          throw new Error(`${what} failed: ${errorMessage(error)}`, { cause: error });
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          throw new BusUnavailableError(
            this.#endpoint,
            `${what} failed after ${attempt} attempt(s) in ${this.#t.publishTimeoutMs} ms: ${
              errorMessage(error)
            }`,
            { cause: error },
          );
        }
        log.warn(`${what} failed (attempt ${attempt}), retrying: ${errorMessage(error)}`);
        await sleep(Math.min(100 * 2 ** attempt, 2000, remaining), this.#abort.signal);
      }
    }
  }

  async ensureTopics(topics: string[]): Promise<void> {
    this.#checkOpen("ensureTopics");
    checkTopics(topics, "ensureTopics");
    const missing = [...new Set(topics)].filter((topic) => !this.#readyTopics.has(topic));
    if (missing.length === 0) return;
    const deadline = Date.now() + this.#t.connectTimeoutMs;
    await this.#tryCreateTopics(missing);
    let lastProblem = "";
    for (;;) {
      try {
        const { topics: found } = await this.#admin.fetchTopicMetadata({ topics: missing });
        const problems = missing.filter((name) => {
          const topic = found.find((f) => f.name === name);
          return !topic || topic.partitions.length === 0 ||
            topic.partitions.some((p) => p.partitionErrorCode !== 0 || p.leader < 0);
        });
        if (problems.length === 0) break;
        lastProblem = `no usable partitions for ${problems.join(", ")}`;
      } catch (error) {
        lastProblem = errorMessage(error);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0 || this.#closing) {
        throw new BusUnavailableError(
          this.#endpoint,
          `topics ${
            missing.join(", ")
          } are not available on ${this.#endpoint} after ${this.#t.connectTimeoutMs} ms: ${lastProblem}`,
        );
      }
      await sleep(Math.min(200, remaining), this.#abort.signal);
    }
    for (const topic of missing) this.#readyTopics.add(topic);
  }

  /** CreateTopics when the cluster has a controller; otherwise rely on auto-creation. */
  async #tryCreateTopics(topics: string[]): Promise<void> {
    try {
      const cluster = await this.#admin.describeCluster();
      if (!cluster.brokers.some((b) => b.nodeId === cluster.controller)) {
        log.debug(
          `${this.#endpoint} reports no controller (id ${cluster.controller}): ` +
            `relying on topic auto-creation for ${topics.join(", ")}`,
        );
        return;
      }
      await this.#admin.createTopics({
        topics: topics.map((topic) => ({ topic })),
        waitForLeaders: true,
        timeout: this.#t.connectTimeoutMs,
      });
    } catch (error) {
      log.info(
        `CreateTopics for ${topics.join(", ")} refused by ${this.#endpoint} ` +
          `(${errorMessage(error)}): relying on topic auto-creation`,
      );
    }
  }

  /**
   * End offsets of the partitions where `group` has no committed offset, read
   * now: where a `fromBeginning: false` subscription starts.
   */
  async #startOffsets(group: string, topics: string[]): Promise<Map<string, string>> {
    const start = new Map<string, string>();
    const committed = await this.#admin.fetchOffsets({ groupId: group, topics });
    for (const { topic, partitions } of committed) {
      const uncommitted = partitions.filter((p) => Number(p.offset) < 0).map((p) => p.partition);
      if (uncommitted.length === 0) continue;
      for (const entry of await this.#admin.fetchTopicOffsets(topic)) {
        if (uncommitted.includes(entry.partition)) {
          start.set(`${topic}\u0000${entry.partition}`, entry.high);
        }
      }
    }
    return start;
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    this.#checkOpen("subscribe");
    checkSubscribeOptions(options);
    await this.ensureTopics(options.topics);
    const startAt = options.fromBeginning
      ? new Map<string, string>()
      : await this.#startOffsets(options.group, options.topics);
    this.#checkOpen("subscribe");
    const subscription = new KafkaSubscription(
      this.#kafka,
      options,
      startAt,
      this.#t,
      this.#endpoint,
      () => this.#subscriptions.delete(subscription),
    );
    this.#subscriptions.add(subscription);
    try {
      await subscription.start();
    } catch (error) {
      await subscription.close();
      throw error;
    }
    return subscription;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort();
      await Promise.allSettled([...this.#subscriptions].map((s) => s.close()));
      await Promise.allSettled([this.#producer.disconnect(), this.#admin.disconnect()]);
    })();
    return this.#closing;
  }
}

class KafkaSubscription implements Subscription {
  readonly #consumer: Consumer;
  readonly #options: SubscribeOptions;
  readonly #startAt: Map<string, string>;
  readonly #t: Tuning;
  readonly #endpoint: string;
  readonly #onClosed: () => void;
  readonly #abort = new AbortController();
  readonly #removeListeners: Array<() => void> = [];
  readonly #log;
  #closing: Promise<void> | undefined;

  constructor(
    kafka: Kafka,
    options: SubscribeOptions,
    startAt: Map<string, string>,
    t: Tuning,
    endpoint: string,
    onClosed: () => void,
  ) {
    this.#options = options;
    this.#startAt = startAt;
    this.#t = t;
    this.#endpoint = endpoint;
    this.#onClosed = onClosed;
    this.#log = log.child(options.group);
    this.#consumer = kafka.consumer({
      groupId: options.group,
      sessionTimeout: t.sessionTimeoutMs,
      heartbeatInterval: t.heartbeatIntervalMs,
      rebalanceTimeout: t.rebalanceTimeoutMs,
      maxWaitTimeInMs: t.maxWaitMs,
      allowAutoTopicCreation: true,
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 8 },
    });
  }

  /** Connects, joins the group (waiting at most connectTimeoutMs for the join) and starts consuming. */
  async start(): Promise<void> {
    const consumer = this.#consumer;
    let joined!: () => void;
    let crashed!: (error: Error) => void;
    const joinedOrCrashed = new Promise<void>((resolve, reject) => {
      joined = resolve;
      crashed = reject;
    });
    let firstJoin = true;
    this.#removeListeners.push(
      consumer.on(consumer.events.GROUP_JOIN, (event) => {
        if (firstJoin) {
          firstJoin = false;
          this.#applyStartOffsets(event.payload.memberAssignment);
        }
        joined();
      }),
      consumer.on(consumer.events.CRASH, (event) => {
        const error = event.payload.error;
        if (this.#closing) return;
        this.#log.warn(
          `consumer of ${this.#options.topics.join(", ")} crashed` +
            `${event.payload.restart ? " (restarting)" : ""}: ${errorMessage(error)}`,
        );
        if (!event.payload.restart) crashed(error);
      }),
    );
    const { connectTimeoutMs } = this.#t;
    await withTimeout(
      consumer.connect(),
      connectTimeoutMs,
      () =>
        new BusUnavailableError(
          this.#endpoint,
          `${this.#endpoint}: consumer for group ${this.#options.group} could not connect within ${connectTimeoutMs} ms`,
        ),
    );
    await consumer.subscribe({
      topics: this.#options.topics,
      fromBeginning: this.#options.fromBeginning ?? false,
    });
    await consumer.run({
      autoCommit: true,
      autoCommitInterval: 1000,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.#eachBatch(payload),
    });
    // A member that joins while a crashed one still holds partitions waits for
    // that member's session timeout; consumption then starts on its own.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = await Promise.race([
      joinedOrCrashed.then(() => "joined" as const),
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), connectTimeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (waited === "timeout") {
      this.#log.info(
        `still joining group ${this.#options.group} after ${connectTimeoutMs} ms; ` +
          `consumption starts once the group rebalanced`,
      );
      joinedOrCrashed.catch(() => {});
    }
  }

  #applyStartOffsets(assignment: Record<string, number[]>) {
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const offset = this.#startAt.get(`${topic}\u0000${partition}`);
        if (offset !== undefined) this.#consumer.seek({ topic, partition, offset });
      }
    }
    // Later assignments use committed offsets (or the end, as kafkajs resolves it).
    this.#startAt.clear();
  }

  async #eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale } =
      payload;
    for (const m of batch.messages) {
      if (this.#closing || !isRunning() || isStale()) break;
      const message: BusMessage = {
        topic: batch.topic,
        partition: batch.partition,
        key: m.key?.toString("utf8") ?? "",
        value: m.value?.toString("utf8") ?? "",
        offset: m.offset,
        timestamp: Number(m.timestamp),
      };
      const handled = await runHandler(
        this.#options.handler,
        message,
        this.#log,
        this.#abort.signal,
        heartbeat,
      );
      if (!handled) break;
      resolveOffset(m.offset);
      await commitOffsetsIfNecessary();
      await heartbeat();
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort();
      try {
        // Stops after the message in progress; kafkajs commits the resolved offsets, then leaves.
        await this.#consumer.disconnect();
      } catch (error) {
        this.#log.warn(`closing the consumer: ${errorMessage(error)}`);
      } finally {
        for (const remove of this.#removeListeners) remove();
        this.#onClosed();
      }
    })();
    return this.#closing;
  }
}
