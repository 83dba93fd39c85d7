/**
 * Test fixture: a real broker on loopback with the real embedded bus (behind
 * a {@linkcode GatedBus}) and the real embedded store, in a fresh state
 * directory. Not product code.
 *
 * @module
 */
import { openBus } from "../services/bus/mod.ts";
import { type Broker, type BrokerOptions, startBroker } from "../services/broker/mod.ts";
import { openStore, type Store, type StoreSettings } from "../services/store/mod.ts";
import { embeddedPath, GatedBus, tempDir } from "./broker_support.ts";

/** What a test gets. */
export interface BrokerFixture {
  broker: Broker;
  bus: GatedBus;
  store: Store;
  dir: string;
  /** Admin API base URL. */
  adminUrl: string;
  /** Opens another client of the same store, as another process would (closed afterwards). */
  openAnotherStore(): Promise<Store>;
}

/** Runs `fn` with a fresh broker; everything is closed afterwards. */
export async function withBroker(
  options: Partial<Omit<BrokerOptions, "bus" | "store">> & {
    /** Runs before the broker starts (to seed keys, or to hold the bus). */
    beforeStart?: (store: Store, bus: GatedBus) => Promise<void>;
  },
  fn: (fixture: BrokerFixture) => Promise<void>,
): Promise<void> {
  const { beforeStart, ...brokerOptions } = options;
  const dir = await tempDir();
  const storeSettings: StoreSettings = {
    backend: "embedded",
    endpoints: [],
    prefix: "/monitor",
    path: embeddedPath(dir),
  };
  const stores: Store[] = [];
  const openAnotherStore = async () => {
    const store = await openStore(storeSettings);
    stores.push(store);
    return store;
  };
  let bus: GatedBus | undefined;
  let broker: Broker | undefined;
  try {
    const store = await openAnotherStore();
    bus = new GatedBus(
      await openBus({
        backend: "embedded",
        brokers: [],
        path: embeddedPath(dir),
        group: { sessionTimeoutMs: 2000, heartbeatIntervalMs: 500 },
      }),
    );
    await beforeStart?.(store, bus);
    broker = await startBroker({
      listen: "127.0.0.1:0",
      admin: "127.0.0.1:0",
      ...brokerOptions,
      bus,
      store,
    });
    await fn({
      broker,
      bus,
      store,
      dir,
      adminUrl: `http://${broker.adminAddress}`,
      openAnotherStore,
    });
  } finally {
    await broker?.stop();
    await bus?.close();
    for (const store of stores) await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}
