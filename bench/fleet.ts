/**
 * Scenario 8: a fleet of brokers. 1, 2 and 4 broker processes (real
 * `services/broker/main.ts` subprocesses on a real etcd and the Kafka mock,
 * `broker.max_streams` at its default) carry simulated agents spread over
 * several simulator processes (one gRPC connection each, each agent on the
 * broker its id prefers, moving on when refused at a ceiling). Every agent
 * sends one single-sample batch per second. Sample → Kafka is the time from
 * the agent's send to the broker's acknowledgement, which comes only after
 * Kafka accepted the batch; a consumer through the bus counts every sample
 * (and measures sample → consumer, which on the mock cluster includes its
 * slow fetches of many small produce requests, see the README). The load
 * steps up per broker count until a sample is lost (not acknowledged or not
 * consumed within 30 s), an agent finds no broker with room, or a broker
 * process dies; the largest step with p99 sample → Kafka ≤ 1 s is reported
 * too. Each simulator process carries at most 2,500 agents (its own HTTP/2
 * client, bench/h2_call.ts, costs about 5-7 % of a core per 1,000 agents,
 * and each process about 1.5 % more for its event loop and timers, so fewer
 * processes leave more of the machine to the brokers). With the agent's
 * node:http2 client the simulators needed 1,000 per process: with 2,000 or
 * more, one fell behind on a busy 2-core machine and the brokers dropped its
 * connections (keep-alive pings unanswered for 5 s).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { mergePermissionFlags } from "../services/common/permissions.ts";
import { sleep, waitUntil } from "../services/common/async.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { DEFAULT_MAX_STREAMS } from "../services/broker/mod.ts";
import { brokerPermissionFlags } from "../services/broker/permissions.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import { storePermissionFlags } from "../services/store/permissions.ts";
import type { BusSettings } from "../services/bus/types.ts";
import type { StoreSettings } from "../services/store/types.ts";
import { freePorts, startEtcd } from "../tests/harness/mod.ts";
import { kafkaBus, kafkaMock } from "./backends.ts";
import { type AgentSim, startAgentSim } from "./sim_client.ts";
import {
  Arrivals,
  type BenchContext,
  lines,
  median,
  percentile,
  procUsage,
  type Row,
  type Scenario,
} from "./support.ts";

const SCENARIO = "8 fleet";
const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Simulated agents per simulator process (each one a connection, i.e. a file descriptor). */
const AGENTS_PER_SIM = 2500;

interface BrokerProcess {
  address: string;
  child: Deno.ChildProcess;
  exited: boolean;
  status: Promise<Deno.CommandStatus>;
  /** The last lines of its output (crash messages). */
  tail: string[];
}

function startBrokerProcess(
  address: string,
  dir: string,
  store: StoreSettings,
  bus: BusSettings,
  cpuProfDir?: string,
): BrokerProcess {
  const flags = mergePermissionFlags(
    brokerPermissionFlags({ stateDir: dir, listen: address }),
    storePermissionFlags(store),
    busPermissionFlags(bus),
  );
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--no-prompt",
      // A V8 CPU profile, written when the broker exits (SIGTERM at the end of the run).
      ...(cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`] : []),
      ...flags,
      "services/broker/main.ts",
      "--supervised",
      "--listen",
      address,
      "--admin",
      "off",
      "--log-level",
      "warn",
      "--state-dir",
      dir,
      "--store-backend",
      "etcd",
      "--store-endpoints",
      store.endpoints.join(","),
      "--bus-backend",
      "kafka",
      "--bus-brokers",
      bus.brokers.join(","),
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const broker: BrokerProcess = {
    address,
    child,
    exited: false,
    status: child.status,
    tail: [],
  };
  broker.status.then(() => broker.exited = true);
  for (const stream of [child.stdout, child.stderr]) {
    (async () => {
      for await (const line of lines(stream)) {
        broker.tail.push(line);
        if (broker.tail.length > 20) broker.tail.shift();
      }
    })().catch(() => {});
  }
  return broker;
}

interface StepResult {
  agents: number;
  connected: number;
  movedOn: number;
  sent: number;
  acked: number;
  consumed: number;
  p50: number;
  p99: number;
  /** Send → ack (published to Kafka), the worst p50 / p99 over the simulators. */
  ackP50: number;
  ackP99: number;
  /** Sends the simulators made more than a period late (they could not keep up). */
  behind: number;
  firstThirdP50: number;
  lastThirdP50: number;
  crashed: string[];
  /** Broker CPU, % of one core, per broker. */
  cpu: number[];
  /** Broker RSS (MiB) per broker at the end of the step. */
  rssMiB: number[];
  /** CPU of all simulator processes together, % of one core. */
  simCpu: number;
  /** CPU of this runner process (the Kafka mock through FFI and the counting consumer), % of one core. */
  runnerCpu: number;
  /** No loss, no crash, every agent connected. */
  ok: boolean;
  /** And p99 sample → Kafka ≤ 1 s. */
  fast: boolean;
  why: string;
}

/** Runs 1, 2 or 4 brokers and steps the fleet up; returns one result per step. */
async function fleetRun(
  ctx: BenchContext,
  brokerCount: number,
  steps: number[],
  stepMs: number,
  warmUpMs: number,
): Promise<StepResult[]> {
  const dir = await ctx.tempDir(`bench-fleet-${brokerCount}-`);
  const etcd = await startEtcd();
  const mock = await kafkaMock();
  const store: StoreSettings = {
    backend: "etcd",
    endpoints: [etcd.endpoint],
    prefix: "/monitor",
    path: "",
  };
  const busSettings: BusSettings = {
    backend: "kafka",
    brokers: mock.bootstrap,
    path: "",
    clientId: "bench-fleet",
  };
  const arrivals = new Arrivals();
  const brokers: BrokerProcess[] = [];
  const sims: AgentSim[] = [];
  const results: StepResult[] = [];
  const bus = await kafkaBus(mock, "bench-fleet-consumer", { maxWaitMs: 50 });
  try {
    await bus.ensureTopics(Object.values(DEFAULT_TOPICS));
    const subscription = await bus.subscribe({
      topics: [DEFAULT_TOPICS.data],
      group: `bench-fleet-${crypto.randomUUID().slice(0, 8)}`,
      fromBeginning: false,
      handler: (message) => arrivals.record(message.value),
    });
    try {
      const ports = freePorts(brokerCount);
      for (const port of ports) {
        brokers.push(
          startBrokerProcess(`127.0.0.1:${port}`, dir, store, busSettings, ctx.fleet?.cpuProfDir),
        );
      }
      await waitUntil(
        () =>
          brokers.every((b) => b.tail.includes("monitor:ready")) || brokers.some((b) => b.exited),
        120_000,
        `${brokerCount} broker(s) ready`,
        { intervalMs: 100 },
      );
      if (brokers.some((b) => b.exited)) throw new Error("a broker did not start");
      const addresses = brokers.map((b) => b.address);
      let total = 0;
      for (const target of steps) {
        // More simulator processes as the fleet grows (file descriptors per process).
        while (sims.length < Math.ceil(target / AGENTS_PER_SIM)) {
          sims.push(startAgentSim(ctx.fleet?.cpuProfDir));
        }
        const more = target - total;
        const share = Math.ceil(more / sims.length);
        let connected = 0;
        let failed = 0;
        let movedOn = 0;
        let retried = 0;
        const answers = await Promise.all(sims.map((sim, i) => {
          const count = Math.max(0, Math.min(share, more - i * share));
          return count === 0
            ? Promise.resolve({ agents: 0, failed: 0, movedOn: 0, retried: 0 })
            : sim.request(
              { op: "connect", addresses, count, prefix: `f${brokerCount}-${target}-${i}` },
              600_000,
            );
        }));
        for (const a of answers) {
          connected += Number(a.agents);
          failed += Number(a.failed);
          movedOn = Math.max(movedOn, Number(a.movedOn));
          retried += Number(a.retried ?? 0);
        }
        total = target;
        // Warm-up (new streams, the brokers' producers, the consumer's fetch loop), not measured.
        await Promise.all(
          sims.map((sim) => sim.request({ op: "rate", ms: warmUpMs, perSecond: 1 }, 180_000)),
        );
        await sleep(1000);
        const usage = () =>
          Promise.all(
            [...brokers.map((b) => b.child.pid), ...sims.map((sim) => sim.pid), Deno.pid].map((
              pid,
            ) => procUsage(pid).catch(() => undefined)),
          );
        const before = await usage();
        const from = Date.now() / 1000;
        const t0 = performance.now();
        const rates = await Promise.all(
          sims.map((sim) =>
            sim.request({ op: "rate", ms: stepMs, perSecond: 1 }, stepMs + 120_000)
          ),
        );
        const to = Date.now() / 1000;
        const elapsedS = (performance.now() - t0) / 1000;
        const after = await usage();
        const cpuOf = (i: number) =>
          before[i] && after[i]
            ? Math.round((after[i]!.cpuSeconds - before[i]!.cpuSeconds) / elapsedS * 100)
            : NaN;
        const simCpu = sims.reduce((sum, _, j) => sum + cpuOf(brokers.length + j), 0);
        const runnerCpu = cpuOf(brokers.length + sims.length);
        const sent = rates.reduce((n, r) => n + Number(r.sent), 0);
        const acked = rates.reduce((n, r) => n + Number(r.acked), 0);
        try {
          await waitUntil(() => arrivals.between(from, to).length >= sent, 30_000, "consumption", {
            intervalMs: 100,
          });
        } catch { /* counted as lost below */ }
        const all = arrivals.between(from, to);
        const third = (to - from) / 3;
        const firstP50 = median(arrivals.between(from, from + third));
        const lastP50 = median(arrivals.between(to - third, to));
        const crashed = brokers.filter((b) => b.exited).map((b) =>
          `${b.address}: ${b.tail.slice(-3).join(" | ")}`
        );
        const p99 = percentile(all, 99);
        const ackP50 = Math.max(...rates.map((r) => Number(r.ackP50)));
        const ackP99 = Math.max(...rates.map((r) => Number(r.ackP99)));
        const behind = rates.reduce((n, r) => n + Number(r.behind), 0);
        const lost = sent - all.length;
        const why = crashed.length > 0
          ? `broker died: ${crashed.join("; ")}`
          : failed > 0
          ? `${failed} of ${target} agents found no broker with room`
          : acked < sent
          ? `${sent - acked} of ${sent} samples not acknowledged`
          : lost > 0
          ? `${lost} of ${sent} samples not consumed within 30 s`
          : "";
        const slow = ackP99 > 1000 ? `p99 sample → Kafka ${Math.round(ackP99)} ms > 1 s` : "";
        const result: StepResult = {
          agents: target,
          connected: connected,
          movedOn,
          sent,
          acked,
          consumed: all.length,
          p50: median(all),
          p99,
          ackP50,
          ackP99,
          behind,
          firstThirdP50: firstP50,
          lastThirdP50: lastP50,
          crashed,
          cpu: brokers.map((_, i) => cpuOf(i)),
          rssMiB: after.slice(0, brokers.length).map((u) =>
            u ? Math.round(u.rssBytes / 1048576) : NaN
          ),
          simCpu,
          runnerCpu,
          ok: why === "",
          fast: why === "" && slow === "",
          why: why || slow,
        };
        results.push(result);
        ctx.progress(
          `fleet: ${brokerCount} broker(s), ${target} agents: sent ${sent}, acked ${acked}, consumed ${all.length}, → Kafka p50/p99 ${
            Math.round(ackP50)
          }/${Math.round(ackP99)} ms, → consumer p50/p99 ${Math.round(result.p50)}/${
            Math.round(p99)
          } ms (thirds ${Math.round(firstP50)} → ${
            Math.round(lastP50)
          }), sim late ${behind}, broker CPU ${result.cpu.join("/")} %, RSS ${
            result.rssMiB.join("/")
          } MiB, simulators ${simCpu} % (${sims.length}), runner (Kafka mock, consumer) ${runnerCpu} %, moved on ${movedOn}, connections retried ${retried} → ${
            why || "ok"
          }`,
        );
        arrivals.clear();
        if (!result.ok) break;
      }
    } finally {
      await subscription.close();
    }
  } finally {
    // Simulators first (their connections close with the process), then the brokers.
    await Promise.all(sims.map((s) => s.close()));
    for (const b of brokers) {
      try {
        b.child.kill("SIGTERM");
      } catch { /* exited */ }
    }
    for (const b of brokers) {
      const done = await Promise.race([b.status.then(() => true), sleep(15_000).then(() => false)]);
      if (!done) {
        try {
          b.child.kill("SIGKILL");
        } catch { /* exited */ }
        await b.status;
      }
    }
    await bus.close();
    mock.stop();
    await etcd.stop();
  }
  return results;
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const quick = ctx.quick;
  const stepMs = ctx.fleet?.stepS ? ctx.fleet.stepS * 1000 : quick ? 3000 : 15_000;
  const ladder = ctx.fleet?.agents ?? (quick ? [200, 400] : [2000, 4000, 7000, 10_000]);
  const rows: Row[] = [];
  const perBroker: Array<{ brokers: number; carried: number }> = [];
  for (const brokerCount of ctx.fleet?.brokers ?? [1, 2, 4]) {
    const steps = ladder.filter((n) => n <= brokerCount * DEFAULT_MAX_STREAMS);
    let results: StepResult[];
    try {
      results = await fleetRun(ctx, brokerCount, steps, stepMs, quick ? 1500 : 5000);
    } catch (error) {
      rows.push({
        scenario: SCENARIO,
        measure: `${brokerCount} broker(s): most agents carried`,
        unit: "agents",
        note: `could not run: ${(error as Error).message}`,
      });
      continue;
    }
    const good = results.filter((r) => r.ok);
    const best = good[good.length - 1];
    const fast = results.filter((r) => r.fast);
    const bestFast = fast[fast.length - 1];
    const failed = results.find((r) => !r.ok);
    const slowest = results.find((r) => r.ok && !r.fast);
    perBroker.push({ brokers: brokerCount, carried: best?.agents ?? 0 });
    const cap = brokerCount * DEFAULT_MAX_STREAMS < ladder[ladder.length - 1]
      ? `; broker.max_streams ${DEFAULT_MAX_STREAMS} caps ${brokerCount} broker(s) at ${
        brokerCount * DEFAULT_MAX_STREAMS
      }`
      : "";
    rows.push({
      scenario: SCENARIO,
      measure: `${brokerCount} broker process(es): most agents, no loss, no crash (1 sample/s)`,
      value: best?.agents ?? 0,
      unit: "agents",
      note: `steps ${steps.join("/")} of ${stepMs / 1000} s; ${
        failed ? `next step: ${failed.why}` : "the largest step held"
      }${cap}`,
    });
    rows.push({
      scenario: SCENARIO,
      measure: `${brokerCount} broker process(es): most agents with p99 sample → Kafka ≤ 1 s`,
      value: bestFast?.agents ?? 0,
      unit: "agents",
      note: slowest ? `next step: ${slowest.why}` : undefined,
    });
    for (const r of good) {
      const rate = r.consumed / (stepMs / 1000) / brokerCount;
      rows.push({
        scenario: SCENARIO,
        measure: `${brokerCount} broker(s), ${r.agents} agents: sample → Kafka p99`,
        value: Math.round(r.ackP99),
        unit: "ms",
        note: `p50 ${
          Math.round(r.ackP50)
        } ms (agent send → broker ack, sent after Kafka accepted); → consumer p50/p99 ${
          Math.round(r.p50)
        }/${Math.round(r.p99)} ms; ${r.consumed}/${r.sent} consumed; ${
          Math.round(rate)
        } samples/s per broker; broker CPU ${r.cpu.join("/")} % of a core (${
          Math.round(rate / (r.cpu.reduce((a, b) => a + b, 0) / r.cpu.length / 100))
        } samples per broker CPU-second), RSS ${
          r.rssMiB.join("/")
        } MiB; simulators ${r.simCpu} %, runner (Kafka mock, consumer) ${r.runnerCpu} %`,
      });
    }
  }
  const one = perBroker.find((p) => p.brokers === 1);
  const four = perBroker.find((p) => p.brokers === 4);
  if (one && four && one.carried > 0) {
    rows.push({
      scenario: SCENARIO,
      measure: "scaling 1 → 4 brokers (agents carried)",
      value: Math.round(four.carried / one.carried * 100) / 100,
      unit: "×",
      note: `${one.carried} → ${four.carried} agents; the ladder stops at ${
        ladder[ladder.length - 1]
      }`,
    });
  }
  return rows;
}

/** Scenario 8. */
export const fleetScenario: Scenario = { id: "fleet", title: SCENARIO, run };
