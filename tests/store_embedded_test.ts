/**
 * The Store contract suite on the embedded (SQLite) backend, plus its own
 * tests: automatic compaction, expiry noticed by another process, sharing
 * the file with the embedded Bus, reopening.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { waitUntil } from "../services/common/async.ts";
import { DenoLineProcess } from "./harness/line_process.ts";
import { storeContract } from "./harness/store_contract.ts";
import { type EmbeddedStore, openEmbeddedStore } from "../services/store/embedded.ts";
import { DatabaseSync } from "node:sqlite";
import { openBus } from "../services/bus/mod.ts";
import {
  openStore,
  type Store,
  StoreCompactedError,
  storePermissionFlags,
  type StoreSettings,
  type WatchEvent,
} from "../services/store/mod.ts";

/** Longest wait for an expected event (ms). */
const WAIT_MS = 30000;

function settingsIn(dir: string): StoreSettings {
  return { backend: "embedded", endpoints: [], prefix: "/monitor", path: join(dir, "monitor.db") };
}

storeContract("embedded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-embedded-" });
  const settings = settingsIn(dir);
  const stores: Store[] = [];
  const openAnother = async () => {
    const store = await openStore(settings);
    stores.push(store);
    return store;
  };
  const store = await openAnother();
  return {
    store,
    settings,
    openAnother,
    compact: async (revision) => {
      await (store as EmbeddedStore).compact(revision);
    },
    cleanup: async () => {
      await Promise.all(stores.map((s) => s.close()));
      await Deno.remove(dir, { recursive: true });
    },
  };
}, {
  childPermissions: storePermissionFlags,
  unreachable: async () => {
    // The parent of the database path is a regular file: the file cannot be created.
    const file = await Deno.makeTempFile({ prefix: "store-not-a-dir-" });
    const path = join(file, "monitor.db");
    return {
      settings: { backend: "embedded", endpoints: [], prefix: "/monitor", path },
      endpoint: path,
      cleanup: () => Deno.remove(file),
    };
  },
});

/** Runs store_contract_child.ts in another process; returns it with a line reader. */
function spawnChild(settings: StoreSettings, args: string[]) {
  const child = new DenoLineProcess([
    "run",
    "--quiet",
    "--config",
    new URL("../deno.json", import.meta.url).pathname,
    ...storePermissionFlags(settings),
    new URL("./harness/store_contract_child.ts", import.meta.url).pathname,
    args[0],
    JSON.stringify(settings),
    "{}",
    ...args.slice(1),
  ]);
  return {
    lines: child.lines,
    kill: () => child.signal("SIGKILL"),
    done: async () => {
      try {
        child.signal("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await child.stdoutDone;
      return await child.stderr;
    },
  };
}

Deno.test("embedded store: the change log is compacted; watches behind it fail clearly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-embedded-" });
  const store = await openEmbeddedStore(settingsIn(dir), {
    historyRevisions: 5,
    historyMs: 0,
    compactIntervalMs: 0,
  });
  try {
    for (let i = 1; i <= 20; i++) assert.equal(await store.put(`/c/k-${i}`, `v-${i}`), i);
    // Revisions 16..20 are kept (the last 5), older ones are gone.
    await assert.rejects(store.watch("/c/", { fromRevision: 1 }, () => {}), (e: unknown) => {
      assert.ok(e instanceof StoreCompactedError);
      assert.equal(e.compactRevision, 16);
      assert.match(
        e.message,
        /watch "\/c\/" from revision 1: that revision was compacted; the oldest revision available is 16/,
      );
      return true;
    });
    const kept: WatchEvent[] = [];
    const w = await store.watch("/c/", { fromRevision: 16 }, (e) => {
      kept.push(e);
    });
    await waitUntil(() => kept.length === 5, WAIT_MS, "the 5 kept events");
    await w.close();
    assert.deepEqual(kept.map((e) => e.revision), [16, 17, 18, 19, 20]);

    // A watch whose handler is stuck falls behind the compaction: it stops with onError.
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    const errors: Error[] = [];
    const seen: number[] = [];
    const stuck = await store.watch("/c/", {
      fromRevision: 20,
      onError: (e) => errors.push(e),
    }, async (e) => {
      seen.push(e.revision);
      await gate;
    });
    await waitUntil(() => seen.length === 1, WAIT_MS, "the stuck handler's first event");
    for (let i = 0; i < 600; i++) await store.put(`/c/more-${i % 3}`, `m-${i}`);
    release();
    await waitUntil(() => errors.length === 1, WAIT_MS, "onError");
    assert.ok(errors[0] instanceof StoreCompactedError);
    await stuck.close();
    assert.ok(seen.length < 601, "the watch stopped instead of skipping history");
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("embedded store: a killed process's lease expires; readers without watches reap it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-embedded-" });
  const settings = settingsIn(dir);
  const store = await openStore(settings);
  const child = spawnChild(settings, ["lease", "/hb/agent-1", "1"]);
  try {
    await waitUntil(
      () => child.lines.some((l) => l.startsWith("ready ")),
      WAIT_MS,
      "the child's lease",
    );
    const alive = await store.get("/hb/agent-1");
    assert.equal(alive?.value, "alive");
    child.kill();
    // No watch is open in this process: the expired lease is reaped by the reads themselves.
    let gone = false;
    const deadline = Date.now() + 30000;
    while (!gone && Date.now() < deadline) {
      gone = (await store.get("/hb/agent-1")) === undefined;
      if (!gone) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(gone, "the key of the dead process's lease was deleted");
    // The delete is in the change log, so a watch replaying history sees it.
    const events: WatchEvent[] = [];
    const w = await store.watch("/hb/", { fromRevision: alive!.modRevision }, (e) => {
      events.push(e);
    });
    await waitUntil(() => events.length === 2, WAIT_MS, "put and delete");
    await w.close();
    assert.deepEqual(events.map((e) => e.type), ["put", "delete"]);
  } finally {
    await child.done();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("embedded store: shares its file with the embedded bus; reopening keeps everything", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-embedded-" });
  const settings = settingsIn(dir);
  let store = await openStore(settings);
  const bus = await openBus({ backend: "embedded", brokers: [], path: settings.path });
  try {
    const r1 = await store.put("/monitor/config/default", '{"interval": 5}');
    await bus.publish("monitoring-data", [{ key: "a", value: "{}" }]);
    const r2 = await store.put("/monitor/config/web-1", '{"interval": 1}');
    assert.equal(r2, r1 + 1);
    await store.close();
    store = await openStore(settings);
    assert.equal((await store.get("/monitor/config/default"))?.value, '{"interval": 5}');
    assert.equal(await store.put("/monitor/config/web-2", "{}"), r2 + 1);
    const db = new DatabaseSync(settings.path, { readOnly: true });
    try {
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
        name: string;
      }[]).map((t) => t.name);
      const mine = tables.filter((t) => t.startsWith("store_")).sort();
      assert.deepEqual(mine, ["store_events", "store_keys", "store_leases", "store_meta"]);
      assert.ok(tables.some((t) => t.startsWith("bus_")), `bus tables too: ${tables}`);
    } finally {
      db.close();
    }
  } finally {
    await bus.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("embedded store: watchFiles false polls; another connection's commit reaches a watch, bad options are refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-embedded-" });
  const settings = settingsIn(dir);
  const writer = await openStore(settings);
  // The agent's way (services/agent/permissions.ts agentStoreOptions), with a shorter poll.
  const quiet = await openStore(settings, { embedded: { watchFiles: false, pollIntervalMs: 100 } });
  const bus = await openBus({ backend: "embedded", brokers: [], path: settings.path });
  const seen: WatchEvent[] = [];
  const watcher = await quiet.watch("/monitor/config/", {}, (event) => {
    seen.push(event);
  });
  try {
    await bus.publish("monitoring-data", [{ key: "a", value: "{}" }]);
    const revision = await writer.put("/monitor/config/web-1", '{"interval": 1}');
    await waitUntil(() => seen.length > 0, WAIT_MS, "the polled watch to see the commit");
    assert.deepEqual(
      seen.map((e) => [e.type, e.key, e.type === "put" ? e.value : undefined, e.revision]),
      [["put", "/monitor/config/web-1", '{"interval": 1}', revision]],
    );
    await assert.rejects(
      openEmbeddedStore(settings, { watchFiles: "no" as unknown as boolean }),
      (error: Error) =>
        error instanceof TypeError && /watchFiles must be true or false/.test(error.message),
    );
  } finally {
    await watcher.close();
    await bus.close();
    await quiet.close();
    await writer.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("embedded store: with an every hook the change checks and keep-alives run on the caller's timer", async () => {
  const dir = await Deno.makeTempDir({ prefix: "store-embedded-" });
  const settings = settingsIn(dir);
  const writer = await openStore(settings);
  const polls: Array<{ check: () => void; periodMs: number; stopped: boolean }> = [];
  const quiet = await openStore(settings, {
    embedded: {
      watchFiles: false,
      pollIntervalMs: 700,
      every: (check, periodMs) => {
        const entry = { check, periodMs, stopped: false };
        polls.push(entry);
        return () => entry.stopped = true;
      },
    },
  });
  const seen: string[] = [];
  const watcher = await quiet.watch("/monitor/config/", {}, (event) => {
    seen.push(event.key);
  });
  try {
    // Checking started with the first watch, on the hook, at the period asked for.
    assert.equal(polls.length, 1);
    assert.equal(polls[0].periodMs, 700);
    await writer.put("/monitor/config/web-1", "{}");
    // Nothing of its own polls: the watch sees the commit only once the caller checks
    // (the watcher's own re-check every 10 s is far off).
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(seen, []);
    polls[0].check();
    await waitUntil(() => seen.length > 0, WAIT_MS, "the watch to see the commit after check()");
    assert.deepEqual(seen, ["/monitor/config/web-1"]);
    // A lease's keep-alive too: every TTL/3 on the hook, stopped when it is revoked.
    const lease = await quiet.lease(3);
    assert.equal(polls.length, 2);
    assert.equal(polls[1].periodMs, 1000);
    await lease.put("/monitor/heartbeat/web-1", "{}");
    polls[1].check(); // a keep-alive, as the caller's timer would run it
    assert.equal((await writer.get("/monitor/heartbeat/web-1"))?.value, "{}");
    await lease.revoke();
    assert.equal(polls[1].stopped, true);
    assert.equal(await writer.get("/monitor/heartbeat/web-1"), undefined);
    await assert.rejects(
      openEmbeddedStore(settings, { every: 5 as unknown as () => () => void }),
      (error: Error) =>
        error instanceof TypeError && /every must be a function/.test(error.message),
    );
  } finally {
    await watcher.close();
    // The last listener gone: the hook's stop was called.
    assert.equal(polls[0]?.stopped, true);
    await quiet.close();
    await writer.close();
    await Deno.remove(dir, { recursive: true });
  }
});
