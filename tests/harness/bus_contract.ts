/**
 * The Bus contract suite: one set of `Deno.test` cases, registered once per
 * backend and run unchanged against each (tests/bus_embedded_test.ts,
 * tests/bus_kafka_test.ts). Test support, not product code.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { errorMessage } from "../../services/common/log.ts";
import { sleep, waitUntil, within } from "../../services/common/async.ts";
import { DenoLineProcess } from "./line_process.ts";
import {
  type Bus,
  type BusMessage,
  type BusSettings,
  BusUnavailableError,
  openBus,
  type OutgoingMessage,
  type SubscribeOptions,
  type Subscription,
} from "../../services/bus/mod.ts";

/** Broker fault injection (Kafka mock cluster). */
export interface BusFaults {
  /** Broker ids are 1..brokerCount. */
  readonly brokerCount: number;
  /** Disconnects broker `id` and refuses connections to it. */
  brokerDown(id: number): void;
  /** Lets broker `id` accept connections again. */
  brokerUp(id: number): void;
  /** Makes broker `id` the leader of every partition of `topic`. */
  leadAll(topic: string, id: number): void;
}

/** What a backend's `open` gives the suite. */
export interface BusFixture {
  /** A bus opened with {@linkcode BusFixture.settings}. */
  bus: Bus;
  /** Settings to open more clients, also from subprocesses. */
  settings: BusSettings;
  /** Opens another client of the same backend, as another process would. */
  openAnother(): Promise<Bus>;
  /** Broker fault injection, where the backend has it. */
  faults?: BusFaults;
  /** Closes every bus the fixture opened and stops its backend. */
  cleanup(): Promise<void>;
}

/** Options of {@linkcode busContract}. */
export interface BusContractOptions {
  /** Settings of a backend that cannot be reached, and the endpoint its error must name. */
  unreachable(): Promise<{ settings: BusSettings; endpoint: string; cleanup(): Promise<void> }>;
  /** Register the broker-failure test (needs {@linkcode BusFixture.faults}). */
  brokerFaults?: boolean;
  /** Permission flags for subprocesses that open the bus with the fixture's settings. */
  childPermissions(settings: BusSettings): string[];
  /** Longest wait for expected deliveries (ms). Default 60000. */
  waitMs?: number;
}

const CHILD = fileURLToPath(new URL("./bus_contract_child.ts", import.meta.url));
const DENO_JSON = fileURLToPath(new URL("../../deno.json", import.meta.url));

let counter = 0;
/** A topic or group name unique to this run. */
function unique(what: string): string {
  return `${what}-${Date.now().toString(36)}-${(counter++).toString(36)}-${
    Math.random().toString(36).slice(2, 6)
  }`;
}

/** A subscription that records what it was given. */
class Collector {
  readonly messages: BusMessage[] = [];
  #subscription: Subscription | undefined;

  static async start(
    bus: Bus,
    options: Omit<SubscribeOptions, "handler">,
    handler?: (message: BusMessage) => void | Promise<void>,
  ): Promise<Collector> {
    const collector = new Collector();
    collector.#subscription = await bus.subscribe({
      ...options,
      handler: async (message) => {
        collector.messages.push(message);
        if (handler) await handler(message);
      },
    });
    return collector;
  }

  values(): string[] {
    return this.messages.map((m) => m.value);
  }

  has(values: string[]): boolean {
    const seen = new Set(this.values());
    return values.every((v) => seen.has(v));
  }

  describe(): string {
    return `Received so far: ${JSON.stringify(this.values())}`;
  }

  async close(): Promise<void> {
    await this.#subscription?.close();
  }
}

function messagesFor(prefix: string, count: number, keys: number): OutgoingMessage[] {
  return Array.from({ length: count }, (_, i) => ({
    key: `agent-${i % keys}`,
    value: JSON.stringify({ agent_id: `agent-${i % keys}`, seq: i, tag: prefix }),
  }));
}

/** A `deno run` subprocess of bus_contract_child.ts whose stdout lines are collected. */
class Child extends DenoLineProcess {
  constructor(permissions: string[], args: string[]) {
    super(["run", "--quiet", "--config", DENO_JSON, ...permissions, CHILD, ...args]);
  }

  async waitForLine(line: string, ms: number): Promise<void> {
    await waitUntil(
      () => this.lines.includes(line) || this.exited,
      ms,
      `line ${JSON.stringify(line)} from the subprocess`,
      { detail: () => `stdout: ${JSON.stringify(this.lines)}` },
    );
    if (!this.lines.includes(line)) {
      const { code } = await this.status;
      throw new Error(
        `subprocess exited with code ${code} before printing ${JSON.stringify(line)}: ${await this
          .stderr}`,
      );
    }
  }

  /** Kills the process (SIGKILL: no cleanup runs) and waits for it. */
  async kill(): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.finish();
  }

  /** Waits for the exit; returns the status and stderr. */
  async finish(): Promise<{ code: number; stderr: string }> {
    const [{ code }, stderr] = await Promise.all([this.status, this.stderr, this.stdoutDone]);
    return { code, stderr };
  }
}

/**
 * Registers the Bus contract tests for one backend.
 *
 * @param name backend name shown in the test names
 * @param open creates a fresh backend (or file) and a bus on it for one test
 * @param options unreachable settings, subprocess permissions and fault injection
 */
export function busContract(
  name: string,
  open: () => Promise<BusFixture>,
  options: BusContractOptions,
): void {
  const waitMs = options.waitMs ?? 60000;
  const test = (title: string, fn: (fx: BusFixture) => Promise<void>) =>
    Deno.test(`bus contract (${name}): ${title}`, async () => {
      const fx = await open();
      try {
        await fn(fx);
      } finally {
        await fx.cleanup();
      }
    });

  test("publish/subscribe roundtrip keeps topic, key and value", async ({ bus }) => {
    const topic = unique("roundtrip");
    await bus.ensureTopics([topic]);
    const sent = messagesFor("roundtrip", 6, 3);
    await bus.publish(topic, sent);
    await bus.publish(topic, []);
    const c = await Collector.start(bus, {
      topics: [topic],
      group: unique("g"),
      fromBeginning: true,
    });
    try {
      await waitUntil(() => c.messages.length >= sent.length, waitMs, "6 messages", {
        detail: () => c.describe(),
      });
      assert.deepEqual(
        c.messages.map((m) => `${m.key}|${m.value}`).sort(),
        sent.map((m) => `${m.key}|${m.value}`).sort(),
      );
      for (const m of c.messages) {
        assert.equal(m.topic, topic);
        assert.ok(Number.isInteger(m.partition) && m.partition >= 0, `partition ${m.partition}`);
        assert.match(m.offset, /^\d+$/);
        assert.ok(Number.isFinite(m.timestamp) && m.timestamp > 0, `timestamp ${m.timestamp}`);
      }
      assert.equal(bus.backend, name);
    } finally {
      await c.close();
    }
  });

  test("bad arguments are rejected with errors naming the problem", async ({ bus }) => {
    const topic = unique("bad");
    await assert.rejects(
      bus.publish(topic, [{ key: "a", value: 5 as unknown as string }]),
      /message 0: value must be a string/,
    );
    await assert.rejects(bus.publish("bad topic!", []), /topic must be/);
    await assert.rejects(
      bus.subscribe({ topics: [], group: "g", handler: () => {} }),
      /topics must be a non-empty array/,
    );
    await assert.rejects(
      bus.subscribe({ topics: [topic], group: "", handler: () => {} }),
      /group must be a non-empty string/,
    );
    await assert.rejects(
      openBus({ backend: "rabbit" as "kafka", brokers: [], path: "" }),
      /bus\.backend: expected "embedded" or "kafka", got "rabbit"/,
    );
  });

  test("messages of one key arrive in publish order", async ({ bus }) => {
    const topic = unique("order");
    await bus.ensureTopics([topic]);
    const all = messagesFor("order", 60, 4);
    for (let i = 0; i < all.length; i += 7) await bus.publish(topic, all.slice(i, i + 7));
    const c = await Collector.start(bus, {
      topics: [topic],
      group: unique("g"),
      fromBeginning: true,
    });
    try {
      await waitUntil(() => c.messages.length >= all.length, waitMs, "60 messages", {
        detail: () => c.describe(),
      });
      const byKey = new Map<string, { seqs: number[]; partitions: Set<number> }>();
      for (const m of c.messages) {
        const entry = byKey.get(m.key) ?? { seqs: [], partitions: new Set() };
        entry.seqs.push((JSON.parse(m.value) as { seq: number }).seq);
        entry.partitions.add(m.partition);
        byKey.set(m.key, entry);
      }
      assert.equal(byKey.size, 4);
      for (const [key, { seqs, partitions }] of byKey) {
        assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `order of ${key}`);
        assert.equal(seqs.length, 15, `count of ${key}`);
        assert.equal(partitions.size, 1, `${key} stays on one partition`);
      }
    } finally {
      await c.close();
    }
  });

  test("fromBeginning replays old messages; a new group otherwise gets only new ones", async ({ bus }) => {
    const topic = unique("start");
    await bus.ensureTopics([topic]);
    await bus.publish(topic, [{ key: "k", value: "old" }]);
    const newOnly = await Collector.start(bus, { topics: [topic], group: unique("new") });
    const replay = await Collector.start(bus, {
      topics: [topic],
      group: unique("replay"),
      fromBeginning: true,
    });
    try {
      await bus.publish(topic, [{ key: "k", value: "new" }]);
      await waitUntil(() => newOnly.has(["new"]), waitMs, "'new' (new-only group)", {
        detail: () => newOnly.describe(),
      });
      await waitUntil(() => replay.has(["old", "new"]), waitMs, "'old' and 'new' (replay)", {
        detail: () => replay.describe(),
      });
      // Same key, so "old" would have arrived before "new".
      assert.deepEqual(newOnly.values(), ["new"]);
      assert.deepEqual(replay.values(), ["old", "new"]);
    } finally {
      await newOnly.close();
      await replay.close();
    }
  });

  test("a group resumes from its committed offsets after close", async (fx) => {
    const topic = unique("resume");
    const group = unique("g");
    await fx.bus.ensureTopics([topic]);
    await fx.bus.publish(topic, ["m1", "m2", "m3"].map((value) => ({ key: "k", value })));
    const first = await Collector.start(fx.bus, { topics: [topic], group, fromBeginning: true });
    try {
      await waitUntil(() => first.has(["m1", "m2", "m3"]), waitMs, "m1..m3", {
        detail: () => first.describe(),
      });
    } finally {
      await first.close();
    }
    assert.deepEqual(first.values(), ["m1", "m2", "m3"]);
    await fx.bus.publish(topic, ["m4", "m5"].map((value) => ({ key: "k", value })));
    // Another client: the offsets live in the backend, not in the client.
    const other = await fx.openAnother();
    const second = await Collector.start(other, { topics: [topic], group, fromBeginning: true });
    try {
      await waitUntil(() => second.has(["m4", "m5"]), waitMs, "m4 and m5", {
        detail: () => second.describe(),
      });
      assert.deepEqual(second.values(), ["m4", "m5"]);
    } finally {
      await second.close();
    }
  });

  test("consumer-group handover: a second member takes over when the first closes", async (fx) => {
    const topic = unique("handover");
    const group = unique("g");
    await fx.bus.ensureTopics([topic]);
    const busB = await fx.openAnother();
    const batch = (tag: string) => messagesFor(tag, 8, 8);
    const values = (messages: OutgoingMessage[]) => messages.map((m) => m.value);
    const a = await Collector.start(fx.bus, { topics: [topic], group, fromBeginning: true });
    let b: Collector | undefined;
    try {
      const batch1 = batch("one");
      await fx.bus.publish(topic, batch1);
      await waitUntil(() => a.has(values(batch1)), waitMs, "batch 1 at member A", {
        detail: () => a.describe(),
      });
      b = await Collector.start(busB, { topics: [topic], group, fromBeginning: true });
      const batch2 = batch("two");
      await fx.bus.publish(topic, batch2);
      const union = () => new Set([...a.values(), ...b!.values()]);
      await waitUntil(
        () => values(batch2).every((v) => union().has(v)),
        waitMs,
        "batch 2 at member A or B",
        { detail: () => `A: ${a.describe()} B: ${b!.describe()}` },
      );
      await a.close();
      const batch3 = batch("three");
      await fx.bus.publish(topic, batch3);
      await waitUntil(() => b!.has(values(batch3)), waitMs, "batch 3 at member B", {
        detail: () => b!.describe(),
      });
      // B never re-reads what A committed before handing over.
      for (const v of values(batch1)) assert.ok(!b.values().includes(v), `B got ${v} again`);
    } finally {
      await a.close();
      await b?.close();
    }
  });

  test("at-least-once: a message is delivered again after its consumer crashed", async (fx) => {
    const topic = unique("crash");
    const group = unique("g");
    await fx.bus.ensureTopics([topic]);
    await fx.bus.publish(topic, ["victim-1", "victim-2"].map((value) => ({ key: "k", value })));
    const child = new Child(options.childPermissions(fx.settings), [
      "consume-hang",
      JSON.stringify(fx.settings),
      topic,
      group,
    ]);
    try {
      await child.waitForLine("received victim-1", waitMs);
    } finally {
      await child.kill();
    }
    const c = await Collector.start(fx.bus, { topics: [topic], group, fromBeginning: true });
    try {
      await waitUntil(() => c.has(["victim-1", "victim-2"]), waitMs, "victim-1 and victim-2", {
        detail: () => c.describe(),
      });
      assert.deepEqual(c.values().slice(0, 2), ["victim-1", "victim-2"]);
    } finally {
      await c.close();
    }
  });

  test("at-least-once: a handler that throws gets the same message again", async ({ bus }) => {
    const topic = unique("retry");
    await bus.ensureTopics([topic]);
    await bus.publish(topic, ["flaky", "after"].map((value) => ({ key: "k", value })));
    let failures = 0;
    const c = await Collector.start(
      bus,
      { topics: [topic], group: unique("g"), fromBeginning: true },
      (m) => {
        if (m.value === "flaky" && failures < 2) {
          failures++;
          throw new Error("simulated handler failure");
        }
      },
    );
    try {
      await waitUntil(() => c.has(["after"]), waitMs, "'after'", { detail: () => c.describe() });
      assert.deepEqual(c.values(), ["flaky", "flaky", "flaky", "after"]);
    } finally {
      await c.close();
    }
  });

  test("an unreachable backend fails with an error naming the endpoint", async () => {
    const target = await options.unreachable();
    try {
      const error = await within(
        openBus(target.settings).then(
          async (bus) => {
            await bus.close();
            return new Error("openBus succeeded against an unreachable backend");
          },
          (e: unknown) => e,
        ),
        30000,
        "openBus against an unreachable backend",
      );
      assert.ok(error instanceof BusUnavailableError, `got ${errorMessage(error)}`);
      assert.ok(
        error.message.includes(target.endpoint),
        `${JSON.stringify(error.message)} names ${target.endpoint}`,
      );
      assert.ok(error.endpoint.includes(target.endpoint));
    } finally {
      await target.cleanup();
    }
  });

  if (options.brokerFaults) {
    test("a broker taken down and brought back loses no acknowledged message", async (fx) => {
      const faults = fx.faults;
      assert.ok(faults, "the fixture offers broker fault injection");
      const topic = unique("faults");
      await fx.bus.ensureTopics([topic]);
      // Broker 1 leads every partition, so every publish during its outage must wait and retry.
      faults.leadAll(topic, 1);
      await fx.bus.publish(topic, [{ key: "warmup", value: "warmup" }]);
      const acknowledged: string[] = [];
      const failed: string[] = [];
      const pending = new Set<string>();
      let phase: "before" | "down" | "up" = "before";
      /** Publishes in flight at some point of the outage. */
      const caught = new Set<string>();
      const startedWhileDown = new Set<string>();
      const acknowledgedWhileDown: string[] = [];
      const retriedAcrossOutage: string[] = [];
      const publisher = async (worker: number) => {
        for (let i = 0; i < 30; i++) {
          const value = `w${worker}-${i}`;
          pending.add(value);
          if (phase === "down") {
            startedWhileDown.add(value);
            caught.add(value);
          }
          try {
            await fx.bus.publish(topic, [{ key: `key-${(worker * 31 + i) % 16}`, value }]);
            acknowledged.push(value);
            if (phase === "down" && startedWhileDown.has(value)) acknowledgedWhileDown.push(value);
            if (phase === "up" && caught.has(value)) retriedAcrossOutage.push(value);
          } catch (error) {
            failed.push(`${value}: ${errorMessage(error)}`);
          } finally {
            pending.delete(value);
          }
          await sleep(10);
        }
      };
      const running = Promise.all([0, 1, 2].map(publisher));
      await waitUntil(() => acknowledged.length >= 10, waitMs, "10 acknowledged publishes");
      faults.brokerDown(1);
      phase = "down";
      for (const value of pending) caught.add(value);
      try {
        await sleep(1500);
      } finally {
        faults.brokerUp(1);
        phase = "up";
      }
      await within(running, waitMs * 2, "the publishers");
      // The outage was real: nothing started during it was acknowledged while the leader was down...
      assert.deepEqual(acknowledgedWhileDown, []);
      // ...and publishes caught by it were retried until the broker was back.
      assert.ok(
        retriedAcrossOutage.length > 0,
        `no publish caught by the outage (${[...caught].join(", ")}) was acknowledged after it; ` +
          `failed: ${failed.join("; ")}`,
      );
      const c = await Collector.start(fx.bus, {
        topics: [topic],
        group: unique("g"),
        fromBeginning: true,
      });
      try {
        await waitUntil(() => c.has(acknowledged), waitMs, "every acknowledged message", {
          detail: () => {
            const seen = new Set(c.values());
            return `missing: ${acknowledged.filter((v) => !seen.has(v)).join(", ")}`;
          },
        });
      } finally {
        await c.close();
      }
    });
  }

  test("several clients publish concurrently without losing or reordering", async (fx) => {
    const topic = unique("concurrent");
    await fx.bus.ensureTopics([topic]);
    const other = await fx.openAnother();
    const send = async (bus: Bus, name: string) => {
      for (let i = 0; i < 40; i += 5) {
        await bus.publish(
          topic,
          Array.from({ length: 5 }, (_, j) => ({ key: name, value: `${name}-${i + j}` })),
        );
      }
    };
    await Promise.all([send(fx.bus, "p1"), send(other, "p2")]);
    const c = await Collector.start(fx.bus, {
      topics: [topic],
      group: unique("g"),
      fromBeginning: true,
    });
    try {
      await waitUntil(() => c.messages.length >= 80, waitMs, "80 messages", {
        detail: () => c.describe(),
      });
      for (const name of ["p1", "p2"]) {
        const seq = c.values().filter((v) => v.startsWith(`${name}-`));
        assert.deepEqual(seq, Array.from({ length: 40 }, (_, i) => `${name}-${i}`));
      }
    } finally {
      await c.close();
    }
  });

  test("subscribing to several topics delivers from each", async ({ bus }) => {
    const topics = [unique("multi-a"), unique("multi-b")];
    await bus.ensureTopics(topics);
    const c = await Collector.start(bus, { topics, group: unique("g"), fromBeginning: true });
    try {
      await bus.publish(topics[0], [{ key: "k", value: "on-a" }]);
      await bus.publish(topics[1], [{ key: "k", value: "on-b" }]);
      await waitUntil(() => c.has(["on-a", "on-b"]), waitMs, "one message per topic", {
        detail: () => c.describe(),
      });
      assert.deepEqual(
        c.messages.map((m) => `${m.topic}:${m.value}`).sort(),
        [`${topics[0]}:on-a`, `${topics[1]}:on-b`].sort(),
      );
    } finally {
      await c.close();
    }
  });

  test("close is idempotent and later calls fail clearly", async (fx) => {
    const bus = await fx.openAnother();
    await bus.close();
    await bus.close();
    await assert.rejects(bus.publish(unique("closed"), [{ key: "k", value: "v" }]), /closed/);
  });
}

/** Runs a child publisher (for backend-specific tests). */
export async function runPublisherProcess(
  permissions: string[],
  settings: BusSettings,
  topic: string,
  name: string,
  count: number,
  batch: number,
): Promise<void> {
  const child = new Child(permissions, [
    "publish",
    JSON.stringify(settings),
    topic,
    name,
    String(count),
    String(batch),
  ]);
  const { code, stderr } = await child.finish();
  assert.equal(code, 0, `publisher ${name} failed: ${stderr}`);
  assert.ok(child.lines.includes("published"), `publisher ${name} finished: ${stderr}`);
}
