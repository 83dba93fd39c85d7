/**
 * Scenario 3: command round trip. A command published on
 * `monitoring-commands` (seed format) is routed by the broker to simulated
 * agents, which answer at once; the time until the result is consumed from
 * `monitoring-results` is measured, to one agent and to all of them.
 *
 * @module
 */
import type { Bus } from "../services/bus/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { benchBroker, embeddedStore, kafkaBus, kafkaMock } from "./backends.ts";
import { startAgentSim } from "./sim_client.ts";
import {
  type BenchContext,
  median,
  percentile,
  type Row,
  type Scenario,
  sleep,
  within,
} from "./support.ts";

/**
 * Longest wait of an empty fetch for the broker's commands consumer and the
 * results consumer: librdkafka's mock cluster answers a waiting fetch only
 * when the wait ends (a real Kafka answers when data arrives), so the default
 * 1000 ms would add up to a second per hop.
 */
const MAX_WAIT_MS = 50;

interface Waiting {
  expected: number;
  started: number;
  latencies: number[];
  done: () => void;
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const agents = ctx.quick ? 200 : 1000;
  const toOne = ctx.quick ? 10 : 50;
  const toAll = ctx.quick ? 3 : 10;
  const scenario = "3 commands";
  const sim = startAgentSim();
  const mock = await kafkaMock();
  let brokerBus: Bus | undefined;
  let bus: Bus | undefined;
  const waiting = new Map<string, Waiting>();
  const oneRtt: number[] = [];
  const allDone: number[] = [];
  const allEach: number[] = [];
  try {
    brokerBus = await kafkaBus(mock, "bench-broker", { maxWaitMs: MAX_WAIT_MS });
    bus = await kafkaBus(mock, "bench-analysis", { maxWaitMs: MAX_WAIT_MS });
    const store = await embeddedStore(await ctx.tempDir("bench-commands-"));
    // The results consumer's group join overlaps the broker's start (its own join).
    const subscribing = bus.subscribe({
      topics: [DEFAULT_TOPICS.results],
      group: `bench-results-${crypto.randomUUID().slice(0, 8)}`,
      fromBeginning: false,
      handler(message) {
        const result = JSON.parse(message.value) as { command_id: string; status: string };
        const w = waiting.get(result.command_id);
        if (!w) return;
        w.latencies.push(performance.now() - w.started);
        if (w.latencies.length >= w.expected) w.done();
      },
    });
    const broker = await benchBroker(brokerBus, store).catch(async (error) => {
      await subscribing.then((s) => s.close(), () => {});
      await store.close();
      throw error;
    });
    const connecting = sim.request(
      { op: "connect", address: broker.address, count: agents, prefix: "cmd" },
      120_000,
    );
    const results = await subscribing;
    const send = async (target: string, expected: number): Promise<number[]> => {
      const commandId = `bench-${crypto.randomUUID()}`;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => done = resolve);
      const w: Waiting = { expected, started: performance.now(), latencies: [], done };
      waiting.set(commandId, w);
      await bus!.publish(DEFAULT_TOPICS.commands, [{
        key: target,
        value: JSON.stringify({
          command_id: commandId,
          target,
          command_type: "ping",
          timestamp: Date.now() / 1000,
        }),
      }]);
      try {
        await within(finished, 30_000, `${expected} result(s) of command ${commandId}`);
      } finally {
        waiting.delete(commandId);
      }
      return w.latencies;
    };
    try {
      await connecting;
      // Warm-up: the first command also waits for partitions and metadata.
      await send("cmd-0", 1);
      await send("all", agents);
      for (let i = 0; i < toOne; i++) {
        const target = `cmd-${Math.floor(Math.random() * agents)}`;
        oneRtt.push((await send(target, 1))[0]);
      }
      for (let i = 0; i < toAll; i++) {
        const latencies = await send("all", agents);
        allDone.push(Math.max(...latencies));
        allEach.push(...latencies);
        await sleep(100);
      }
      ctx.progress(
        `commands: to one p50 ${Math.round(median(oneRtt))} ms, to all ${agents} p50 ${
          Math.round(median(allDone))
        } ms`,
      );
    } finally {
      await sim.close();
      await results.close();
      await broker.stop();
      await store.close();
    }
  } finally {
    await sim.close();
    await bus?.close();
    await brokerBus?.close();
    mock.stop();
  }
  const how = `kafka mock; consumers' fetch wait ${MAX_WAIT_MS} ms`;
  return [
    {
      scenario,
      measure: "to one agent: p50",
      value: median(oneRtt),
      unit: "ms",
      note:
        `publish on monitoring-commands → result consumed from monitoring-results; ${toOne} commands, ${agents} agents connected; ${how}`,
    },
    { scenario, measure: "to one agent: p99", value: percentile(oneRtt, 99), unit: "ms" },
    {
      scenario,
      measure: `to all ${agents}: every result in, p50`,
      value: median(allDone),
      unit: "ms",
      note: `${toAll} commands to all`,
    },
    {
      scenario,
      measure: `to all ${agents}: every result in, p99`,
      value: percentile(allDone, 99),
      unit: "ms",
    },
    {
      scenario,
      measure: `to all ${agents}: each result, p50 / p99`,
      value: median(allEach),
      unit: "ms",
      note: `p99 ${Math.round(percentile(allEach, 99))} ms`,
    },
  ];
}

/** Scenario 3. */
export const commandsScenario: Scenario = { id: "commands", title: "3 commands", run };
