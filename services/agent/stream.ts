/**
 * The agent's link to the broker: one gRPC bidirectional stream at a time
 * (`proto/monitoring.proto`).
 *
 * Hello first, then wait for Welcome; batches carry increasing sequence
 * numbers and stay in the {@linkcode BatchBuffer} until the broker
 * acknowledges them, so after a reconnect every unacknowledged batch is sent
 * again, in order. Commands are answered with exactly one CommandResult.
 *
 * With several brokers the agent keeps its own order of preference
 * ({@linkcode BrokerChoice}, rendezvous hashing of its id): it connects to
 * its first choice and, when that broker is unreachable, refuses it (e.g.
 * RESOURCE_EXHAUSTED at its stream ceiling) or ends the stream, moves to the
 * next one; the unacknowledged batches go to whichever broker welcomes it.
 * After a stream that was up ends, the first attempt waits a random delay in
 * `[0, failoverSpreadMs]` so that the agents of a lost broker do not all
 * arrive at once; further attempts use exponential backoff with jitter (cap
 * 30 s), reset after a connection that stayed healthy.
 *
 * @module
 */
import { errorMessage, type Logger } from "../common/log.ts";
import {
  type AgentStream,
  type BrokerMessage,
  type ClientTlsOptions,
  type CommandResult,
  openAgentStream,
  type RpcError,
  RpcStatus,
  statusName,
  type WireAlert,
  type WireCommand,
  type WireSample,
} from "../rpc/agent_mod.ts";
import { Backoff, type BackoffOptions } from "./backoff.ts";
import { BrokerChoice } from "./broker_choice.ts";
import type { BatchBuffer } from "./buffer.ts";

/** Options of {@linkcode BrokerLink}. */
export interface BrokerLinkOptions {
  /** Broker `host:port`, or several (the agent picks and fails over, see the module doc). */
  address: string | readonly string[];
  tls?: ClientTlsOptions;
  /** Shared secret ("" when none), sent as `authorization` metadata when the stream opens and in Hello. */
  token: string;
  agentId: string;
  hostname: string;
  version: string;
  /**
   * This agent process's instance id, sent in Hello: a reconnect with the same
   * one replaces the older stream, another process with the same agent id is
   * refused (ALREADY_EXISTS). Default: a random UUID chosen by the link.
   */
  instanceId?: string;
  /** Connect (and Welcome) timeout, ms (default 5000). */
  connectTimeoutMs?: number;
  /** gRPC keep-alive period, ms (default 10000). */
  keepaliveMs?: number;
  /** Backoff delays. */
  backoff?: BackoffOptions;
  /** A connection up this long counts as healthy and resets the backoff (ms, default 10000). */
  healthyMs?: number;
  /**
   * After a stream that was up ends, the next attempt waits a random delay
   * up to this (ms, default 2000), spreading the reconnects of a lost broker's agents.
   */
  failoverSpreadMs?: number;
  buffer: BatchBuffer;
  /** Runs a command; must resolve with its result (never reject). */
  onCommand(command: WireCommand): Promise<CommandResult>;
  /** Called when the connection state changes. */
  onStateChange?(): void;
  log: Logger;
}

/** Connection state. */
export type LinkState = "connecting" | "connected" | "disconnected" | "stopped";

/** What `status` shows about the link. */
export interface LinkStatus {
  state: LinkState;
  /** The broker connected to, or tried next. */
  address: string;
  /** Every broker, in this agent's order of preference (only with more than one). */
  brokers?: string[];
  /** Unix seconds since when connected (Welcome received). */
  connected_since?: number;
  /** Why the last connection attempt or stream failed. */
  last_error?: string;
  /** Streams opened successfully (Welcome received) since start. */
  connections: number;
  /** Failed attempts since the last successful connection. */
  attempts: number;
  /** Unix seconds of the last acknowledgement. */
  last_ack?: number;
  broker_version?: string;
  /** Samples per batch the broker accepts. */
  max_batch_samples?: number;
}

/** How many times in a row a batch may end the stream as invalid before it is dropped. */
const MAX_INVALID_STREAK = 3;

/** Keeps one stream to the broker and moves batches through it. */
export class BrokerLink {
  #options: BrokerLinkOptions;
  #log: Logger;
  #backoff: Backoff;
  #choice: BrokerChoice;
  #stream: AgentStream | undefined;
  #state: LinkState = "disconnected";
  #stopped = false;
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #sleepTimer: ReturnType<typeof setTimeout> | undefined;
  #status: LinkStatus;
  #welcomed = false;
  #welcomedAt = 0;
  #brokerMax = Infinity;
  #invalid = { seq: -1, count: 0 };
  #lastRefusal: string | undefined;
  #drainWaiters = new Set<() => void>();
  #commandsInFlight = new Set<Promise<unknown>>();
  /** Connections of ended streams still being closed (awaited by stop()). */
  #releasing = new Set<Promise<void>>();

  /** This process's instance id (sent in Hello). */
  readonly instanceId: string;

  /** @param options broker address, identity, buffer and command handler */
  constructor(options: BrokerLinkOptions) {
    this.#options = options;
    this.instanceId = options.instanceId ?? crypto.randomUUID();
    this.#log = options.log;
    this.#backoff = new Backoff(options.backoff);
    const list = typeof options.address === "string" ? [options.address] : options.address;
    this.#choice = new BrokerChoice(options.agentId, list);
    this.#status = {
      state: "disconnected",
      address: this.#choice.current,
      connections: 0,
      attempts: 0,
    };
    if (this.#choice.order.length > 1) this.#status.brokers = [...this.#choice.order];
  }

  /** The current state and counters. */
  status(): LinkStatus {
    return { ...this.#status, state: this.#state, address: this.#choice.current };
  }

  /** The broker connected to (or tried next). */
  get address(): string {
    return this.#choice.current;
  }

  /** True while a stream is open and welcomed. */
  get connected(): boolean {
    return this.#state === "connected";
  }

  /** Starts connecting (and reconnecting until stop()). */
  start(): void {
    if (this.#running) return;
    this.#running = this.#loop();
  }

  /**
   * Puts samples and alerts into the buffer and sends the batch at once when
   * connected; otherwise it waits for the next connection.
   */
  submit(samples: WireSample[], alerts: WireAlert[]): number {
    const batch = this.#options.buffer.add(samples, alerts);
    if (this.#state === "connected" && this.#stream) this.#sendPending(this.#stream);
    return batch.seq;
  }

  #setState(state: LinkState) {
    if (this.#state === state) return;
    this.#state = state;
    this.#options.onStateChange?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = () => {
        clearTimeout(this.#sleepTimer);
        this.#sleepTimer = undefined;
        this.#wake = undefined;
        resolve();
      };
      this.#sleepTimer = setTimeout(() => this.#wake?.(), ms);
    });
  }

  async #loop(): Promise<void> {
    const random = this.#options.backoff?.random ?? Math.random;
    while (!this.#stopped) {
      this.#setState("connecting");
      const address = this.#choice.current;
      const error = await this.#connectOnce(address);
      if (this.#stopped) break;
      const welcomed = this.#welcomed;
      const healthy = welcomed &&
        Date.now() - this.#welcomedAt >= (this.#options.healthyMs ?? 10_000);
      if (healthy) this.#backoff.reset();
      if (welcomed) this.#choice.succeeded();
      this.#status.last_error = error;
      this.#status.attempts++;
      this.#setState("disconnected");
      const wholeRound = this.#choice.failed();
      // A stream that was up ended: spread the reconnects of every agent of that broker.
      const delay = welcomed
        ? Math.round(random() * (this.#options.failoverSpreadMs ?? 2000))
        : wholeRound || this.#choice.order.length === 1
        ? this.#backoff.next()
        : Math.round(random() * this.#backoff.initialMs);
      const pending = this.#options.buffer.size;
      const next = this.#choice.current === address ? "" : ` broker ${this.#choice.current}`;
      const message = `broker at ${address}: ${error}; reconnecting${next} in ${
        (delay / 1000).toFixed(1)
      } s (${pending} batch${pending === 1 ? "" : "es"} waiting)`;
      if (this.#status.attempts === 1) this.#log.warn(message);
      else this.#log.debug(message);
      await this.#sleep(delay);
    }
    this.#setState("stopped");
  }

  /** One stream from open to end; resolves with why it ended. */
  async #connectOnce(address: string): Promise<string> {
    const options = this.#options;
    this.#welcomed = false;
    let stream: AgentStream;
    try {
      stream = openAgentStream({
        address,
        tls: options.tls,
        connectTimeoutMs: options.connectTimeoutMs ?? 5000,
        keepaliveMs: options.keepaliveMs,
        token: options.token || undefined,
      });
    } catch (error) {
      return `cannot open a stream: ${errorMessage(error)}`;
    }
    this.#stream = stream;
    const released = stream.released();
    this.#releasing.add(released);
    released.then(() => this.#releasing.delete(released));
    let closeReason: string | undefined;
    const ended = new Promise<RpcError | undefined>((resolve) => stream.onClose(resolve));
    stream.onMessage((message) => {
      if (this.#stream !== stream) return;
      const reason = this.#onMessage(stream, message);
      if (reason) closeReason = reason;
    });
    const ready = stream.ready();
    ready.catch(() => {});
    try {
      await Promise.race([ready, ended.then(() => {})]);
    } catch (error) {
      stream.close();
      this.#stream = undefined;
      return errorMessage(error);
    }
    if (this.#stopped) {
      stream.close();
      this.#stream = undefined;
      return "stopped";
    }
    stream.send({
      hello: {
        agent_id: options.agentId,
        hostname: options.hostname,
        version: options.version,
        token: options.token,
        instance_id: this.instanceId,
      },
    });
    const welcomeTimeout = options.connectTimeoutMs ?? 5000;
    const welcomeTimer = setTimeout(() => {
      if (!this.#welcomed && this.#stream === stream) {
        closeReason = `no Welcome within ${welcomeTimeout} ms after Hello`;
        stream.close();
      }
    }, welcomeTimeout);
    const error = await ended;
    clearTimeout(welcomeTimer);
    if (this.#stream === stream) this.#stream = undefined;
    this.#status.connected_since = undefined;
    if (error) this.#noteInvalidBatch(error);
    if (error) this.#noteRefusal(error);
    if (this.#welcomed) {
      this.#log.info(
        `stream to broker ${address} ended: ${
          closeReason ??
            (this.#stopped
              ? "the agent is stopping"
              : error
              ? describeRpcError(error)
              : "closed by the broker")
        }`,
      );
    }
    return closeReason ?? (error ? describeRpcError(error) : "the broker ended the stream");
  }

  /** Handles a broker message; returns a close reason when the broker announced one. */
  #onMessage(stream: AgentStream, message: BrokerMessage): string | undefined {
    if (message.welcome) {
      this.#welcomed = true;
      this.#welcomedAt = Date.now();
      const max = message.welcome.max_batch_samples;
      this.#brokerMax = max > 0 ? max : Infinity;
      if (Number.isFinite(this.#brokerMax)) this.#options.buffer.rechunk(this.#brokerMax);
      this.#status.connections++;
      const waited = this.#status.attempts;
      this.#status.attempts = 0;
      this.#status.connected_since = Date.now() / 1000;
      this.#status.broker_version = message.welcome.broker_version;
      this.#status.max_batch_samples = max;
      this.#status.last_error = undefined;
      const pending = this.#options.buffer.size;
      this.#log.info(
        `connected to broker ${this.#choice.current} (version ${
          message.welcome.broker_version || "?"
        })${waited > 0 ? ` after ${waited} failed attempt${waited === 1 ? "" : "s"}` : ""}${
          pending > 0 ? `; re-sending ${pending} unacknowledged batch(es)` : ""
        }`,
      );
      this.#setState("connected");
      this.#sendPending(stream);
      return undefined;
    }
    if (message.ack) {
      const seq = Number(message.ack.seq);
      if (this.#options.buffer.ack(seq)) {
        this.#status.last_ack = Date.now() / 1000;
        if (this.#invalid.seq === seq) this.#invalid = { seq: -1, count: 0 };
        if (this.#options.buffer.size === 0) {
          for (const wake of [...this.#drainWaiters]) wake();
        }
      } else this.#log.debug(`ack for batch ${seq}, which is not waiting (already acknowledged)`);
      return undefined;
    }
    if (message.command) {
      const command = message.command;
      const work = this.#options.onCommand(command).then((result) => {
        if (!stream.send({ result })) {
          this.#log.warn(
            `result of command ${command.command_id} not sent: the stream ended meanwhile`,
          );
        }
      }).catch((error) => {
        this.#log.error(`command ${command.command_id} failed: ${errorMessage(error)}`);
      });
      this.#commandsInFlight.add(work);
      work.finally(() => this.#commandsInFlight.delete(work));
      return undefined;
    }
    if (message.close) {
      const reason = `the broker closed the stream: ${message.close.reason || "no reason given"}`;
      this.#log.warn(reason);
      return reason;
    }
    return undefined;
  }

  #sendPending(stream: AgentStream) {
    const buffer = this.#options.buffer;
    for (const batch of buffer.pending()) {
      if (sentOn.get(batch) === stream) continue;
      if (!stream.send({ batch })) return;
      sentOn.set(batch, stream);
      buffer.seal(batch.seq);
    }
  }

  /** Logs, as an error and once per distinct reason, that the broker refused this agent. */
  #noteRefusal(error: RpcError) {
    const hint = error.code === RpcStatus.ALREADY_EXISTS
      ? `another agent process uses the id ${this.#options.agentId}; this one (instance ${this.instanceId}) waits, retrying with backoff`
      : error.code === RpcStatus.UNAUTHENTICATED || error.code === RpcStatus.PERMISSION_DENIED
      ? "check agent.token_file and agent.tls; retrying with backoff"
      : undefined;
    if (hint === undefined) return;
    const reason = describeRpcError(error);
    if (reason === this.#lastRefusal) return;
    this.#lastRefusal = reason;
    this.#log.error(
      `the broker at ${this.#choice.current} refused this agent: ${reason} (${hint})`,
    );
  }

  /** Drops a batch the broker keeps refusing as invalid, so it cannot block the rest forever. */
  #noteInvalidBatch(error: RpcError) {
    if (error.code !== RpcStatus.INVALID_ARGUMENT || !/^batch/.test(error.details)) return;
    const oldest = this.#options.buffer.pending()[0];
    if (!oldest) return;
    if (this.#invalid.seq === oldest.seq) this.#invalid.count++;
    else this.#invalid = { seq: oldest.seq, count: 1 };
    if (this.#invalid.count >= MAX_INVALID_STREAK) {
      this.#options.buffer.discard(oldest.seq);
      this.#log.error(
        `batch ${oldest.seq} dropped: the broker refused it ${this.#invalid.count} times (${error.details})`,
      );
      this.#invalid = { seq: -1, count: 0 };
    }
  }

  /** Waits until every buffered batch is acknowledged or `timeoutMs` passed; true when empty. */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.#options.buffer.size === 0) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake: (() => void) | undefined;
    try {
      await new Promise<void>((resolve) => {
        wake = resolve;
        this.#drainWaiters.add(resolve);
        timer = setTimeout(resolve, timeoutMs);
      });
    } finally {
      clearTimeout(timer);
      if (wake) this.#drainWaiters.delete(wake);
    }
    return this.#options.buffer.size === 0;
  }

  /** Closes the stream and stops reconnecting. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    this.#stream?.close();
    await this.#running;
    await Promise.allSettled([...this.#commandsInFlight]);
    await Promise.all([...this.#releasing]);
    this.#setState("stopped");
  }
}

/** Remembers which stream each batch object was last written to. */
const sentOn = new WeakMap<object, AgentStream>();

function describeRpcError(error: RpcError): string {
  return `${statusName(error.code)}: ${error.details}`;
}
