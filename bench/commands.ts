/**
 * Scenario 3: command round trip. A command published on
 * `monitoring-commands` (seed format) is routed by the broker to simulated
 * agents, which answer at once; the time until the result is consumed from
 * `monitoring-results` is measured, to one agent and to all of them.
 *
 * @module
 */
import { sleep, within } from "../services/common/async.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { withBrokerRig } from "./backends.ts";
import { type BenchContext, median, percentile, type Row, type Scenario } from "./support.ts";

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
  const waiting = new Map<string, Waiting>();
  const oneRtt: number[] = [];
  const allDone: number[] = [];
  const allEach: number[] = [];
  await withBrokerRig(ctx, {
    tempPrefix: "bench-commands-",
    brokerGroup: { maxWaitMs: MAX_WAIT_MS },
    consumer: { clientId: "bench-analysis", group: { maxWaitMs: MAX_WAIT_MS } },
    subscribe: {
      topic: DEFAULT_TOPICS.results,
      group: `bench-results-${crypto.randomUUID().slice(0, 8)}`,
      handler(message) {
        const result = JSON.parse(message.value) as { command_id: string; status: string };
        const w = waiting.get(result.command_id);
        if (!w) return;
        w.latencies.push(performance.now() - w.started);
        if (w.latencies.length >= w.expected) w.done();
      },
    },
    agents,
    agentPrefix: "cmd",
  }, async ({ bus }) => {
    const send = async (target: string, expected: number): Promise<number[]> => {
      const commandId = `bench-${crypto.randomUUID()}`;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => done = resolve);
      const w: Waiting = { expected, started: performance.now(), latencies: [], done };
      waiting.set(commandId, w);
      await bus.publish(DEFAULT_TOPICS.commands, [{
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
  });
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
