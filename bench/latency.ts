/**
 * Scenario 2: end-to-end latency, agent → consumer. Simulated agents send
 * one single-sample batch per second each (spread evenly), stamped with the
 * send time; the broker publishes them to the Kafka mock cluster; a consumer
 * subscribed through the bus (as the analysis application is) takes the
 * difference between its clock and the sample's timestamp. Then the load
 * steps up to find the largest number of agents one broker carries without
 * loss or growing lag.
 *
 * @module
 */
import { sleep, waitUntil } from "../services/common/async.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { withBrokerRig } from "./backends.ts";
import type { AgentSim } from "./sim_client.ts";
import {
  Arrivals,
  type BenchContext,
  median,
  percentile,
  type Row,
  type Scenario,
} from "./support.ts";

/**
 * Longest wait of the consumer's empty fetch. librdkafka's mock cluster
 * answers a waiting fetch only when the wait ends, not when data arrives (a
 * real Kafka answers at once), so with the default 1000 ms every sample would
 * wait for the next fetch round; 50 ms keeps that artifact small.
 */
const MAX_WAIT_MS = 50;

interface StepResult {
  agents: number;
  sent: number;
  acked: number;
  consumed: number;
  p50: number;
  p95: number;
  p99: number;
  firstThirdP50: number;
  lastThirdP50: number;
  simBehind: number;
  ackP50: number;
  ackP99: number;
  ok: boolean;
}

async function step(
  ctx: BenchContext,
  sim: AgentSim,
  arrivals: Arrivals,
  agents: number,
  runMs: number,
): Promise<StepResult> {
  const from = Date.now() / 1000;
  const r = await sim.request({ op: "rate", ms: runMs, perSecond: 1 }, runMs + 60_000);
  const to = Date.now() / 1000;
  const sent = Number(r.sent);
  // Grace for what is still on its way.
  try {
    await waitUntil(() => arrivals.between(from, to).length >= sent, 10_000, "consumption", {
      intervalMs: 50,
    });
  } catch { /* counted as lost below */ }
  const all = arrivals.between(from, to);
  const third = (to - from) / 3;
  const first = arrivals.between(from, from + third);
  const last = arrivals.between(to - third, to);
  const firstP50 = median(first);
  const lastP50 = median(last);
  const lost = sent - all.length;
  // Growing lag: the last third's median clearly above the first third's.
  const growing = lastP50 > 2 * firstP50 && lastP50 - firstP50 > 250;
  const result: StepResult = {
    agents,
    sent,
    acked: Number(r.acked),
    consumed: all.length,
    p50: median(all),
    p95: percentile(all, 95),
    p99: percentile(all, 99),
    firstThirdP50: firstP50,
    lastThirdP50: lastP50,
    simBehind: Number(r.behind),
    ackP50: Number(r.ackP50),
    ackP99: Number(r.ackP99),
    ok: lost <= 0 && !growing,
  };
  ctx.progress(
    `latency: ${agents} agents: sent ${sent}, acked ${result.acked}, consumed ${all.length}, p50 ${
      Math.round(result.p50)
    } ms (first third ${Math.round(firstP50)}, last third ${Math.round(lastP50)}) → ${
      result.ok ? "ok" : lost > 0 ? "loss" : "growing lag"
    }`,
  );
  return result;
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const quick = ctx.quick;
  const baseAgents = quick ? 200 : 1000;
  const baseMs = quick ? 2500 : 20_000;
  const steps = quick ? [500] : [2000, 4000, 7000, 10_000];
  const stepMs = quick ? 2000 : 10_000;
  const scenario = "2 latency";
  const rows: Row[] = [];

  const arrivals = new Arrivals();
  await withBrokerRig(ctx, {
    tempPrefix: "bench-latency-",
    consumer: { clientId: "bench-consumer", group: { maxWaitMs: MAX_WAIT_MS } },
    subscribe: {
      topic: DEFAULT_TOPICS.data,
      group: `bench-latency-${crypto.randomUUID().slice(0, 8)}`,
      handler: (message) => arrivals.record(message.value),
    },
    agents: baseAgents,
    agentPrefix: "lat",
  }, async ({ sim, address }) => {
    // Warm-up second (JIT, metadata, consumer fetch loop).
    await sim.request({ op: "rate", ms: quick ? 500 : 1000, perSecond: 1 }, 60_000);
    await sleep(300);
    const base = await step(ctx, sim, arrivals, baseAgents, baseMs);
    const note = `${baseAgents} agents × 1 batch/s (1 sample) for ${
      baseMs / 1000
    } s; ${base.consumed}/${base.sent} consumed; kafka mock, consumer through the bus`;
    rows.push({
      scenario,
      measure: `agent → consumer p50 (${baseAgents} agents)`,
      value: base.p50,
      unit: "ms",
      note,
    });
    rows.push({
      scenario,
      measure: `agent → consumer p95 (${baseAgents} agents)`,
      value: base.p95,
      unit: "ms",
    });
    rows.push({
      scenario,
      measure: `agent → consumer p99 (${baseAgents} agents)`,
      value: base.p99,
      unit: "ms",
    });
    rows.push({
      scenario,
      measure: `agent send → broker ack p50 / p99 (${baseAgents} agents)`,
      value: base.ackP50,
      unit: "ms",
      note: `p99 ${
        Math.round(base.ackP99)
      } ms; the broker acknowledges after Kafka accepted the batch`,
    });

    let carried = base.ok ? baseAgents : 0;
    let limit = base.ok ? "" : `already at ${baseAgents}`;
    let total = baseAgents;
    if (base.ok) {
      for (const target of steps) {
        const connected = await sim.request(
          {
            op: "connect",
            address,
            count: target - total,
            prefix: `lat${target}`,
          },
          180_000,
        );
        total = Number(connected.agents);
        if (Number(connected.failed) > 0) {
          limit = `${connected.failed} of ${target} streams could not connect`;
          break;
        }
        const result = await step(ctx, sim, arrivals, target, stepMs);
        if (!result.ok) {
          limit = `${target}: ${
            result.consumed < result.sent
              ? `${
                result.sent - result.consumed
              } of ${result.sent} samples not consumed within 10 s`
              : `lag grew from ${Math.round(result.firstThirdP50)} to ${
                Math.round(result.lastThirdP50)
              } ms (p50)`
          }${result.simBehind > 0 ? `, simulator ${result.simBehind} sends late` : ""}`;
          break;
        }
        carried = target;
      }
    }
    rows.push({
      scenario,
      measure: "most agents one broker carried (1 batch/s each)",
      value: carried,
      unit: "agents",
      note: limit
        ? `stepped ${[baseAgents, ...steps].join("/")}, ${stepMs / 1000} s each; limit: ${limit}`
        : `stepped ${[baseAgents, ...steps].join("/")}, ${
          stepMs / 1000
        } s each; no loss or growing lag at the largest step`,
    });
  });
  return rows;
}

/** Scenario 2. */
export const latencyScenario: Scenario = { id: "latency", title: "2 latency", run };
