/**
 * Test fixture: a real broker on loopback with the real embedded bus (behind
 * a {@linkcode GatedBus}) and a store. Not product code.
 *
 * @module
 */
import { openBus } from "../services/bus/mod.ts";
import { type Broker, type BrokerOptions, startBroker } from "../services/broker/mod.ts";
import type { Store } from "../services/store/types.ts";
import { embeddedPath, GatedBus, MemoryStore, tempDir } from "./broker_support.ts";

/** What a test gets. */
export interface BrokerFixture {
  broker: Broker;
  bus: GatedBus;
  store: Store;
  dir: string;
  /** Admin API base URL. */
  adminUrl: string;
}

/** Runs `fn` with a fresh broker; everything is closed afterwards. */
export async function withBroker(
  options: Partial<Omit<BrokerOptions, "bus" | "store">> & { store?: Store },
  fn: (fixture: BrokerFixture) => Promise<void>,
): Promise<void> {
  const dir = await tempDir();
  const inner = await openBus({
    backend: "embedded",
    brokers: [],
    path: embeddedPath(dir),
    group: { sessionTimeoutMs: 2000, heartbeatIntervalMs: 500 },
  });
  const bus = new GatedBus(inner);
  const store = options.store ?? new MemoryStore();
  let broker: Broker | undefined;
  try {
    broker = await startBroker({
      listen: "127.0.0.1:0",
      admin: "127.0.0.1:0",
      ...options,
      bus,
      store,
    });
    await fn({ broker, bus, store, dir, adminUrl: `http://${broker.adminAddress}` });
  } finally {
    await broker?.stop();
    await bus.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}
