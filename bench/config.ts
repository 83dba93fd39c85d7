/**
 * Scenario 4: configuration propagation and dead-agent detection, on a real
 * etcd (tests/harness/etcd.ts) and on the embedded store.
 *
 * - Propagation: a `put` of an agent's configuration key until the running
 *   agent (startAgent, each with its own store connection) has applied it,
 *   seen through its heartbeat's `config_revision`, polled every millisecond.
 *   These agents are given no broker (an unused port): the path measured is
 *   store → agent only.
 * - Detection: a real agent process is killed (SIGKILL) and the broker's
 *   health view is polled until it reports the agent dead, which happens when
 *   its heartbeat lease expires.
 *
 * @module
 */
import { type AgentHandle, startAgent } from "../services/agent/mod.ts";
import { setLogLevel } from "../services/common/log.ts";
import { sleep, waitUntil } from "../services/common/async.ts";
import { storeKeys } from "../services/store/keys.ts";
import type { Store } from "../services/store/mod.ts";
import { freePort, startEtcd } from "../tests/harness/mod.ts";
import { type AgentStoreSpec, startAgentProcess } from "./agent_process.ts";
import { benchBroker, embeddedBus, embeddedStore, etcdStore } from "./backends.ts";
import { type BenchContext, median, percentile, type Row, type Scenario } from "./support.ts";

const KEYS = storeKeys();

interface Backend {
  label: string;
  open(): Promise<Store>;
  agentStore: AgentStoreSpec;
  close(): Promise<void>;
}

async function propagation(
  ctx: BenchContext,
  backend: Backend,
  agents: number,
  puts: number,
): Promise<number[]> {
  const writer = await backend.open();
  const handles: AgentHandle[] = [];
  const stores: Store[] = [];
  const noBroker = `127.0.0.1:${freePort()}`;
  const times: number[] = [];
  try {
    for (let i = 0; i < agents; i++) {
      const id = `cfg-${i}`;
      await writer.put(KEYS.config(id), JSON.stringify({ interval: 30, metrics: ["cpu"] }));
      const store = await backend.open();
      stores.push(store);
      handles.push(
        await startAgent({
          agentId: id,
          hostname: `${id}.bench`,
          store,
          broker: noBroker,
          applyLogLevel: false,
          backoff: { initialMs: 30_000, maxMs: 30_000 },
        }),
      );
    }
    for (let n = 0; n < puts; n++) {
      const agent = handles[n % agents];
      const started = performance.now();
      const revision = await writer.put(
        KEYS.config(agent.agentId),
        JSON.stringify({ interval: 30 + (n % 2), metrics: ["cpu"] }),
      );
      await waitUntil(
        () => agent.heartbeat().config_revision >= revision,
        10_000,
        `agent ${agent.agentId} to apply revision ${revision} (${backend.label})`,
        { intervalMs: 1 },
      );
      times.push(performance.now() - started);
      await sleep(20);
    }
  } finally {
    for (const handle of handles) await handle.stop().catch(() => {});
    for (const store of stores) await store.close().catch(() => {});
    await writer.close();
  }
  ctx.progress(
    `config ${backend.label}: put → applied p50 ${median(times).toFixed(1)} ms over ${puts} puts`,
  );
  return times;
}

async function detection(
  ctx: BenchContext,
  backend: Backend,
  ttl: number,
): Promise<number> {
  const store = await backend.open();
  const busDir = await ctx.tempDir("bench-config-bus-");
  const bus = await embeddedBus(busDir);
  const broker = await benchBroker(bus, store);
  const id = `dead-${backend.label}`;
  await store.put(
    KEYS.config(id),
    JSON.stringify({ interval: 5, metrics: ["cpu"], heartbeat_ttl: ttl }),
  );
  const agent = startAgentProcess(broker.address, id, backend.agentStore, ["cpu"]);
  try {
    await agent.ready(30_000);
    await waitUntil(
      () => broker.health().find((h) => h.agent_id === id && h.status === "alive"),
      15_000,
      `broker to see ${id} alive (${backend.label})`,
    );
    // Let the broker's stream and heartbeat view settle.
    await sleep(500);
    await agent.kill();
    const killed = performance.now();
    await waitUntil(
      () => broker.health().find((h) => h.agent_id === id && h.status === "dead"),
      ttl * 3000 + 15_000,
      `broker to report ${id} dead (${backend.label})`,
      { intervalMs: 10 },
    );
    const seconds = (performance.now() - killed) / 1000;
    ctx.progress(
      `config ${backend.label}: killed agent reported dead after ${seconds.toFixed(2)} s`,
    );
    return seconds;
  } finally {
    await agent.kill();
    await broker.stop();
    await bus.close();
    await store.close();
  }
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const agents = ctx.quick ? 3 : 10;
  const puts = ctx.quick ? 10 : 50;
  // Quick: the shortest TTL a configuration may set; full: the default.
  const ttl = ctx.quick ? 2 : 10;
  const scenario = "4 config";
  const rows: Row[] = [];
  // The agents without a broker warn on every reconnect attempt.
  setLogLevel("error");
  try {
    // Without etcd installed, the embedded figures are still measured; the table says why not etcd.
    const etcd = await startEtcd().catch((error: Error) => {
      ctx.progress(`config: no etcd: ${error.message}`);
      rows.push({ scenario, measure: "etcd", unit: "", note: `not measured: ${error.message}` });
      return undefined;
    });
    const etcdState = await ctx.tempDir("bench-config-etcd-agent-");
    const dir = await ctx.tempDir("bench-config-embedded-");
    const backends: Backend[] = [
      ...(etcd
        ? [{
          label: "etcd",
          open: () => etcdStore(etcd.endpoint),
          agentStore: {
            backend: "etcd" as const,
            endpoint: etcd.endpoint,
            stateDir: etcdState,
          },
          close: () => etcd.stop(),
        }]
        : []),
      {
        label: "embedded",
        open: () => embeddedStore(dir),
        agentStore: { backend: "embedded", dir },
        close: () => Promise.resolve(),
      },
    ];
    try {
      for (const backend of backends) {
        const times = await propagation(ctx, backend, agents, puts);
        rows.push(
          {
            scenario,
            measure: `put → agent applied, ${backend.label}: p50`,
            value: median(times),
            unit: "ms",
            note:
              `${puts} puts round-robin over ${agents} running agents (own store connection each)`,
          },
          {
            scenario,
            measure: `put → agent applied, ${backend.label}: p99`,
            value: percentile(times, 99),
            unit: "ms",
          },
        );
      }
      for (const backend of backends) {
        const seconds = await detection(ctx, backend, ttl);
        rows.push({
          scenario,
          measure: `dead-agent detection after kill -9, ${backend.label}`,
          value: seconds,
          unit: "s",
          note: `heartbeat TTL ${ttl} s${
            ctx.quick ? " (the minimum; the default is 10 s)" : " (the default)"
          }; real agent process; broker health view`,
        });
      }
    } finally {
      for (const backend of backends) await backend.close();
    }
  } finally {
    setLogLevel("warn");
  }
  return rows;
}

/** Scenario 4. */
export const configScenario: Scenario = { id: "config", title: "4 config", run };
