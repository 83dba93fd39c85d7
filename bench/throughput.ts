/**
 * Scenario 1: broker pipeline throughput. Simulated agents (one subprocess,
 * many gRPC streams) send batches as fast as the broker acknowledges them
 * (it acknowledges only after the bus accepted the data); beside it, in the
 * same run and against the same cluster, a bare kafkajs producer publishes
 * the same messages with the same concurrency. Then the same on the
 * embedded bus, beside bare `Bus.publish` calls on that bus.
 *
 * The bare baseline imports kafkajs directly — the only place outside
 * services/bus/kafka.ts that does, on purpose: it is what the broker is
 * compared with.
 *
 * @module
 */
import { Kafka, logLevel, Partitioners } from "kafkajs";
import type { Bus, OutgoingMessage } from "../services/bus/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { benchBroker, embeddedBus, embeddedStore, kafkaBus, kafkaMock } from "./backends.ts";
import { startAgentSim } from "./sim_client.ts";
import { sleep } from "../services/common/async.ts";
import { type BenchContext, median, randomMetrics, type Row, type Scenario } from "./support.ts";

const TOPIC = DEFAULT_TOPICS.data;

interface Load {
  agents: number;
  samples: number;
  runMs: number;
  reps: number;
}

/** The same data messages the broker publishes for `agents` agents, `samples` each. */
function messagesFor(agents: number, samples: number): OutgoingMessage[][] {
  const out: OutgoingMessage[][] = [];
  for (let a = 0; a < agents; a++) {
    const id = `bare-${a}`;
    const list: OutgoingMessage[] = [];
    for (let s = 0; s < samples; s++) {
      list.push({
        key: id,
        value: JSON.stringify({
          agent_id: id,
          hostname: `${id}.bench`,
          timestamp: Date.now() / 1000,
          metrics: randomMetrics(),
        }),
      });
    }
    out.push(list);
  }
  return out;
}

/** `agents` concurrent closed loops, each publishing its batch again once the last was accepted. */
async function bareRun(
  publish: (messages: OutgoingMessage[]) => Promise<void>,
  batches: OutgoingMessage[][],
  ms: number,
): Promise<{ batches: number; samples: number; ms: number }> {
  let count = 0;
  let samples = 0;
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(batches.map(async (batch) => {
    while (performance.now() < deadline) {
      await publish(batch);
      if (performance.now() <= deadline) {
        count++;
        samples += batch.length;
      }
    }
  }));
  return { batches: count, samples, ms: Math.max(ms, performance.now() - started) };
}

async function measure(
  ctx: BenchContext,
  label: string,
  bus: Bus,
  barePublish: (messages: OutgoingMessage[]) => Promise<void>,
  load: Load,
): Promise<Row[]> {
  const sim = startAgentSim();
  const store = await embeddedStore(await ctx.tempDir("bench-throughput-store-"));
  const broker = await benchBroker(bus, store).catch(async (error) => {
    await sim.close();
    throw error;
  });
  const brokerRates: number[] = [];
  const brokerBatchRates: number[] = [];
  const bareRates: number[] = [];
  const ratios: number[] = [];
  try {
    await sim.request({
      op: "connect",
      address: broker.address,
      count: load.agents,
      prefix: `tp-${label.replaceAll(" ", "-")}`,
    }, 60_000);
    const batches = messagesFor(load.agents, load.samples);
    // Warm-up: connections, metadata, JIT.
    await sim.request({ op: "throughput", ms: 300, samples: load.samples, window: 1 }, 60_000);
    await bareRun(barePublish, batches, 300);
    for (let rep = 0; rep < load.reps; rep++) {
      const b = await sim.request(
        { op: "throughput", ms: load.runMs, samples: load.samples, window: 1 },
        load.runMs + 60_000,
      );
      const brokerRate = Number(b.samples) / (Number(b.ms) / 1000);
      brokerRates.push(brokerRate);
      brokerBatchRates.push(Number(b.batches) / (Number(b.ms) / 1000));
      const bare = await bareRun(barePublish, batches, load.runMs);
      const bareRate = bare.samples / (bare.ms / 1000);
      bareRates.push(bareRate);
      ratios.push(brokerRate / bareRate);
      ctx.progress(
        `throughput ${label} rep ${rep + 1}/${load.reps}: broker ${
          Math.round(brokerRate)
        } samples/s, bare ${Math.round(bareRate)} samples/s`,
      );
    }
  } finally {
    await sim.close();
    await broker.stop();
    await store.close();
  }
  const note =
    `${load.agents} agents, ${load.samples} samples/batch, 1 batch in flight each; median of ${load.reps} × ${
      load.runMs / 1000
    } s`;
  const scenario = "1 throughput";
  return [
    {
      scenario,
      measure: `broker → ${label}: samples/s`,
      value: median(brokerRates),
      unit: "samples/s",
      note,
    },
    {
      scenario,
      measure: `broker → ${label}: batches/s`,
      value: median(brokerBatchRates),
      unit: "batches/s",
      note,
    },
    {
      scenario,
      measure: `bare ${
        label === "kafka mock" ? "kafkajs producer" : "Bus.publish"
      } → ${label}: samples/s`,
      value: median(bareRates),
      unit: "samples/s",
      note: "same messages, same concurrency, same run",
    },
    {
      scenario,
      measure: `ratio broker / bare (${label})`,
      value: median(ratios),
      unit: "×",
      note: "median of per-repetition ratios",
    },
  ];
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const load: Load = ctx.quick
    ? { agents: 50, samples: 10, runMs: 1000, reps: 2 }
    : { agents: 200, samples: 10, runMs: 5000, reps: 5 };
  const rows: Row[] = [];

  const mock = await kafkaMock();
  try {
    const bus = await kafkaBus(mock, "bench-broker");
    // Bare baseline: kafkajs directly, configured as the kafka bus configures its producer.
    const kafka = new Kafka({
      clientId: "bench-bare",
      brokers: mock.bootstrap,
      logLevel: logLevel.NOTHING,
    });
    const producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: true,
    });
    await producer.connect();
    try {
      rows.push(
        ...await measure(
          ctx,
          "kafka mock",
          bus,
          async (messages) => {
            await producer.send({ topic: TOPIC, acks: -1, messages });
          },
          load,
        ),
      );
    } finally {
      await producer.disconnect();
      await bus.close();
    }
  } finally {
    mock.stop();
  }

  await sleep(100);
  const dir = await ctx.tempDir("bench-throughput-bus-");
  const bus = await embeddedBus(dir);
  const bare = await embeddedBus(dir);
  try {
    rows.push(
      ...await measure(ctx, "embedded bus", bus, (messages) => bare.publish(TOPIC, messages), load),
    );
  } finally {
    await bare.close();
    await bus.close();
  }
  return rows;
}

/** Scenario 1. */
export const throughputScenario: Scenario = { id: "throughput", title: "1 throughput", run };
