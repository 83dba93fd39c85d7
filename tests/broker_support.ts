/**
 * Test support for the broker, analysis and console tests: bounded waits, a
 * bus wrapper that can hold or fail publishes, a topic collector, and an
 * agent-side client speaking the real gRPC protocol. Not product code.
 *
 * @module
 */
import { join } from "node:path";
import { sleep, waitUntil, within } from "../services/common/async.ts";
import type {
  Bus,
  BusMessage,
  OutgoingMessage,
  SubscribeOptions,
  Subscription,
} from "../services/bus/types.ts";
import {
  type AgentStream,
  type BrokerMessage,
  openAgentStream,
  type RpcError,
  type WireSample,
} from "../services/rpc/mod.ts";

/** Bounded waits (from services/common/async.ts); `delay` is its `sleep`. */
export { sleep as delay, waitUntil, within };

/** A fresh temporary directory. */
export function tempDir(prefix = "monitor-test-"): Promise<string> {
  return Deno.makeTempDir({ prefix });
}

/** Embedded bus settings for a database in `dir`. */
export function embeddedPath(dir: string): string {
  return join(dir, "monitor.db");
}

/**
 * Wraps a real bus: publishes can be held (until released) or made to fail,
 * to check that the broker acknowledges only what the bus accepted.
 */
export class GatedBus implements Bus {
  /** Every publish attempted, by topic. */
  readonly attempts: Array<{ topic: string; count: number }> = [];
  #inner: Bus;
  #gate: Promise<void> | undefined;
  #subscribeGate: { group: string; gate: Promise<void> } | undefined;
  #failures = 0;
  #failure = new Error("bus refused the publish (test)");

  /** @param inner the real bus */
  constructor(inner: Bus) {
    this.#inner = inner;
  }

  get backend(): string {
    return this.#inner.backend;
  }

  /** Holds every publish until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    this.#gate = new Promise((resolve) => release = resolve);
    return () => {
      this.#gate = undefined;
      release();
    };
  }

  /** Makes the next `count` publishes fail. */
  failNext(count: number, error?: Error): void {
    this.#failures = count;
    if (error) this.#failure = error;
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    this.attempts.push({ topic, count: messages.length });
    while (this.#gate) await this.#gate;
    if (this.#failures > 0) {
      this.#failures--;
      throw this.#failure;
    }
    await this.#inner.publish(topic, messages);
  }

  /** Holds subscribes to `group` until the returned function is called (a slow group join). */
  holdSubscribe(group: string): () => void {
    let release!: () => void;
    this.#subscribeGate = { group, gate: new Promise((resolve) => release = resolve) };
    return () => {
      this.#subscribeGate = undefined;
      release();
    };
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    while (this.#subscribeGate && this.#subscribeGate.group === options.group) {
      await this.#subscribeGate.gate;
    }
    return await this.#inner.subscribe(options);
  }

  ensureTopics(topics: string[]): Promise<void> {
    return this.#inner.ensureTopics(topics);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** Messages of one topic collected by a subscription. */
export interface Collector {
  readonly messages: BusMessage[];
  /** Parsed JSON values in arrival order. */
  values<T = Record<string, unknown>>(): T[];
  /** Waits until `check` holds over the parsed values. */
  waitFor<T = Record<string, unknown>>(
    check: (values: T[]) => boolean,
    ms: number,
    what: string,
  ): Promise<T[]>;
  close(): Promise<void>;
}

let groupCounter = 0;

/** Subscribes to `topic` from the beginning with a fresh group and collects every message. */
export async function collect(bus: Bus, topic: string): Promise<Collector> {
  const messages: BusMessage[] = [];
  const subscription = await bus.subscribe({
    topics: [topic],
    group: `test-collector-${Date.now()}-${groupCounter++}`,
    fromBeginning: true,
    handler(message) {
      messages.push(message);
    },
  });
  const values = <T>() => messages.map((m) => JSON.parse(m.value) as T);
  return {
    messages,
    values,
    async waitFor<T>(check: (values: T[]) => boolean, ms: number, what: string) {
      return await waitUntil(
        () => {
          const v = values<T>();
          return check(v) ? v : undefined;
        },
        ms,
        what,
      );
    },
    close: () => subscription.close(),
  };
}

/** An agent-side stream used by tests, recording what the broker sends. */
export class TestAgent {
  /** Every broker message received, in order. */
  readonly received: BrokerMessage[] = [];
  /** How the stream ended (undefined while open or when ended cleanly). */
  closeError: RpcError | undefined;
  /** True once the stream ended. */
  ended = false;
  readonly stream: AgentStream;
  #closed: Promise<RpcError | undefined>;

  /** Opens a stream to `address` (no hello yet). */
  constructor(address: string, maxMessageBytes?: number) {
    this.stream = openAgentStream({ address, connectTimeoutMs: 5000, maxMessageBytes });
    this.stream.onMessage((m) => this.received.push(m));
    this.#closed = new Promise((resolve) =>
      this.stream.onClose((error) => {
        this.ended = true;
        this.closeError = error;
        resolve(error);
      })
    );
  }

  /** Opens a stream and says hello. */
  static async connect(
    address: string,
    agentId: string,
    options: {
      token?: string;
      waitWelcome?: boolean;
      maxMessageBytes?: number;
      /** Sent as hello.instance_id (none by default, like an agent that predates it). */
      instanceId?: string;
    } = {},
  ): Promise<TestAgent> {
    const agent = new TestAgent(address, options.maxMessageBytes);
    await agent.stream.ready();
    agent.stream.send({
      hello: {
        agent_id: agentId,
        hostname: `${agentId}.host`,
        version: "test",
        token: options.token ?? "",
        ...(options.instanceId === undefined ? {} : { instance_id: options.instanceId }),
      },
    });
    if (options.waitWelcome ?? true) await agent.waitFor((m) => m.welcome !== undefined, "welcome");
    return agent;
  }

  /** Sends a batch of samples (and alerts). */
  batch(
    seq: number,
    samples: WireSample[],
    alerts: Array<
      { metric: string; value: number; threshold: number; state: string; timestamp: number }
    > = [],
  ): boolean {
    return this.stream.send({ batch: { seq, samples, alerts } });
  }

  /** Waits for a broker message matching `check`. */
  waitFor(check: (m: BrokerMessage) => boolean, what: string, ms = 10_000): Promise<BrokerMessage> {
    return waitUntil(() => this.received.find(check), ms, what);
  }

  /** Acknowledged sequence numbers so far. */
  acks(): number[] {
    return this.received.filter((m) => m.ack).map((m) => m.ack!.seq);
  }

  /** Resolves when the stream ended; the error, if any. */
  closed(ms = 10_000): Promise<RpcError | undefined> {
    return within(this.#closed, ms, "the stream to end");
  }

  /** Closes the stream from the agent's side. */
  close(): void {
    this.stream.close();
  }
}

/** Makes a test agent answer every command with `answer(command)` (or not at all for undefined). */
export function answerCommands(
  agent: TestAgent,
  answer: (command: { command_id: string; command_type: string; args: unknown }) =>
    | { status: "ok" | "error"; output: unknown }
    | undefined,
): void {
  agent.stream.onMessage((m) => {
    if (!m.command) return;
    const args = m.command.args_json ? JSON.parse(m.command.args_json) : {};
    const reply = answer({
      command_id: m.command.command_id,
      command_type: m.command.command_type,
      args,
    });
    if (!reply) return;
    agent.stream.send({
      result: {
        command_id: m.command.command_id,
        status: reply.status,
        output_json: JSON.stringify(reply.output),
        timestamp: Date.now() / 1000,
      },
    });
  });
}
