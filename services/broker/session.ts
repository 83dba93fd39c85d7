/**
 * One agent's stream as the broker handles it: Hello (validated, optional
 * token), batches published to the bus and acknowledged only afterwards (in
 * order, coalescing queued batches into one publish), command results handed
 * to the router. Any malformed message ends this stream with
 * INVALID_ARGUMENT naming the field; other streams are not affected.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import type { Bus, OutgoingMessage } from "../bus/types.ts";
import { errorMessage, type Logger } from "../common/log.ts";
import type { AlertMessage, DataMessage, TopicNames } from "../common/messages.ts";
import type { AgentMessage, Batch, ServerStream } from "../rpc/server_mod.ts";
import { RpcStatus } from "../rpc/status.ts";
import type { Registry } from "./registry.ts";
import type { ScopeStats } from "./stats.ts";
import {
  checkBatch,
  checkHello,
  type MessageLimits,
  type ParsedResult,
  parseResult,
} from "./validate.ts";

/** What a session needs from the broker. */
export interface SessionContext {
  bus: Bus;
  topics: TopicNames;
  limits: MessageLimits;
  /**
   * Shared secret agents must present, when set: in the stream's metadata
   * (`authorization: Bearer <token>`, checked when the stream opens) or, from
   * agents that send none there, in Hello.
   */
  token?: string;
  brokerVersion: string;
  registry: Registry<AgentSession>;
  log: Logger;
  /** Total statistics. */
  total: ScopeStats;
  /** Statistics of one agent (created on first use). */
  agentStats(agentId: string): ScopeStats;
  /** Called after samples of an agent were published (latest values, sink). */
  onPublished(agentId: string, messages: DataMessage[]): void;
  /** Called for each valid command result. */
  onResult(agentId: string, result: ParsedResult): void;
  /** Called when a session registered (hello accepted) or ended. */
  onConnection?(session: AgentSession, connected: boolean): void;
}

/** Most batches coalesced into one publish. */
const MAX_COALESCED_BATCHES = 64;

const encoder = new TextEncoder();

function sameSecret(a: string, b: string): boolean {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  if (x.length !== y.length) return false;
  return timingSafeEqual(x, y);
}

/** Whether `record` has an own key (without listing them). */
function hasKeys(record: Record<string, number>): boolean {
  for (const key in record) if (Object.hasOwn(record, key)) return true;
  return false;
}

/** Per agent id, the last instance refused as a second process (its refusals are logged once). */
const refusedInstances = new Map<string, string>();

/** A connected agent's session. */
export class AgentSession {
  /** Agent id (empty until Hello). */
  agentId = "";
  /** Hostname from Hello. */
  hostname = "";
  /** Agent version from Hello. */
  version = "";
  /** The agent process's instance id from Hello ("" from agents that do not send one). */
  instanceId = "";
  /** When the stream opened (Unix ms). */
  readonly connectedAt: number = Date.now();
  /** When the last batch was acknowledged (Unix ms). */
  lastBatchAt: number | undefined;
  /** Highest acknowledged sequence number on this connection. */
  lastAckedSeq = -1;
  /** Batches acknowledged on this connection. */
  batches = 0;

  #stream: ServerStream;
  #ctx: SessionContext;
  #queue: Batch[] = [];
  #lastQueuedSeq = -1;
  #pumping: Promise<void> | undefined;
  #ended = false;
  #registered = false;

  /** @param stream the gRPC stream @param ctx the broker */
  constructor(stream: ServerStream, ctx: SessionContext) {
    this.#stream = stream;
    this.#ctx = ctx;
    stream.onMessage((message) => this.#receive(message));
    stream.onInvalid((details) => this.#invalid(details));
    stream.onClose((error) => this.#closed(error));
    if (
      ctx.token !== undefined && stream.token !== undefined && !sameSecret(stream.token, ctx.token)
    ) {
      // Refused at the stream's start, before any message is looked at.
      ctx.log.warn(`refused a stream from ${stream.peer}: wrong token (authorization metadata)`);
      ctx.total.count("errors");
      this.#ended = true;
      stream.fail(RpcStatus.UNAUTHENTICATED, "authorization: the agent token is not valid");
    }
  }

  /** Peer address. */
  get peer(): string {
    return this.#stream.peer;
  }

  /** True once the stream ended. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Sends a broker message; false when the stream has ended. */
  send(message: Parameters<ServerStream["send"]>[0]): boolean {
    if (this.#ended) return false;
    return this.#stream.send(message);
  }

  /** Sends Close{reason} and ends the stream. */
  close(reason: string): void {
    if (this.#ended) return;
    this.#ctx.log.info(`closing stream of agent ${this.agentId || "?"} (${this.peer}): ${reason}`);
    this.#stream.send({ close: { reason } });
    this.#queue = [];
    this.#ended = true;
    this.#stream.end();
    this.#unregister();
  }

  /** Ends the stream with an error status the agent sees. */
  fail(code: number, details: string): void {
    if (this.#ended) return;
    this.#queue = [];
    this.#ended = true;
    this.#stream.fail(code, details);
    this.#unregister();
  }

  /** Resolves when queued batches are published and acknowledged (or dropped). */
  async drain(): Promise<void> {
    while (this.#pumping) await this.#pumping;
  }

  #invalid(details: string) {
    const who = this.agentId ? `agent ${this.agentId}` : "unidentified agent";
    this.#ctx.log.warn(`refused a message from ${who} (${this.peer}): ${details}`);
    this.#ctx.total.count("invalid_messages");
    if (this.agentId) this.#ctx.agentStats(this.agentId).count("invalid_messages");
    this.fail(RpcStatus.INVALID_ARGUMENT, details);
  }

  #receive(message: AgentMessage) {
    if (this.#ended) return;
    const set = (message.hello != null ? 1 : 0) + (message.batch != null ? 1 : 0) +
      (message.result != null ? 1 : 0);
    if (set !== 1) {
      const kinds = (["hello", "batch", "result"] as const).filter((k) => message[k] != null);
      this.#invalid(
        `message: expected exactly one of hello, batch or result, found ${
          kinds.length === 0 ? "none" : kinds.join(" and ")
        }`,
      );
      return;
    }
    if (!this.#registered) {
      if (!message.hello) {
        this.#invalid(
          `message: expected hello as the first message, found ${
            message.batch ? "batch" : "result"
          }`,
        );
        return;
      }
      this.#hello(message.hello);
      return;
    }
    if (message.hello) {
      this.#invalid("hello: expected only once per stream, found a second hello");
    } else if (message.batch) {
      this.#batch(message.batch);
    } else if (message.result) {
      const parsed = parseResult(message.result);
      if (typeof parsed === "string") this.#invalid(parsed);
      else this.#ctx.onResult(this.agentId, parsed);
    }
  }

  #hello(hello: NonNullable<AgentMessage["hello"]>) {
    const problem = checkHello(hello);
    if (problem) {
      this.#invalid(problem);
      return;
    }
    if (
      this.#ctx.token !== undefined && this.#stream.token === undefined &&
      !sameSecret(hello.token ?? "", this.#ctx.token)
    ) {
      this.#ctx.log.warn(
        `refused agent ${hello.agent_id} from ${this.peer}: ${
          hello.token ? "wrong token" : "no token"
        }`,
      );
      this.#ctx.total.count("errors");
      this.#ended = true;
      this.#stream.fail(
        RpcStatus.UNAUTHENTICATED,
        `hello.token: ${hello.token ? "the token is not valid" : "a token is required"}`,
      );
      return;
    }
    const instance = hello.instance_id ?? "";
    const current = this.#ctx.registry.get(hello.agent_id);
    if (
      current && current !== this && instance && current.instanceId &&
      current.instanceId !== instance
    ) {
      this.#refuseSecondInstance(hello, instance, current);
      return;
    }
    this.agentId = hello.agent_id;
    this.hostname = hello.hostname || hello.agent_id;
    this.version = hello.version;
    this.instanceId = instance;
    this.#registered = true;
    const older = this.#ctx.registry.register(this);
    this.#ctx.log.info(
      `agent ${this.agentId} connected from ${this.peer} (host ${this.hostname}, version ${
        this.version || "?"
      })${older ? `, replacing the connection from ${older.peer}` : ""}`,
    );
    this.send({
      welcome: {
        broker_version: this.#ctx.brokerVersion,
        max_batch_samples: this.#ctx.limits.maxBatchSamples,
      },
    });
    this.#ctx.onConnection?.(this, true);
  }

  /**
   * Another process claims an agent id whose process is connected: refused
   * (ALREADY_EXISTS), the connected one is left alone, so neither flaps.
   * Logged as a warning once per claiming instance (it retries with backoff).
   */
  #refuseSecondInstance(
    hello: NonNullable<AgentMessage["hello"]>,
    instance: string,
    current: AgentSession,
  ) {
    const id = hello.agent_id;
    const since = new Date(current.connectedAt).toISOString();
    if (refusedInstances.get(id) !== instance) {
      refusedInstances.set(id, instance);
      this.#ctx.log.warn(
        `refused agent ${id} from ${this.peer} (host ${
          hello.hostname || "?"
        }, instance ${instance}): ` +
          `agent ${id} is already connected from another process (${current.peer}, host ${current.hostname}, ` +
          `instance ${current.instanceId}, since ${since}); two agents use the same id`,
      );
    }
    this.#ctx.total.count("errors");
    this.#ended = true;
    this.#stream.fail(
      RpcStatus.ALREADY_EXISTS,
      `hello.agent_id: agent ${id} is already connected from another process ` +
        `(${current.peer}, host ${current.hostname}, since ${since}); give each agent its own id ` +
        `(--id, or agent.id in monitor.yaml)`,
    );
  }

  #batch(batch: Batch) {
    const problem = checkBatch(batch, this.#ctx.limits);
    if (problem) {
      this.#invalid(problem);
      return;
    }
    if (batch.seq <= this.lastAckedSeq) {
      // Re-sent after it was acknowledged (the ack was lost): acknowledge again, publish nothing.
      this.#ctx.total.count("duplicates");
      this.#ctx.agentStats(this.agentId).count("duplicates");
      this.send({ ack: { seq: batch.seq } });
      return;
    }
    if (batch.seq <= this.#lastQueuedSeq) {
      // A re-send of a batch still being published: its ack follows.
      this.#ctx.total.count("duplicates");
      this.#ctx.agentStats(this.agentId).count("duplicates");
      return;
    }
    this.#lastQueuedSeq = batch.seq;
    this.#queue.push(batch);
    if (!this.#pumping) {
      this.#pumping = this.#pump().finally(() => {
        this.#pumping = undefined;
      });
    }
  }

  async #pump() {
    while (this.#queue.length > 0 && !this.#ended) {
      const batches = this.#queue.splice(0, MAX_COALESCED_BATCHES);
      await this.#publish(batches);
    }
  }

  async #publish(batches: Batch[]) {
    const { agentId, hostname } = this;
    const data: DataMessage[] = [];
    const alerts: AlertMessage[] = [];
    for (const batch of batches) {
      for (const sample of batch.samples ?? []) {
        // The decoded maps are this message's own (fresh per decode): used as they are.
        const message: DataMessage = {
          agent_id: agentId,
          hostname,
          timestamp: sample.timestamp,
          metrics: sample.metrics ?? {},
        };
        // Additive fields: only when the agent said them (unset reads as empty / 0).
        if (sample.counters && hasKeys(sample.counters)) message.counters = sample.counters;
        if (sample.interval) message.interval = sample.interval;
        if (sample.keepalive) message.keepalive = sample.keepalive;
        data.push(message);
      }
      for (const alert of batch.alerts ?? []) {
        alerts.push({
          agent_id: agentId,
          metric: alert.metric,
          value: alert.value,
          threshold: alert.threshold,
          state: alert.state as "firing" | "resolved",
          timestamp: alert.timestamp,
        });
      }
    }
    let bytes = 0;
    const dataOut: OutgoingMessage[] = [];
    for (const m of data) {
      const value = JSON.stringify(m);
      bytes += value.length;
      dataOut.push({ key: agentId, value });
    }
    const alertsOut: OutgoingMessage[] = [];
    for (const m of alerts) {
      const value = JSON.stringify(m);
      bytes += value.length;
      alertsOut.push({ key: agentId, value });
    }
    const started = performance.now();
    try {
      if (dataOut.length > 0) await this.#ctx.bus.publish(this.#ctx.topics.data, dataOut);
      if (alertsOut.length > 0) await this.#ctx.bus.publish(this.#ctx.topics.alerts, alertsOut);
    } catch (error) {
      const seqs = batches.map((b) => b.seq).join(", ");
      this.#ctx.log.error(
        `could not publish batch ${seqs} of agent ${agentId} to the bus: ${
          errorMessage(error)
        }; not acknowledged, the agent will re-send it`,
      );
      this.#ctx.total.count("publish_failures");
      this.#ctx.agentStats(agentId).count("publish_failures");
      // End the stream so that the agent reconnects and re-sends what was not acknowledged.
      this.fail(
        RpcStatus.UNAVAILABLE,
        `the broker could not publish batch ${batches[0].seq} to the bus (${
          errorMessage(error)
        }); re-send it after reconnecting`,
      );
      return;
    }
    const elapsed = performance.now() - started;
    this.#ctx.total.recordPublish(batches.length, data.length, alerts.length, bytes, elapsed);
    this.#ctx.agentStats(agentId).recordPublish(
      batches.length,
      data.length,
      alerts.length,
      bytes,
      elapsed,
    );
    this.lastBatchAt = Date.now();
    this.batches += batches.length;
    if (data.length > 0) this.#ctx.onPublished(agentId, data);
    for (const batch of batches) {
      this.lastAckedSeq = Math.max(this.lastAckedSeq, batch.seq);
      this.send({ ack: { seq: batch.seq } });
    }
  }

  #unregister() {
    if (!this.#registered) return;
    if (this.#ctx.registry.unregister(this)) this.#ctx.onConnection?.(this, false);
  }

  #closed(error?: Error) {
    const wasEnded = this.#ended;
    this.#ended = true;
    this.#queue = [];
    if (this.#registered && !wasEnded) {
      this.#ctx.log.info(
        `agent ${this.agentId} disconnected (${this.peer})${
          error ? `: ${errorMessage(error)}` : ""
        }`,
      );
    }
    this.#unregister();
  }
}
