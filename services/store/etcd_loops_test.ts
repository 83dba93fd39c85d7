/**
 * Unit tests of the etcd loops' invariants over a scripted transport (no
 * I/O; the same loops against a real etcd, through both clients, are the
 * store contract suite and the outage tests in tests/store_etcd_test.ts):
 * a resumed watch repeats and skips nothing, a compaction ends it once, a
 * lost lease is re-granted once with its keys.
 */
import assert from "node:assert/strict";
import { waitUntil } from "../common/async.ts";
import { MAX_BACKOFF_MS } from "./etcd_common.ts";
import {
  type EtcdTransport,
  type KeepAliveChannel,
  nextBackoff,
  openEtcdStoreWith,
  type WatchAnswer,
  type WatchChannel,
  type WatchSink,
} from "./etcd_loops.ts";
import { type CasResult, type ListResult, StoreCompactedError } from "./types.ts";

class Outage extends Error {}

class LeaseGone extends Error {
  constructor(readonly lease: string) {
    super(`lease ${lease} not found`);
  }
}

function answer(fields: Partial<WatchAnswer>): WatchAnswer {
  return {
    created: false,
    canceled: false,
    compactRevision: 0,
    cancelReason: "",
    headerRevision: 0,
    events: [],
    ...fields,
  };
}

/** Puts at the given revisions, one answer (as etcd sends one revision's events together). */
function puts(...revisions: number[]): WatchAnswer {
  return answer({
    headerRevision: Math.max(...revisions),
    events: revisions.map((revision) => ({
      type: "put",
      key: `/a/${revision}`,
      value: "v",
      revision,
    })),
  });
}

/** An etcd in memory that records what the loops ask of it. */
class ScriptedEtcd implements EtcdTransport {
  readonly leaseGoneError = LeaseGone;
  revision = 10;
  /** Start revision of each watch create request. */
  creates: number[] = [];
  /** Where the newest watch stream delivers. */
  sink: WatchSink | undefined;
  live = new Set<string>();
  grants = 0;
  puts: Array<[string, string, string | undefined]> = [];
  pings: string[] = [];
  /** While set, grants wait for it. */
  grantGate: Promise<void> | undefined;

  isRecoverable(error: unknown): boolean {
    return error instanceof Outage;
  }
  onRecoverableFailure(): void {}
  get(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
  list(): Promise<ListResult> {
    return Promise.resolve({ items: [], revision: this.revision });
  }
  put(key: string, value: string, lease: string | undefined): Promise<number> {
    if (lease !== undefined && !this.live.has(lease)) return Promise.reject(new LeaseGone(lease));
    this.puts.push([key, value, lease]);
    return Promise.resolve(++this.revision);
  }
  delete(): Promise<boolean> {
    return Promise.resolve(false);
  }
  compareAndSet(): Promise<CasResult> {
    return Promise.resolve({ ok: false, revision: 0 });
  }
  countOnly(): Promise<number> {
    return Promise.resolve(this.revision);
  }
  async grant(): Promise<string> {
    await this.grantGate;
    this.grants++;
    const id = String(this.grants);
    this.live.add(id);
    return id;
  }
  revoke(lease: string): Promise<void> {
    return this.live.delete(lease) ? Promise.resolve() : Promise.reject(new LeaseGone(lease));
  }
  watchChannel(): WatchChannel {
    return {
      open: () =>
        Promise.resolve({
          create: (_prefix: string, revision: number, sink: WatchSink) => {
            this.creates.push(revision);
            this.sink = sink;
            queueMicrotask(() => sink.response(answer({ created: true })));
          },
          end: () => Promise.resolve(),
        }),
      noAnswer: (ms) => new Outage(`no answer within ${ms} ms`),
      isRetryable: (error) => error instanceof Outage,
      onRetry: () => {},
      onStreamFailure: () => {},
      drained: () => Promise.resolve(),
    };
  }
  keepAliveChannel(): KeepAliveChannel {
    return {
      ping: (lease) => {
        this.pings.push(lease);
        return Promise.resolve(this.live.has(lease) ? 3 : 0);
      },
      failed: () => {},
      drop: () => {},
    };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const settings = {
  backend: "etcd" as const,
  endpoints: ["127.0.0.1:2379"],
  prefix: "/a",
  path: "",
};

Deno.test("etcd loops: the backoff doubles up to the cap", () => {
  assert.equal(nextBackoff(50), 100);
  assert.equal(nextBackoff(MAX_BACKOFF_MS), MAX_BACKOFF_MS);
  assert.equal(nextBackoff(MAX_BACKOFF_MS * 0.75), MAX_BACKOFF_MS);
});

Deno.test("etcd loops: a resumed watch repeats and skips nothing; a compaction ends it once", async () => {
  const etcd = new ScriptedEtcd();
  const store = await openEtcdStoreWith(settings, { callTimeoutMs: 2000 }, () => etcd);
  const seen: number[] = [];
  const errors: Error[] = [];
  const watcher = await store.watch("/a/", { onError: (e) => errors.push(e) }, (event) => {
    seen.push(event.revision);
  });
  try {
    assert.deepEqual(etcd.creates, [11], "only changes after the call: from the revision read + 1");
    const first = etcd.sink!;
    first.response(puts(11));
    first.response(puts(12));
    first.fail(new Error("stream dropped"));
    await waitUntil(() => etcd.creates.length === 2, 3000, "the watch created again");
    assert.equal(etcd.creates[1], 13, "resumed after the last revision delivered");
    first.response(puts(14)); // the dropped stream: ignored
    etcd.sink!.response(puts(12, 13)); // 12 was delivered before the drop
    etcd.sink!.response(answer({ headerRevision: 20 })); // progress: nothing up to 20 is missing
    etcd.sink!.fail(new Error("stream dropped again"));
    await waitUntil(() => etcd.creates.length === 3, 3000, "the watch created a third time");
    assert.equal(etcd.creates[2], 21, "a progress notification moves the resume revision");
    await waitUntil(() => seen.length >= 3, 3000, "three events");
    assert.deepEqual(seen, [11, 12, 13]);

    etcd.sink!.response(answer({ canceled: true, compactRevision: 30 }));
    await waitUntil(() => errors.length > 0, 3000, "the compaction reported");
    assert.ok(errors[0] instanceof StoreCompactedError);
    assert.equal(errors[0].requestedRevision, 21);
    assert.equal(errors[0].compactRevision, 30);
    assert.match(errors[0].message, /oldest revision available is 30. Re-read with list\(\)/);
    etcd.sink!.response(puts(31)); // the watch ended
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(errors.length, 1, "reported once");
    assert.equal(etcd.creates.length, 3, "not created again after a compaction");
    assert.deepEqual(seen, [11, 12, 13]);
  } finally {
    await watcher.close();
    await store.close();
  }
});

Deno.test("etcd loops: a lost lease is re-granted once, however many notice, with its keys", async () => {
  const etcd = new ScriptedEtcd();
  const store = await openEtcdStoreWith(settings, { callTimeoutMs: 2000 }, () => etcd);
  const lost: Error[] = [];
  try {
    const lease = await store.lease(1);
    lease.onLost((error) => lost.push(error));
    assert.equal(lease.id, "1");
    await lease.put("/a/hb", "x");
    assert.deepEqual(etcd.puts, [["/a/hb", "x", "1"]]);

    // etcd forgets the lease: the keep-alive notices, and a put notices while the new grant waits.
    let open = () => {};
    etcd.grantGate = new Promise((resolve) => open = resolve);
    etcd.live.delete("1");
    const pings = etcd.pings.length;
    await waitUntil(() => etcd.pings.length > pings, 3000, "a keep-alive of the lost lease");
    const put = lease.put("/a/other", "y");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(etcd.grants, 1, "the new grant waits");
    open();
    etcd.grantGate = undefined;
    await put;

    assert.equal(etcd.grants, 2, "one new grant");
    assert.equal(lease.id, "2");
    // Every key is put again on the new lease (the waiting put's key too, which its retry then puts once more).
    assert.deepEqual(
      new Set(etcd.puts.slice(1).map((p) => p.join(" "))),
      new Set(["/a/hb x 2", "/a/other y 2"]),
    );
    assert.equal(lost.length, 1, "the listeners hear of it once");
    assert.match(
      lost[0].message,
      /^lease 1 was lost \(lease 1 not found\); re-established as lease 2/,
    );
    await lease.revoke();
    assert.equal(etcd.live.size, 0, "revoked");
  } finally {
    await store.close();
  }
});
