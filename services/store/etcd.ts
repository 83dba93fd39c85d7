/**
 * The `etcd` Store backend, through `npm:etcd3` (the only module that
 * imports it). It uses etcd3's connection pool and raw gRPC clients and does
 * its own fault handling:
 *
 * - Unary calls retry recoverable errors (connection refused, etcd
 *   restarting, leader election) with a short backoff for up to
 *   `connectTimeoutMs`, then fail with {@linkcode StoreUnavailableError}
 *   naming the endpoints. Opening the store makes one such call, so an
 *   unreachable etcd fails `openStore` within the timeout.
 * - A watch keeps the revision of the last event it received (and of
 *   progress notifications) and, after a connection loss, re-creates the etcd
 *   watch from the next revision, so nothing is missed or repeated (etcd
 *   sends every event of one revision in one response). Events older than
 *   that revision are dropped defensively.
 * - A lease runs its own keep-alive every TTL/3. When etcd answers that the
 *   lease is gone (TTL 0, or "lease not found" on a put), a new lease is
 *   granted, every key put through the lease is put again, and the `onLost`
 *   listeners are called.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import "./etcd_grpc_log.ts";
import {
  Etcd3,
  EtcdLeaseInvalidError,
  type ICallable,
  type IDuplexStream,
  type IKeyValue,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
  type IOptions,
  isRecoverableError,
  type IWatchRequest,
  type IWatchResponse,
  KVClient,
  LeaseClient,
  WatchClient,
} from "etcd3";
import { sleep } from "../common/async.ts";
import { errorMessage, getLogger } from "../common/log.ts";
import {
  checkFunction,
  checkKey,
  checkPrefix,
  checkRevision,
  checkTtl,
  checkValue,
  checkWatchArgs,
  DEFAULT_CONNECT_TIMEOUT_MS,
  notifyLeaseLost,
  WatchDispatcher,
} from "./common.ts";
import {
  endpointUrl,
  etcdLabel,
  FIRST_BACKOFF_MS,
  MAX_BACKOFF_MS,
  normalizeEndpoints,
} from "./etcd_common.ts";
import {
  type CasResult,
  type KeyValue,
  type Lease,
  type ListResult,
  type Store,
  StoreCompactedError,
  type StoreSettings,
  StoreUnavailableError,
  type Watcher,
  type WatchEvent,
  type WatchOptions,
} from "./types.ts";

const log = getLogger("store/etcd");

/**
 * After a failed connection attempt grpc-js keeps a reconnect backoff timer
 * (at most the max backoff plus 20 % jitter) that cannot be cancelled from
 * outside; `close()` waits this long after the last failure so that nothing
 * of the store outlives it.
 */
const SETTLE_AFTER_FAILURE_MS = Math.ceil(MAX_BACKOFF_MS * 1.2) + 100;

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * A fault-handling policy that just runs the call: retries and failover are
 * done here, not by etcd3's default retry and circuit breaker (whose open
 * circuit would refuse calls for seconds after etcd came back).
 */
const passthrough = {
  execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T) =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
  onSuccess: () => ({ dispose() {} }),
  onFailure: () => ({ dispose() {} }),
} as unknown as Policy;

/** Etcd3 with access to its connection pool (for stream clients without etcd3's failure marking). */
class PooledEtcd3 extends Etcd3 {
  /**
   * The pool, except that a failed stream does not reset every channel of
   * the host (etcd3 does that on any stream error, also on our own
   * cancellations); grpc-js reconnects by itself with the backoff set below.
   */
  streamCallable(): ICallable<unknown> {
    const pool = this.pool as unknown as ICallable<unknown>;
    return {
      exec: (service, method, params, options) => pool.exec(service, method, params, options),
      withConnection: (service, fn) => pool.withConnection(service, fn),
      markFailed: () => {},
      get callOptionsFactory() {
        return pool.callOptionsFactory;
      },
    };
  }
}

/** Tuning of the etcd backend. */
export interface EtcdStoreOptions {
  /** Retry budget of each call, and the connect timeout (ms). Default: `settings.connectTimeoutMs` or 5000. */
  callTimeoutMs?: number;
}

function toBytes(text: string): Buffer {
  return Buffer.from(text, "utf8");
}

/** The end of the key range of `prefix` in bytes (etcd's convention: `\0` means "no end"). */
function rangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Key range of a prefix; the empty prefix is every key. */
function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  if (prefix === "") return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  const key = toBytes(prefix);
  return { key, range_end: rangeEnd(key) };
}

function toKeyValue(kv: IKeyValue): KeyValue {
  const result: KeyValue = {
    key: kv.key.toString("utf8"),
    value: kv.value.toString("utf8"),
    modRevision: Number(kv.mod_revision),
    createRevision: Number(kv.create_revision),
  };
  if (kv.lease !== undefined && kv.lease !== "0" && kv.lease !== "") result.lease = kv.lease;
  return result;
}

/** The etcd Store. Open it with {@linkcode openEtcdStore}. */
export class EtcdStore implements Store {
  /** Always `"etcd"`. */
  readonly backend = "etcd";
  /** What errors name, e.g. `etcd at 127.0.0.1:2379`. */
  readonly endpoint: string;
  /** Retry budget of each call (ms). */
  readonly callTimeoutMs: number;
  readonly #client: PooledEtcd3;
  /** @internal */
  readonly kv: KVClient;
  /** @internal */
  readonly leases: LeaseClient;
  /** @internal */
  readonly watches: WatchClient;
  #closed = false;
  /** Aborted on close: ends every retry pause and reconnect wait. */
  readonly #closing = new AbortController();
  #watchers = new Set<EtcdWatcher>();
  #leaseSet = new Set<EtcdLease>();
  #lastFailure = 0;

  /** Use {@linkcode openEtcdStore}. */
  constructor(endpoints: string[], callTimeoutMs: number) {
    this.endpoint = etcdLabel(endpoints);
    this.callTimeoutMs = callTimeoutMs;
    this.#client = new PooledEtcd3({
      hosts: endpoints.map(endpointUrl),
      faultHandling: { global: passthrough, host: () => passthrough },
      grpcOptions: {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": MAX_BACKOFF_MS,
        "grpc.keepalive_time_ms": 30000,
        "grpc.keepalive_timeout_ms": 10000,
      },
    });
    const streams = this.#client.streamCallable();
    this.kv = new KVClient(streams);
    this.leases = new LeaseClient(streams);
    this.watches = new WatchClient(streams);
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /** @internal Records a failed call or stream (see {@linkcode SETTLE_AFTER_FAILURE_MS}). */
  noteFailure(): void {
    this.#lastFailure = Date.now();
  }

  /** Aborted when the store closes. */
  get closingSignal(): AbortSignal {
    return this.#closing.signal;
  }

  /**
   * Runs one etcd call, retrying recoverable errors with backoff for up to
   * {@linkcode callTimeoutMs}; then fails with {@linkcode StoreUnavailableError}.
   * @internal
   */
  async call<T>(what: string, fn: (deadline: number) => Promise<T>): Promise<T> {
    const started = Date.now();
    const deadline = started + this.callTimeoutMs;
    let backoff = FIRST_BACKOFF_MS;
    let attempts = 0;
    while (true) {
      if (this.#closed) throw new Error(`${this.endpoint}: ${what}: the store is closed`);
      attempts++;
      try {
        return await fn(deadline);
      } catch (error) {
        if (this.#closed) throw new Error(`${this.endpoint}: ${what}: the store is closed`);
        if (!(error instanceof Error) || !isRecoverableError(error)) {
          if (error instanceof EtcdLeaseInvalidError) throw error;
          throw new Error(`${this.endpoint}: ${what}: ${errorMessage(error)}`, { cause: error });
        }
        this.noteFailure();
        if (Date.now() + backoff >= deadline) {
          throw new StoreUnavailableError(
            this.endpoint,
            `${what}: cannot reach ${this.endpoint} (${attempts} attempt(s) in ${
              Date.now() - started
            } ms): ${errorMessage(error)}`,
            { cause: error },
          );
        }
        log.debug(`${what}: ${errorMessage(error)}; retrying in ${backoff} ms`);
        await sleep(backoff, this.#closing.signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  #check(where: string) {
    if (this.#closed) throw new Error(`${this.endpoint}: ${where}: the store is closed`);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key, "get");
    this.#check("get");
    const res = await this.call(
      `get ${JSON.stringify(key)}`,
      (deadline) => this.kv.range({ key: toBytes(key) }, { deadline }),
    );
    const kv = res.kvs[0];
    return kv === undefined ? undefined : toKeyValue(kv);
  }

  async list(prefix: string): Promise<ListResult> {
    checkPrefix(prefix, "list");
    this.#check("list");
    const res = await this.call(
      `list ${JSON.stringify(prefix)}`,
      (deadline) => this.kv.range({ ...prefixRange(prefix), sort_order: "Ascend" }, { deadline }),
    );
    const items = res.kvs.map(toKeyValue);
    return { items, revision: Number(res.header.revision) };
  }

  async put(key: string, value: string): Promise<number> {
    checkKey(key, "put");
    checkValue(value, `put ${JSON.stringify(key)}`);
    this.#check("put");
    const res = await this.call(
      `put ${JSON.stringify(key)}`,
      (deadline) => this.kv.put({ key: toBytes(key), value: toBytes(value) }, { deadline }),
    );
    return Number(res.header.revision);
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key, "delete");
    this.#check("delete");
    const res = await this.call(
      `delete ${JSON.stringify(key)}`,
      (deadline) => this.kv.deleteRange({ key: toBytes(key) }, { deadline }),
    );
    return Number(res.deleted) > 0;
  }

  async compareAndSet(key: string, value: string, expectedRevision: number): Promise<CasResult> {
    checkKey(key, "compareAndSet");
    checkValue(value, `compareAndSet ${JSON.stringify(key)}`);
    checkRevision(expectedRevision, `compareAndSet ${JSON.stringify(key)}: expectedRevision`, 0);
    this.#check("compareAndSet");
    const k = toBytes(key);
    const compare = expectedRevision === 0
      ? { key: k, target: "Create" as const, result: "Equal" as const, create_revision: 0 }
      : {
        key: k,
        target: "Mod" as const,
        result: "Equal" as const,
        mod_revision: expectedRevision,
      };
    const res = await this.call(
      `compareAndSet ${JSON.stringify(key)}`,
      (deadline) =>
        this.kv.txn({
          compare: [compare],
          success: [{ request_put: { key: k, value: toBytes(value) } }],
          failure: [{ request_range: { key: k } }],
        }, { deadline }),
    );
    if (res.succeeded) return { ok: true, revision: Number(res.header.revision) };
    const current = res.responses[0]?.response_range?.kvs[0];
    return { ok: false, revision: current === undefined ? 0 : Number(current.mod_revision) };
  }

  async watch(
    prefix: string,
    options: WatchOptions,
    onEvent: (event: WatchEvent) => void | Promise<void>,
  ): Promise<Watcher> {
    checkWatchArgs(prefix, options, onEvent);
    this.#check("watch");
    let from = options.fromRevision;
    let compacted = false;
    if (from !== undefined) {
      // etcd reports a compacted start revision only after confirming the watch; a read at
      // that revision tells at once (a future revision is fine for a watch).
      try {
        await this.call(
          `watch ${JSON.stringify(prefix)}`,
          (deadline) =>
            this.kv.range({ ...prefixRange(prefix), count_only: true, revision: from }, {
              deadline,
            }),
        );
      } catch (error) {
        const message = errorMessage(error);
        if (/required revision has been compacted/.test(message)) compacted = true;
        else if (!/future revision/.test(message)) throw error;
      }
    } else {
      // "Only changes after the call": pin the current revision now.
      const res = await this.call(
        `watch ${JSON.stringify(prefix)}`,
        (deadline) => this.kv.range({ ...prefixRange(prefix), count_only: true }, { deadline }),
      );
      from = Number(res.header.revision) + 1;
    }
    const watcher = new EtcdWatcher(this, prefix, from, onEvent, options.onError, (w) => {
      this.#watchers.delete(w);
    }, compacted);
    this.#watchers.add(watcher);
    try {
      await watcher.start();
    } catch (error) {
      await watcher.close();
      throw error;
    }
    return watcher;
  }

  async lease(ttlSeconds: number): Promise<Lease> {
    checkTtl(ttlSeconds);
    this.#check("lease");
    const id = await this.grant(ttlSeconds);
    const lease = new EtcdLease(this, id, ttlSeconds, (l) => this.#leaseSet.delete(l));
    this.#leaseSet.add(lease);
    return lease;
  }

  /** @internal Grants a lease; its id. */
  async grant(ttlSeconds: number): Promise<string> {
    const res = await this.call(
      `lease grant (TTL ${ttlSeconds} s)`,
      (deadline) => this.leases.leaseGrant({ TTL: ttlSeconds }, { deadline }),
    );
    return res.ID;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    await Promise.all([
      ...[...this.#watchers].map((w) => w.close()),
      ...[...this.#leaseSet].map((l) => l.stop()),
    ]);
    this.#client.close();
    const settle = this.#lastFailure + SETTLE_AFTER_FAILURE_MS - Date.now();
    if (this.#lastFailure > 0 && settle > 0) await sleep(settle);
  }
}

/** Cancels a gRPC stream and waits (briefly) until grpc-js has finished it. */
function endStream(stream: IDuplexStream<unknown, unknown>): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(finish, 1000);
    stream.on("status", finish);
    stream.on("error", () => {});
    try {
      stream.cancel();
    } catch {
      finish();
    }
  });
}

/** A watch on etcd that resumes from the last revision it saw after a connection loss. */
class EtcdWatcher implements Watcher {
  #next: number;
  #closed = false;
  #stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  #dispatcher: WatchDispatcher;
  #reconnecting: Promise<void> | undefined;
  #wait = new AbortController();
  #outageSince: number | undefined;

  constructor(
    readonly store: EtcdStore,
    readonly prefix: string,
    from: number,
    onEvent: (event: WatchEvent) => void | Promise<void>,
    readonly onError: ((error: Error) => void) | undefined,
    readonly onClosed: (watcher: EtcdWatcher) => void,
    readonly expectCompaction = false,
  ) {
    this.#next = from;
    this.#dispatcher = new WatchDispatcher(onEvent, `watch ${JSON.stringify(prefix)}`, log);
  }

  get #what(): string {
    return `watch ${JSON.stringify(this.prefix)}`;
  }

  /** First connection: retried for the store's call timeout, then StoreUnavailableError. */
  async start(): Promise<void> {
    const started = Date.now();
    const deadline = started + this.store.callTimeoutMs;
    let backoff = FIRST_BACKOFF_MS;
    let attempts = 0;
    while (true) {
      attempts++;
      try {
        await this.#connect(deadline);
        return;
      } catch (error) {
        if (this.#closed) throw new Error(`${this.store.endpoint}: ${this.#what}: closed`);
        if (error instanceof StoreCompactedError) throw error;
        if (this.expectCompaction) {
          // etcd said the revision was compacted but did not say up to where.
          throw new StoreCompactedError(
            this.#next,
            0,
            `${this.#what} from revision ${this.#next}: that revision was compacted. ` +
              `Re-read with list() and watch from its revision + 1`,
            { cause: error },
          );
        }
        if (Date.now() + backoff >= deadline) {
          throw new StoreUnavailableError(
            this.store.endpoint,
            `${this.#what}: cannot reach ${this.store.endpoint} (${attempts} attempt(s) in ${
              Date.now() - started
            } ms): ${errorMessage(error)}`,
            { cause: error },
          );
        }
        await sleep(backoff, this.#wait.signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  /**
   * Opens a stream and creates the etcd watch from `#next`. Resolves once
   * etcd confirmed the watch; rejects when the stream fails first, when etcd
   * refuses (compacted revision) or at `deadline`.
   */
  async #connect(deadline: number): Promise<void> {
    const stream = await this.store.watches.watch();
    if (this.#closed) {
      await endStream(stream);
      throw new Error("closed");
    }
    this.#stream = stream;
    await new Promise<void>((resolve, reject) => {
      let created = false;
      const timer = setTimeout(() => {
        if (created) return;
        fail(new Error(`no answer to the watch request within the timeout`));
      }, Math.max(0, deadline - Date.now()));
      const fail = (error: Error) => {
        clearTimeout(timer);
        if (this.#stream !== stream) return;
        this.store.noteFailure();
        this.#stream = undefined;
        void endStream(stream);
        if (!created) {
          created = true; // settle once
          reject(error);
        } else if (error instanceof StoreCompactedError) {
          this.#fail(error);
        } else {
          this.#lost(error);
        }
      };
      stream.on("data", (res: IWatchResponse) => {
        if (this.#stream !== stream || this.#closed) return;
        if (res.canceled) {
          const compact = Number(res.compact_revision);
          fail(
            compact > 0
              ? new StoreCompactedError(
                this.#next,
                compact,
                `${this.#what} from revision ${this.#next}: that revision was compacted; ` +
                  `the oldest revision available is ${compact}. Re-read with list() and watch from its revision + 1`,
              )
              : new Error(`etcd cancelled the watch: ${res.cancel_reason || "no reason given"}`),
          );
          return;
        }
        const confirm = () => {
          if (created) return;
          created = true;
          clearTimeout(timer);
          this.#resumed();
          resolve();
        };
        if (res.created) {
          // A watch from a compacted revision is confirmed, then cancelled: wait for that.
          if (!this.expectCompaction) confirm();
          return;
        }
        confirm();
        this.#receive(res);
      });
      stream.on("error", (error: Error) => fail(error));
      stream.on("end", () => fail(new Error("etcd ended the watch stream")));
      const range = prefixRange(this.prefix);
      stream.write({
        create_request: {
          key: range.key,
          range_end: range.range_end,
          start_revision: this.#next,
          progress_notify: true,
        },
      });
    });
  }

  #receive(res: IWatchResponse) {
    if (res.events.length === 0) {
      // Progress notification: everything up to the header revision was sent.
      this.#next = Math.max(this.#next, Number(res.header.revision) + 1);
      return;
    }
    const events: WatchEvent[] = [];
    let last = this.#next - 1;
    for (const event of res.events) {
      const revision = Number(event.kv.mod_revision);
      if (revision < this.#next) continue; // already delivered before a reconnect
      last = Math.max(last, revision);
      const key = event.kv.key.toString("utf8");
      events.push(
        event.type === "Delete"
          ? { type: "delete", key, revision }
          : { type: "put", key, value: event.kv.value.toString("utf8"), revision },
      );
    }
    this.#next = last + 1;
    this.#dispatcher.push(events);
  }

  #resumed() {
    if (this.#outageSince !== undefined) {
      log.info(
        `${this.#what}: resumed from revision ${this.#next} after ${
          Date.now() - this.#outageSince
        } ms`,
      );
      this.#outageSince = undefined;
    }
  }

  /** The stream broke after the watch was created: reconnect from `#next` until it works. */
  #lost(error: Error) {
    if (this.#closed || this.#reconnecting) return;
    this.#outageSince ??= Date.now();
    log.warn(
      `${this.#what}: connection lost (${
        errorMessage(error)
      }); resuming from revision ${this.#next}`,
    );
    this.#reconnecting = (async () => {
      let backoff = FIRST_BACKOFF_MS;
      while (!this.#closed) {
        await sleep(backoff, this.#wait.signal);
        if (this.#closed) break;
        try {
          await this.#connect(Date.now() + this.store.callTimeoutMs);
          // The new stream may already have failed again (its loss was ignored while reconnecting).
          if (this.#stream !== undefined) break;
        } catch (e) {
          if (this.#closed) break;
          if (e instanceof StoreCompactedError) {
            this.#fail(e);
            break;
          }
          log.debug(`${this.#what}: reconnect failed: ${errorMessage(e)}`);
          backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        }
      }
      this.#reconnecting = undefined;
    })();
  }

  #fail(error: Error) {
    if (this.#closed) return;
    void this.close();
    if (this.onError) {
      try {
        this.onError(error);
      } catch (e) {
        log.error(`${this.#what}: onError threw: ${errorMessage(e)}`);
      }
    } else {
      log.error(`${this.#what} stopped: ${error.message}`);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) {
      await this.#reconnecting;
      return;
    }
    this.#closed = true;
    this.#dispatcher.close();
    this.#wait.abort();
    const stream = this.#stream;
    this.#stream = undefined;
    this.onClosed(this);
    if (stream !== undefined) await endStream(stream);
    await this.#reconnecting;
  }
}

/** A lease on etcd with its own keep-alive and re-establishment. */
class EtcdLease implements Lease {
  #id: string;
  #keys = new Map<string, string>();
  #listeners: ((error: Error) => void)[] = [];
  #stopped = false;
  #wait = new AbortController();
  #loop: Promise<void>;
  #stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  #pending:
    | { resolve: (r: ILeaseKeepAliveResponse) => void; reject: (e: Error) => void }
    | undefined;
  /** Set when etcd said the lease is gone and it could not be re-established yet. */
  #lostError: Error | undefined;
  #failing = false;
  #reestablishing: Promise<void> | undefined;

  constructor(
    readonly store: EtcdStore,
    id: string,
    readonly ttl: number,
    readonly onEnded: (lease: EtcdLease) => void,
  ) {
    this.#id = id;
    this.#loop = this.#run();
  }

  get id(): string {
    return this.#id;
  }

  async put(key: string, value: string): Promise<number> {
    checkKey(key, "lease put");
    checkValue(value, `lease put ${JSON.stringify(key)}`);
    if (this.#stopped) {
      throw new Error(`lease ${this.#id}: put ${key}: the lease was revoked or closed`);
    }
    this.#keys.set(key, value);
    for (let attempt = 0;; attempt++) {
      const id = this.#id;
      try {
        const res = await this.store.call(
          `lease ${id}: put ${JSON.stringify(key)}`,
          (deadline) =>
            this.store.kv.put({ key: toBytes(key), value: toBytes(value), lease: id }, {
              deadline,
            }),
        );
        return Number(res.header.revision);
      } catch (error) {
        if (!(error instanceof EtcdLeaseInvalidError) || attempt > 0) throw error;
        // The lease is gone: re-establish it (this also re-puts `key`), then the loop retries.
        if (this.#id === id) await this.#reestablish(error);
      }
    }
  }

  async #run(): Promise<void> {
    const interval = Math.max(100, (this.ttl * 1000) / 3);
    while (!this.#stopped) {
      try {
        if (this.#lostError !== undefined) {
          await this.#reestablish(this.#lostError);
        } else {
          const res = await this.#ping(interval);
          if (Number(res.TTL) <= 0) {
            await this.#reestablish(new EtcdLeaseInvalidError(this.#id));
          } else if (this.#failing) {
            this.#failing = false;
            log.info(`lease ${this.#id}: keep-alive works again`);
          }
        }
      } catch (error) {
        if (this.#stopped) break;
        this.#dropStream();
        if (!this.#failing) {
          this.#failing = true;
          log.warn(`lease ${this.#id}: keep-alive failed (${errorMessage(error)}); retrying`);
        }
      }
      await sleep(this.#failing ? Math.min(interval, MAX_BACKOFF_MS) : interval, this.#wait.signal);
    }
    this.#dropStream();
  }

  /** Sends one keep-alive and waits for its answer (at most `timeoutMs`). */
  async #ping(timeoutMs: number): Promise<ILeaseKeepAliveResponse> {
    if (this.#stream === undefined) {
      const stream = await this.store.leases.leaseKeepAlive();
      if (this.#stopped) {
        void endStream(stream);
        throw new Error("stopped");
      }
      const fail = (error: Error) => {
        if (this.#stream !== stream) return;
        this.store.noteFailure();
        this.#pending?.reject(error);
        this.#pending = undefined;
        this.#dropStream();
      };
      stream.on("data", (res: ILeaseKeepAliveResponse) => {
        if (this.#stream !== stream) return;
        this.#pending?.resolve(res);
        this.#pending = undefined;
      });
      stream.on("error", fail);
      stream.on("end", () => fail(new Error("etcd ended the keep-alive stream")));
      this.#stream = stream;
    }
    const stream = this.#stream;
    return await new Promise<ILeaseKeepAliveResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending = undefined;
        reject(new Error(`no keep-alive answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      stream.write({ ID: this.#id });
    });
  }

  #dropStream() {
    const stream = this.#stream;
    this.#stream = undefined;
    this.#pending?.reject(new Error("keep-alive stream closed"));
    this.#pending = undefined;
    if (stream !== undefined) void endStream(stream);
  }

  /** Re-establishes the lease once, however many callers noticed the loss at the same time. */
  #reestablish(cause: Error): Promise<void> {
    this.#reestablishing ??= this.#doReestablish(cause).finally(() => {
      this.#reestablishing = undefined;
    });
    return this.#reestablishing;
  }

  /** Grants a new lease, re-puts every key and calls the onLost listeners. */
  async #doReestablish(cause: Error): Promise<void> {
    this.#lostError = cause;
    const old = this.#id;
    const id = await this.store.grant(this.ttl);
    if (this.#stopped) return;
    this.#id = id;
    this.#dropStream();
    for (const [key, value] of this.#keys) {
      await this.store.call(
        `lease ${id}: re-put ${JSON.stringify(key)}`,
        (deadline) =>
          this.store.kv.put({ key: toBytes(key), value: toBytes(value), lease: id }, { deadline }),
      );
    }
    this.#lostError = undefined;
    this.#failing = false;
    const error = new Error(
      `lease ${old} was lost (${
        errorMessage(cause)
      }); re-established as lease ${id} with ${this.#keys.size} key(s) re-put`,
      { cause },
    );
    notifyLeaseLost(this.#listeners, error, id, log);
  }

  async revoke(): Promise<void> {
    if (this.#stopped) return;
    await this.stop();
    const id = this.#id;
    try {
      await this.store.call(
        `lease ${id}: revoke`,
        (deadline) => this.store.leases.leaseRevoke({ ID: id }, { deadline }),
      );
    } catch (error) {
      if (!(error instanceof EtcdLeaseInvalidError)) throw error;
    }
  }

  onLost(listener: (error: Error) => void): void {
    checkFunction(listener, "lease onLost");
    this.#listeners.push(listener);
  }

  /** Stops the keep-alive (the lease then expires after its TTL). */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#wait.abort();
      this.#dropStream();
      this.onEnded(this);
    }
    await this.#loop;
  }
}

/**
 * Connects to etcd at `settings.endpoints`. Fails with
 * {@linkcode StoreUnavailableError} naming the endpoints when none answers
 * within `settings.connectTimeoutMs` (default 5 s).
 */
export async function openEtcdStore(
  settings: StoreSettings,
  options: EtcdStoreOptions = {},
): Promise<EtcdStore> {
  const endpoints = normalizeEndpoints(settings?.endpoints);
  const timeout = options.callTimeoutMs ?? settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout <= 0) {
    throw new TypeError(`store.connectTimeoutMs: expected a number of ms > 0, got ${timeout}`);
  }
  const prefix = typeof settings.prefix === "string" ? settings.prefix : "";
  const store = new EtcdStore(endpoints, timeout);
  try {
    await store.call(
      "connect",
      (deadline) => store.kv.range({ ...prefixRange(prefix), count_only: true }, { deadline }),
    );
  } catch (error) {
    await store.close();
    // Whatever answered (or did not) is not a usable etcd: name the endpoint.
    const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
    throw new StoreUnavailableError(
      store.endpoint,
      `cannot connect to ${store.endpoint}${
        error instanceof StoreUnavailableError ? ` within ${timeout} ms` : ""
      }: ${errorMessage(cause)}`,
      { cause },
    );
  }
  return store;
}
