/**
 * The Store contract suite: one set of `Deno.test` cases, registered once per
 * backend and run unchanged against each (tests/store_embedded_test.ts,
 * tests/store_etcd_test.ts). Test support, not product code.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { sleep, waitUntil, within } from "../../services/common/async.ts";
import { DenoLineProcess } from "./line_process.ts";
import {
  openStore,
  type OpenStoreOptions,
  type Store,
  StoreCompactedError,
  type StoreSettings,
  StoreUnavailableError,
  type WatchEvent,
} from "../../services/store/mod.ts";

/** What a backend's `open` gives the suite (a fresh backend or namespace per test). */
export interface StoreFixture {
  /** A store opened with {@linkcode StoreFixture.settings}. */
  store: Store;
  /** Settings to open more clients, also from subprocesses. */
  settings: StoreSettings;
  /** Opens another client of the same backend (closed by cleanup unless closed before). */
  openAnother(): Promise<Store>;
  /** Compacts the backend's history below `revision`. */
  compact(revision: number): Promise<void>;
  /** Closes every store the fixture opened and stops its backend. */
  cleanup(): Promise<void>;
}

/** Options of {@linkcode storeContract}. */
export interface StoreContractOptions {
  /** Settings of a backend that cannot be reached, and the endpoint text its error must name. */
  unreachable(): Promise<{ settings: StoreSettings; endpoint: string; cleanup(): Promise<void> }>;
  /** Permission flags for subprocesses that open the store with the fixture's settings. */
  childPermissions(settings: StoreSettings): string[];
  /** Longest wait for an expected event (ms). Default 30000. */
  waitMs?: number;
  /** How the suite's own `openStore` calls and its child processes open the store (e.g. the etcd client). */
  openOptions?: OpenStoreOptions;
}

const CHILD = fileURLToPath(new URL("./store_contract_child.ts", import.meta.url));
const DENO_JSON = fileURLToPath(new URL("../../deno.json", import.meta.url));

let counter = 0;
/** A key prefix unique to this run. */
function unique(what: string): string {
  return `/contract/${what}-${Date.now().toString(36)}-${(counter++).toString(36)}-${
    Math.random().toString(36).slice(2, 6)
  }/`;
}

function describe(events: WatchEvent[]): string {
  return events.map((e) => `${e.type} ${e.key}@${e.revision}`).join(", ");
}

/** A `deno run` subprocess of store_contract_child.ts with its output lines. */
class Child extends DenoLineProcess {
  constructor(permissions: string[], args: string[]) {
    super(["run", "--quiet", "--config", DENO_JSON, ...permissions, CHILD, ...args]);
  }

  /** Waits for a line starting with `start`; fails with the child's stderr when it exits first. */
  async waitForLine(start: string, ms: number): Promise<string> {
    const deadline = Date.now() + ms;
    while (true) {
      const line = this.lines.find((l) => l.startsWith(start));
      if (line !== undefined) return line;
      if (this.exited) {
        await this.stdoutDone;
        const again = this.lines.find((l) => l.startsWith(start));
        if (again !== undefined) return again;
        const status = await this.status;
        assert.fail(
          `child exited (code ${status.code}) before printing "${start}": ${await this.stderr}`,
        );
      }
      if (Date.now() > deadline) {
        assert.fail(`child did not print "${start}" within ${ms} ms; printed: ${this.lines}`);
      }
      await sleep(20);
    }
  }

  /** Waits for the exit (SIGTERM first when `stop`), then collects the output. */
  async finish(stop = true): Promise<{ status: Deno.CommandStatus; stderr: string }> {
    if (stop && !this.exited) {
      this.process.kill("SIGCONT");
      this.process.kill("SIGTERM");
    }
    // A child that ignores SIGTERM (or was not asked to stop) is killed after 10 s.
    const timer = setTimeout(() => {
      if (!this.exited) this.process.kill("SIGKILL");
    }, 10000);
    const status = await this.status;
    clearTimeout(timer);
    await this.stdoutDone;
    return { status, stderr: await this.stderr };
  }
}

/** Records the events of one watch. */
class Recorder {
  readonly events: WatchEvent[] = [];
  inFlight = 0;
  maxInFlight = 0;

  constructor(readonly delayMs = 0) {}

  readonly handler = async (event: WatchEvent) => {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await sleep(this.delayMs);
      this.events.push(event);
    } finally {
      this.inFlight--;
    }
  };

  has(type: WatchEvent["type"], key: string, after = 0): boolean {
    return this.events.some((e) => e.type === type && e.key === key && e.revision > after);
  }
}

/**
 * Registers the Store contract tests for one backend.
 * @param name backend name shown in test names
 * @param open gives a fresh fixture per test
 */
export function storeContract(
  name: string,
  open: () => Promise<StoreFixture>,
  options: StoreContractOptions,
): void {
  const waitMs = options.waitMs ?? 30000;

  function contract(title: string, fn: (fixture: StoreFixture) => Promise<void>) {
    Deno.test(`store contract (${name}): ${title}`, async () => {
      const fixture = await open();
      try {
        await fn(fixture);
      } finally {
        await fixture.cleanup();
      }
    });
  }

  contract("get, put, delete and list with revisions", async ({ store }) => {
    const p = unique("crud");
    assert.equal(await store.get(`${p}a`), undefined);
    const r1 = await store.put(`${p}b`, "one");
    const r2 = await store.put(`${p}a`, "two");
    const r3 = await store.put(`${p}b`, "three");
    assert.ok(r1 < r2 && r2 < r3, `revisions grow: ${r1}, ${r2}, ${r3}`);
    await store.put(`${p.slice(0, -1)}x/other`, "outside the prefix");

    const b = await store.get(`${p}b`);
    assert.deepEqual(
      {
        key: b?.key,
        value: b?.value,
        modRevision: b?.modRevision,
        createRevision: b?.createRevision,
      },
      { key: `${p}b`, value: "three", modRevision: r3, createRevision: r1 },
    );
    assert.equal(b?.lease, undefined);

    const listed = await store.list(p);
    assert.deepEqual(listed.items.map((i) => [i.key, i.value]), [[`${p}a`, "two"], [
      `${p}b`,
      "three",
    ]]);
    assert.ok(listed.revision >= r3, `list revision ${listed.revision} >= ${r3}`);

    assert.equal(await store.delete(`${p}a`), true);
    assert.equal(await store.delete(`${p}a`), false);
    assert.equal(await store.get(`${p}a`), undefined);
    assert.deepEqual((await store.list(p)).items.map((i) => i.key), [`${p}b`]);
    assert.deepEqual((await store.list(`${p}nothing/`)).items, []);

    // Non-ASCII keys and values round-trip, and prefixes compare by bytes.
    await store.put(`${p}é/ü`, "välue ✓");
    assert.equal((await store.get(`${p}é/ü`))?.value, "välue ✓");
    assert.deepEqual((await store.list(`${p}é/`)).items.map((i) => i.key), [`${p}é/ü`]);
  });

  contract("bad arguments are refused with errors that name them", async ({ store }) => {
    await assert.rejects(store.put("", "v"), /put: key must be a non-empty string/);
    await assert.rejects(
      store.put("/k", 5 as unknown as string),
      /put "\/k": value must be a string, got 5/,
    );
    await assert.rejects(
      store.compareAndSet("/k", "v", -1),
      /expectedRevision: expected a whole number >= 0/,
    );
    await assert.rejects(store.lease(0), /TTL must be a whole number of seconds >= 1, got 0/);
    await assert.rejects(
      store.watch("/k", { fromRevision: 0 }, () => {}),
      /fromRevision: expected a whole number >= 1, got 0/,
    );
    await assert.rejects(store.list(7 as unknown as string), /list: prefix must be a string/);
  });

  contract(
    "compare-and-set conflicts and concurrent increments",
    async ({ store, openAnother }) => {
      const p = unique("cas");
      const key = `${p}counter`;
      const created = await store.compareAndSet(key, "0", 0);
      assert.equal(created.ok, true);
      const again = await store.compareAndSet(key, "x", 0);
      assert.deepEqual(again, { ok: false, revision: created.revision });
      const stale = await store.compareAndSet(key, "x", created.revision - 1);
      assert.deepEqual(stale, { ok: false, revision: created.revision });
      assert.equal((await store.get(key))?.value, "0");
      const missing = await store.compareAndSet(`${p}missing`, "x", created.revision);
      assert.deepEqual(missing, { ok: false, revision: 0 });

      // Two clients increment the same counter; every increment lands exactly once.
      const other = await openAnother();
      const perWorker = 15;
      let conflicts = 0;
      const worker = async (s: Store) => {
        for (let i = 0; i < perWorker; i++) {
          while (true) {
            const current = await s.get(key);
            assert.ok(current);
            const result = await s.compareAndSet(
              key,
              String(Number(current.value) + 1),
              current.modRevision,
            );
            if (result.ok) break;
            conflicts++;
            assert.ok(
              result.revision > current.modRevision,
              "a conflict reports the newer revision",
            );
          }
        }
      };
      await Promise.all([worker(store), worker(other), worker(store), worker(other)]);
      assert.equal((await store.get(key))?.value, String(4 * perWorker));
      assert.ok(conflicts >= 0);
    },
  );

  contract("watch after read misses nothing while another client writes", async (fixture) => {
    const { store } = fixture;
    const p = unique("gap");
    for (let i = 0; i < 5; i++) await store.put(`${p}seed-${i}`, `s-${i}`);
    const writer = await fixture.openAnother();
    const written: { key: string; value: string; revision: number }[] = [];
    let stop = false;
    const writing = (async () => {
      for (let i = 0; i < 400 && !stop; i++) {
        const key = `${p}w-${i % 7}`;
        const value = `v-${i}`;
        const revision = await writer.put(key, value);
        written.push({ key, value, revision });
        if (i % 5 === 4) await writer.delete(`${p}w-${(i + 3) % 7}`);
        // Like another process would: let the reader run between writes.
        await sleep(2);
      }
    })();
    await waitUntil(() => written.length >= 20, waitMs, "the writer to start");

    const listed = await store.list(p);
    const recorder = new Recorder();
    const watcher = await store.watch(p, { fromRevision: listed.revision + 1 }, recorder.handler);
    try {
      await waitUntil(() => written.length >= 120, waitMs, "more writes");
      stop = true;
      await writing;
      const final = await store.list(p);
      assert.ok(
        written.some((w) => w.revision > listed.revision),
        "the writer wrote after the list",
      );
      await waitUntil(
        () => recorder.events.some((e) => e.revision >= final.revision),
        waitMs,
        `the watch to reach revision ${final.revision}`,
        { detail: () => describe(recorder.events.slice(-5)) },
      );
      // Revisions strictly increase and start after the list.
      const revisions = recorder.events.map((e) => e.revision);
      revisions.forEach((r, i) => {
        assert.ok(r > listed.revision, `event revision ${r} > listed ${listed.revision}`);
        if (i > 0) {
          assert.ok(r > revisions[i - 1], `revisions increase: ${revisions[i - 1]} < ${r}`);
        }
      });
      // Replaying the events over the listed state gives exactly the final state.
      const state = new Map(listed.items.map((i) => [i.key, i.value]));
      for (const e of recorder.events) {
        if (e.revision > final.revision) continue;
        if (e.type === "put") state.set(e.key, e.value);
        else state.delete(e.key);
      }
      assert.deepEqual(
        [...state.entries()].sort(),
        final.items.map((i) => [i.key, i.value]).sort(),
      );
      // Every put the writer made after the list was seen, at its revision.
      for (const w of written.filter((w) => w.revision > listed.revision)) {
        assert.ok(
          recorder.events.some((e) =>
            e.type === "put" && e.key === w.key && e.value === w.value && e.revision === w.revision
          ),
          `put ${w.key}=${w.value}@${w.revision} was seen`,
        );
      }
    } finally {
      stop = true;
      await writing.catch(() => {});
      await watcher.close();
    }
  });

  contract("watch delivers in order, one handler call at a time", async ({ store }) => {
    const p = unique("order");
    const recorder = new Recorder(5);
    const watcher = await store.watch(p, {}, recorder.handler);
    try {
      const revisions: number[] = [];
      for (let i = 0; i < 30; i++) revisions.push(await store.put(`${p}k-${i % 4}`, `v-${i}`));
      revisions.push(0);
      await store.delete(`${p}k-0`);
      await waitUntil(() => recorder.events.length >= 31, waitMs, "31 events", {
        detail: () => describe(recorder.events),
      });
      assert.deepEqual(
        recorder.events.slice(0, 30).map((e) => e.type === "put" ? e.value : "?"),
        Array.from({ length: 30 }, (_, i) => `v-${i}`),
      );
      assert.deepEqual(recorder.events.slice(0, 30).map((e) => e.revision), revisions.slice(0, 30));
      assert.equal(recorder.events[30].type, "delete");
      assert.equal(recorder.events[30].key, `${p}k-0`);
      assert.equal(recorder.maxInFlight, 1);
    } finally {
      await watcher.close();
    }
  });

  contract(
    "watch from a past revision replays history; without one, only later changes",
    async ({ store }) => {
      const p = unique("replay");
      const r1 = await store.put(`${p}a`, "1");
      await store.put(`${p}b`, "2");
      await store.delete(`${p}a`);
      const replay = new Recorder();
      const later = new Recorder();
      const w1 = await store.watch(p, { fromRevision: r1 }, replay.handler);
      const w2 = await store.watch(p, {}, later.handler);
      try {
        const r4 = await store.put(`${p}c`, "3");
        await waitUntil(
          () => replay.events.length >= 4 && later.events.length >= 1,
          waitMs,
          "events",
        );
        assert.deepEqual(
          replay.events.map((e) => `${e.type} ${e.key.slice(p.length)}`),
          ["put a", "put b", "delete a", "put c"],
        );
        assert.equal(replay.events[0].revision, r1);
        assert.deepEqual(later.events.map((e) => [e.type, e.key, e.revision]), [[
          "put",
          `${p}c`,
          r4,
        ]]);
      } finally {
        await w1.close();
        await w2.close();
      }
    },
  );

  contract(
    "a closed watch delivers nothing more; a throwing handler does not stop the watch",
    async ({ store }) => {
      const p = unique("close");
      const closed = new Recorder();
      const w1 = await store.watch(p, {}, closed.handler);
      let calls = 0;
      const survived: WatchEvent[] = [];
      const w2 = await store.watch(p, {}, (e) => {
        calls++;
        if (calls === 1) throw new Error("handler failure on purpose");
        survived.push(e);
      });
      try {
        await store.put(`${p}a`, "1");
        await waitUntil(() => closed.events.length === 1, waitMs, "the first event");
        await w1.close();
        await store.put(`${p}b`, "2");
        await waitUntil(() => survived.length === 1, waitMs, "the event after the failure");
        assert.equal(survived[0].key, `${p}b`);
        // w2 saw b, so b was dispatched; the closed watch must not have seen it.
        await sleep(200);
        assert.deepEqual(closed.events.map((e) => e.key), [`${p}a`]);
      } finally {
        await w1.close();
        await w2.close();
      }
    },
  );

  contract("lease expiry is seen by a watcher", async ({ store, openAnother }) => {
    const p = unique("expiry");
    const recorder = new Recorder();
    const watcher = await store.watch(p, {}, recorder.handler);
    try {
      const holder = await openAnother();
      const lease = await holder.lease(1);
      const put = await lease.put(`${p}hb`, "alive");
      assert.equal((await store.get(`${p}hb`))?.lease, lease.id);
      // Closing the holder stops its keep-alive without revoking: the lease must expire.
      await holder.close();
      await waitUntil(
        () => recorder.has("delete", `${p}hb`, put),
        waitMs,
        "the expiry's delete event",
        { detail: () => describe(recorder.events) },
      );
      assert.equal(await store.get(`${p}hb`), undefined);
    } finally {
      await watcher.close();
    }
  });

  contract("keep-alive keeps a leased key beyond its TTL; revoke deletes it", async ({ store }) => {
    const p = unique("keepalive");
    const recorder = new Recorder();
    const watcher = await store.watch(p, {}, recorder.handler);
    try {
      const lease = await store.lease(1);
      await lease.put(`${p}a`, "1");
      await lease.put(`${p}b`, "2");
      await store.put(`${p}plain`, "not leased");
      await sleep(3500);
      assert.equal((await store.get(`${p}a`))?.value, "1");
      assert.equal((await store.get(`${p}b`))?.value, "2");
      assert.deepEqual(recorder.events.filter((e) => e.type === "delete"), []);
      await lease.revoke();
      assert.equal(await store.get(`${p}a`), undefined);
      assert.equal(await store.get(`${p}b`), undefined);
      assert.equal((await store.get(`${p}plain`))?.value, "not leased");
      await waitUntil(
        () => recorder.has("delete", `${p}a`) && recorder.has("delete", `${p}b`),
        waitMs,
        "the revoke's delete events",
        { detail: () => describe(recorder.events) },
      );
      await assert.rejects(lease.put(`${p}c`, "3"), /revoked/);
    } finally {
      await watcher.close();
    }
  });

  contract("another process's writes reach this process's watch", async ({ store, settings }) => {
    const p = unique("process");
    const recorder = new Recorder();
    const watcher = await store.watch(p, {}, recorder.handler);
    const child = new Child(options.childPermissions(settings), [
      "put",
      JSON.stringify(settings),
      JSON.stringify(options.openOptions ?? {}),
      p,
      "25",
    ]);
    try {
      const done = await child.waitForLine("done ", waitMs * 2);
      const last = Number(done.split(" ")[1]);
      await waitUntil(
        () => recorder.events.some((e) => e.revision >= last),
        waitMs,
        `the child's last write (revision ${last})`,
        { detail: () => describe(recorder.events) },
      );
      assert.deepEqual(
        recorder.events.map((e) => e.type === "put" ? `${e.key.slice(p.length)}=${e.value}` : "?"),
        Array.from({ length: 25 }, (_, i) => `k-${i}=v-${i}`),
      );
      assert.equal((await store.list(p)).items.length, 25);
    } finally {
      await child.finish(false);
      await watcher.close();
    }
  });

  contract(
    "a lease lost while its process was frozen is re-established",
    async ({ store, settings }) => {
      const p = unique("frozen");
      const key = `${p}hb`;
      const recorder = new Recorder();
      const watcher = await store.watch(p, {}, recorder.handler);
      const child = new Child(options.childPermissions(settings), [
        "lease",
        JSON.stringify(settings),
        JSON.stringify(options.openOptions ?? {}),
        key,
        "1",
      ]);
      try {
        const ready = await child.waitForLine("ready ", waitMs * 2);
        const firstLease = ready.split(" ")[1];
        await waitUntil(() => recorder.has("put", key), waitMs, "the child's leased put");
        child.signal("SIGSTOP");
        await waitUntil(
          () => recorder.has("delete", key),
          waitMs,
          "the delete after the frozen child's lease expired",
          { detail: () => describe(recorder.events) },
        );
        const deletedAt = recorder.events.find((e) => e.type === "delete")!.revision;
        child.signal("SIGCONT");
        const lost = await child.waitForLine("lost ", waitMs);
        const secondLease = lost.split(" ")[1];
        assert.notEqual(secondLease, firstLease);
        await waitUntil(
          () => recorder.has("put", key, deletedAt),
          waitMs,
          "the re-put after the lease was re-established",
          { detail: () => describe(recorder.events) },
        );
        const now = await store.get(key);
        assert.equal(now?.value, "alive");
        assert.equal(now?.lease, secondLease);
      } finally {
        const { status, stderr } = await child.finish();
        await watcher.close();
        assert.ok(status.success || status.signal === "SIGTERM", `child exit: ${stderr}`);
      }
    },
  );

  contract("a watch from a compacted revision fails clearly", async ({ store, compact }) => {
    const p = unique("compact");
    const first = await store.put(`${p}a`, "1");
    await store.put(`${p}a`, "2");
    const last = await store.put(`${p}a`, "3");
    await compact(last);
    await assert.rejects(
      store.watch(p, { fromRevision: first }, () => {}),
      (error: unknown) => {
        assert.ok(error instanceof StoreCompactedError, `got ${error}`);
        assert.equal(error.requestedRevision, first);
        assert.equal(error.compactRevision, last);
        assert.match(error.message, /compacted/);
        assert.match(error.message, new RegExp(`revision ${first}`));
        return true;
      },
    );
    // From the compaction revision on, history is still there.
    const recorder = new Recorder();
    const watcher = await store.watch(p, { fromRevision: last }, recorder.handler);
    try {
      await waitUntil(() => recorder.events.length === 1, waitMs, "the kept event");
      assert.equal(recorder.events[0].revision, last);
    } finally {
      await watcher.close();
    }
  });

  Deno.test(`store contract (${name}): an unreachable backend fails naming the endpoint`, async () => {
    const { settings, endpoint, cleanup } = await options.unreachable();
    try {
      const timeout = settings.connectTimeoutMs ?? 5000;
      await within(
        assert.rejects(openStore(settings, options.openOptions), (error: unknown) => {
          assert.ok(error instanceof StoreUnavailableError, `got ${error}`);
          assert.ok(error.message.includes(endpoint), `"${error.message}" names ${endpoint}`);
          assert.ok(error.endpoint.includes(endpoint));
          return true;
        }),
        timeout + 15000,
        "openStore on an unreachable backend",
      );
    } finally {
      await cleanup();
    }
  });
}
