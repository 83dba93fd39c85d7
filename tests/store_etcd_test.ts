/**
 * The Store contract suite against a real etcd (Debian etcd-server, started
 * per test on free loopback ports by tests/harness/etcd.ts), plus the etcd
 * backend's own tests: etcd restarted in the middle of a watch, a lease
 * revoked behind the store's back, calls during an outage. Everything runs
 * twice: with the etcd3 client (the default) and with the HTTP/JSON gateway
 * client (`{ etcd: { client: "http" } }`, the agent's).
 */
import assert from "node:assert/strict";
import { waitUntil } from "../services/common/async.ts";
import { storeContract } from "./harness/store_contract.ts";
import {
  openStore,
  type OpenStoreOptions,
  type Store,
  storePermissionFlags,
  type StoreSettings,
  StoreUnavailableError,
  type WatchEvent,
} from "../services/store/mod.ts";
import { type EtcdServer, startEtcd } from "./harness/etcd.ts";
import { freePort } from "./harness/free_port.ts";

/** Longest wait for an expected event (ms). */
const WAIT_MS = 30000;

function settingsFor(etcd: EtcdServer, connectTimeoutMs = 5000): StoreSettings {
  return {
    backend: "etcd",
    endpoints: [etcd.endpoint],
    prefix: "/monitor",
    path: "",
    connectTimeoutMs,
  };
}

function describe(events: WatchEvent[]): string {
  return events.map((e) => `${e.type} ${e.key}@${e.revision}`).join(", ");
}

/** Registers every etcd test for one client. */
function etcdTests(label: string, openOptions: OpenStoreOptions): void {
  /** Runs `fn` with a fresh etcd and stores opened on it; everything is closed afterwards. */
  async function withEtcdStores(
    fn: (etcd: EtcdServer, open: (connectTimeoutMs?: number) => Promise<Store>) => Promise<void>,
  ): Promise<void> {
    const etcd = await startEtcd();
    const stores: Store[] = [];
    try {
      await fn(etcd, async (timeout) => {
        const store = await openStore(settingsFor(etcd, timeout), openOptions);
        stores.push(store);
        return store;
      });
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await etcd.stop();
    }
  }

  storeContract(label, async () => {
    const etcd = await startEtcd();
    const settings = settingsFor(etcd);
    const stores: Store[] = [];
    const openAnother = async () => {
      const store = await openStore(settings, openOptions);
      stores.push(store);
      return store;
    };
    try {
      const store = await openAnother();
      return {
        store,
        settings,
        openAnother,
        compact: async (revision) => {
          await etcd.etcdctl("compact", String(revision));
        },
        cleanup: async () => {
          await Promise.all(stores.map((s) => s.close()));
          await etcd.stop();
        },
      };
    } catch (error) {
      await etcd.stop();
      throw error;
    }
  }, {
    childPermissions: (settings) => storePermissionFlags(settings, openOptions),
    openOptions,
    unreachable: () => {
      // A free port nobody listens on.
      const endpoint = `127.0.0.1:${freePort()}`;
      return Promise.resolve({
        settings: {
          backend: "etcd",
          endpoints: [endpoint],
          prefix: "/monitor",
          path: "",
          connectTimeoutMs: 1500,
        },
        endpoint,
        cleanup: () => Promise.resolve(),
      });
    },
  });

  Deno.test(`${label} store: a watch resumes after etcd restarts, missing and repeating nothing`, async () => {
    await withEtcdStores(async (etcd, open) => {
      const reader = await open();
      const writer = await open(20000);
      const events: WatchEvent[] = [];
      const watcher = await reader.watch("/r/", {}, (e) => {
        events.push(e);
      });
      try {
        const revisions: number[] = [];
        for (let i = 0; i < 20; i++) revisions.push(await writer.put(`/r/k-${i % 3}`, `v-${i}`));
        await waitUntil(() => events.length === 20, WAIT_MS, "the first 20 events");

        await etcd.down();
        await new Promise((r) => setTimeout(r, 1500));
        await etcd.up();
        // Written as soon as etcd is back: the watch must pick these up from its last revision.
        for (let i = 20; i < 40; i++) revisions.push(await writer.put(`/r/k-${i % 3}`, `v-${i}`));
        revisions.push(await writer.delete("/r/k-0") ? -1 : 0);

        await waitUntil(() => events.length >= 41, WAIT_MS, "41 events", {
          detail: () => describe(events),
        });
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(events.length, 41, describe(events));
        assert.deepEqual(
          events.slice(0, 40).map((e) => e.type === "put" ? e.value : "?"),
          Array.from({ length: 40 }, (_, i) => `v-${i}`),
        );
        assert.deepEqual(events.slice(0, 40).map((e) => e.revision), revisions.slice(0, 40));
        assert.equal(events[40].type, "delete");
        assert.ok(events[40].revision > events[39].revision);
      } finally {
        await watcher.close();
      }
    });
  });

  Deno.test(`${label} store: a watch that catches up after a restart does not skip a long backlog`, async () => {
    await withEtcdStores(async (etcd, open) => {
      const reader = await open();
      const writer = await open(20000);
      const start = await writer.put("/b/start", "0");
      // A backlog larger than etcd sends in one response (1000 revisions per batch).
      for (let i = 0; i < 2500; i++) await writer.put(`/b/k-${i % 10}`, `v-${i}`);
      const events: WatchEvent[] = [];
      let restarted = false;
      const watcher = await reader.watch("/b/", { fromRevision: start }, async (e) => {
        events.push(e);
        // Restart etcd while the watch is still replaying the backlog.
        if (events.length === 300 && !restarted) {
          restarted = true;
          await etcd.down();
          await etcd.up();
        }
      });
      try {
        await waitUntil(() => events.length >= 2501, 60000, "the whole backlog", {
          detail: () => `${events.length} events`,
        });
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(events.length, 2501);
        events.forEach((e, i) => assert.equal(e.revision, start + i));
        assert.ok(restarted);
      } finally {
        await watcher.close();
      }
    });
  });

  Deno.test(`${label} store: a lease revoked behind the store's back is re-established with its keys`, async () => {
    await withEtcdStores(async (etcd, open) => {
      const store = await open();
      const events: WatchEvent[] = [];
      const watcher = await store.watch("/l/", {}, (e) => {
        events.push(e);
      });
      try {
        const lease = await store.lease(2);
        const losses: Error[] = [];
        lease.onLost((e) => losses.push(e));
        await lease.put("/l/heartbeat", "alive");
        await lease.put("/l/second", "also");
        const first = lease.id;
        await etcd.etcdctl("lease", "revoke", BigInt(first).toString(16));
        await waitUntil(() => losses.length === 1, WAIT_MS, "onLost", {
          detail: () => describe(events),
        });
        assert.notEqual(lease.id, first);
        assert.match(losses[0].message, new RegExp(`lease ${first} was lost`));
        await waitUntil(
          () => events.filter((e) => e.type === "put").length === 4,
          WAIT_MS,
          "the re-puts",
          { detail: () => describe(events) },
        );
        assert.deepEqual(events.map((e) => `${e.type} ${e.key}`).sort(), [
          "delete /l/heartbeat",
          "delete /l/second",
          "put /l/heartbeat",
          "put /l/heartbeat",
          "put /l/second",
          "put /l/second",
        ]);
        for (const key of ["/l/heartbeat", "/l/second"]) {
          assert.equal((await store.get(key))?.lease, lease.id);
        }
        // The new lease is kept alive too.
        await new Promise((r) => setTimeout(r, 3000));
        assert.equal((await store.get("/l/heartbeat"))?.value, "alive");
        assert.equal(losses.length, 1);
        await lease.revoke();
        assert.equal(await store.get("/l/heartbeat"), undefined);
      } finally {
        await watcher.close();
      }
    });
  });

  Deno.test(`${label} store: a lease survives a short etcd restart; its keep-alive resumes`, async () => {
    await withEtcdStores(async (etcd, open) => {
      const store = await open(20000);
      const lease = await store.lease(4);
      const losses: Error[] = [];
      lease.onLost((e) => losses.push(e));
      await lease.put("/s/heartbeat", "alive");
      await etcd.down();
      await etcd.up();
      // Well past the TTL: only a working keep-alive keeps the key.
      await new Promise((r) => setTimeout(r, 6000));
      assert.equal((await store.get("/s/heartbeat"))?.value, "alive");
      assert.deepEqual(losses, []);
      await lease.revoke();
    });
  });

  Deno.test(`${label} store: calls during an outage fail naming the endpoint, then work again`, async () => {
    await withEtcdStores(async (etcd, open) => {
      const store = await open(1500);
      await store.put("/o/a", "1");
      await etcd.down();
      await assert.rejects(store.put("/o/b", "2"), (error: unknown) => {
        assert.ok(error instanceof StoreUnavailableError, `got ${error}`);
        assert.ok(error.message.includes(etcd.endpoint), error.message);
        assert.match(error.message, /put "\/o\/b"/);
        return true;
      });
      await assert.rejects(store.get("/o/a"), StoreUnavailableError);
      await etcd.up();
      assert.equal((await store.get("/o/a"))?.value, "1");
      await store.put("/o/b", "2");
      assert.equal((await store.list("/o/")).items.length, 2);
    });
  });

  Deno.test(`${label} store: bad endpoints are refused with an error naming the setting`, async () => {
    await assert.rejects(
      openStore({ backend: "etcd", endpoints: [], prefix: "/monitor", path: "" }, openOptions),
      /store.endpoints: the etcd backend needs at least one endpoint/,
    );
    await assert.rejects(
      openStore(
        { backend: "etcd", endpoints: ["no-port"], prefix: "/monitor", path: "" },
        openOptions,
      ),
      /store.endpoints\[0\]: expected "host:port"/,
    );
  });
}

etcdTests("etcd", {});
etcdTests("etcd http", { etcd: { client: "http" } });
