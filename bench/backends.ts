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
import { type Bus, type GroupTiming, openBus } from "../services/bus/mod.ts";
import { openStore, type Store } from "../services/store/mod.ts";
import { type KafkaMock, startKafkaMock } from "../tests/harness/kafka_mock.ts";

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
    prefix: "/monitor",
    path: join(dir, "monitor.db"),
  });
}

/** Opens the etcd store at `endpoint`. */
export function etcdStore(endpoint: string): Promise<Store> {
  return openStore({ backend: "etcd", endpoints: [endpoint], prefix: "/monitor", path: "" });
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
