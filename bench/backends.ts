/**
 * Backends and a broker for the benchmarks: the librdkafka mock cluster
 * (tests/harness/kafka_mock.ts, through FFI: the reason the bench task has
 * --allow-ffi), the embedded bus and store in a temporary directory, and an
 * in-process broker on a free loopback port.
 *
 * @module
 */
import { join } from "node:path";
import { type Broker, startBroker } from "../services/broker/mod.ts";
import { type Bus, type BusMessage, type GroupTiming, openBus } from "../services/bus/mod.ts";
import { DEFAULT_STORE_PREFIX, openStore, type Store } from "../services/store/mod.ts";
import { type KafkaMock, startKafkaMock } from "../tests/harness/mod.ts";
import { type AgentSim, startAgentSim } from "./sim_client.ts";
import type { BenchContext } from "./support.ts";

export type { KafkaMock };

/** Starts a 3-broker Kafka mock cluster (errors-only logging). */
export function kafkaMock(): Promise<KafkaMock> {
  return startKafkaMock({ brokers: 3 });
}

/** Opens the kafka bus on the mock cluster (consumer-group timing as given, else the defaults). */
export function kafkaBus(mock: KafkaMock, clientId: string, group?: GroupTiming): Promise<Bus> {
  return openBus({ backend: "kafka", brokers: mock.bootstrap, path: "", clientId, group });
}

/** Opens the embedded bus in `dir` (one SQLite file, `monitor.db`). */
export function embeddedBus(dir: string): Promise<Bus> {
  return openBus({ backend: "embedded", brokers: [], path: join(dir, "monitor.db") });
}

/** Opens the embedded store in `dir`. */
export function embeddedStore(dir: string): Promise<Store> {
  return openStore({
    backend: "embedded",
    endpoints: [],
    prefix: DEFAULT_STORE_PREFIX,
    path: join(dir, "monitor.db"),
  });
}

/** Opens the etcd store at `endpoint`. */
export function etcdStore(endpoint: string): Promise<Store> {
  return openStore({
    backend: "etcd",
    endpoints: [endpoint],
    prefix: DEFAULT_STORE_PREFIX,
    path: "",
  });
}

/** Starts a broker on a free loopback port without the admin API. */
export function benchBroker(bus: Bus, store: Store): Promise<Broker> {
  return startBroker({
    listen: "127.0.0.1:0",
    admin: false,
    bus,
    store,
    commandsGroup: `bench-broker-${crypto.randomUUID().slice(0, 8)}`,
  });
}

/** What {@linkcode withBrokerRig} sets up. */
export interface BrokerRigOptions {
  /** Prefix of the temporary directory of the embedded store. */
  tempPrefix: string;
  /** Consumer-group timing of the broker's bus (the defaults when absent). */
  brokerGroup?: GroupTiming;
  /** Client id and consumer-group timing of the second bus, the consumer's. */
  consumer: { clientId: string; group: GroupTiming };
  /** Topic, group and handler of the consumer's subscription (new messages only). */
  subscribe: { topic: string; group: string; handler: (message: BusMessage) => void };
  /** Simulated agents connected before `body` runs, and their id prefix. */
  agents: number;
  agentPrefix: string;
}

/** The running pieces {@linkcode withBrokerRig} hands to its body. */
export interface BrokerRig {
  /** The simulator process, its first `agents` streams connected to `broker`. */
  sim: AgentSim;
  /** The broker's gRPC address (127.0.0.1:port). */
  address: string;
  /** The consumer's bus (to publish on, as the analysis application does). */
  bus: Bus;
}

/**
 * Kafka mock cluster, a broker on its own bus over the embedded store, a
 * consumer subscribed through a second bus and the agent simulator with
 * `agents` streams connected; runs `body`, then stops everything in reverse
 * order however it ends. The consumer's group join, the broker's start (its
 * own join) and connecting the agents overlap: each join takes seconds on the
 * mock cluster.
 */
export async function withBrokerRig<T>(
  ctx: BenchContext,
  options: BrokerRigOptions,
  body: (rig: BrokerRig) => Promise<T>,
): Promise<T> {
  const sim = startAgentSim();
  const mock = await kafkaMock();
  let brokerBus: Bus | undefined;
  let bus: Bus | undefined;
  try {
    brokerBus = await kafkaBus(mock, "bench-broker", options.brokerGroup);
    bus = await kafkaBus(mock, options.consumer.clientId, options.consumer.group);
    const store = await embeddedStore(await ctx.tempDir(options.tempPrefix));
    const subscribing = bus.subscribe({
      topics: [options.subscribe.topic],
      group: options.subscribe.group,
      fromBeginning: false,
      handler: options.subscribe.handler,
    });
    const broker = await benchBroker(brokerBus, store).catch(async (error) => {
      await subscribing.then((s) => s.close(), () => {});
      await store.close();
      throw error;
    });
    const connecting = sim.request(
      {
        op: "connect",
        address: broker.address,
        count: options.agents,
        prefix: options.agentPrefix,
      },
      120_000,
    );
    connecting.catch(() => {}); // awaited below; not unhandled when subscribing fails first
    try {
      await subscribing;
      await connecting;
      return await body({ sim, address: broker.address, bus });
    } finally {
      // Also when subscribing or connecting failed: nothing is left open.
      await sim.close();
      await subscribing.then((s) => s.close(), () => {});
      await broker.stop();
      await store.close();
    }
  } finally {
    await sim.close();
    await bus?.close();
    await brokerBus?.close();
    mock.stop();
  }
}
