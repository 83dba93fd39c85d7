import assert from "node:assert/strict";
import { join } from "node:path";
import { getLogger } from "../common/log.ts";
import { openStore, type Store, storeKeys } from "../store/mod.ts";
import { Fleet, type HeldSession, SESSION_WRITES_IN_FLIGHT } from "./fleet.ts";

/** The real embedded store, its leases' puts counted while they run. */
function countingStore(store: Store) {
  const counts = { running: 0, most: 0, puts: 0 };
  const lease = async (ttl: number) => {
    const real = await store.lease(ttl);
    return {
      get id() {
        return real.id;
      },
      ttl: real.ttl,
      revoke: () => real.revoke(),
      onLost: (listener: (error: Error) => void) => real.onLost(listener),
      async put(key: string, value: string) {
        counts.running++;
        counts.puts++;
        counts.most = Math.max(counts.most, counts.running);
        try {
          // A store call that takes a while, as one over the network does.
          await new Promise((resolve) => setTimeout(resolve, 2));
          return await real.put(key, value);
        } finally {
          counts.running--;
        }
      },
    };
  };
  // Every other call goes to the real store (its methods bound: it has private fields).
  const wrapped = new Proxy(store, {
    get(target, name) {
      if (name === "lease") return lease;
      const value = Reflect.get(target, name, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { wrapped, counts };
}

Deno.test("fleet: a burst of agents connecting keeps at most SESSION_WRITES_IN_FLIGHT session-key writes running, and every key is written", async () => {
  const dir = await Deno.makeTempDir({ prefix: "monitor-fleet-" });
  const store = await openStore({
    backend: "embedded",
    endpoints: [],
    prefix: "/monitor",
    path: join(dir, "monitor.db"),
  });
  const { wrapped, counts } = countingStore(store);
  const sessions = new Map<string, HeldSession>();
  const agents = SESSION_WRITES_IN_FLIGHT * 4 + 7;
  for (let i = 0; i < agents; i++) {
    const agentId = `burst-${i}`;
    sessions.set(agentId, {
      agentId,
      hostname: "h",
      version: "v",
      peer: "127.0.0.1:1",
      connectedAt: Date.now(),
    });
  }
  const fleet = await Fleet.start({
    store: wrapped,
    prefix: "/monitor",
    brokerId: "b1",
    address: "127.0.0.1:50052",
    holds: (id) => sessions.get(id),
    onConflict: () => {},
    log: getLogger("fleet-test"),
  });
  try {
    await Promise.all([...sessions.values()].map((s) => fleet.held(s)));
    assert.ok(counts.most <= SESSION_WRITES_IN_FLIGHT, `at most ${counts.most} at once`);
    assert.ok(counts.most > 1, "writes still run concurrently");
    const listed = await store.list(storeKeys("/monitor").sessionPrefix);
    assert.equal(listed.items.length, agents);
  } finally {
    await fleet.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
