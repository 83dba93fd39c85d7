/**
 * The `etcd` Store backend through `npm:etcd3` (the only module that
 * imports it): how to talk to etcd over gRPC with etcd3's connection pool and
 * raw clients. The fault handling (call retries, watch resume, lease
 * re-grant) is {@linkcode EtcdStore}'s in `etcd_loops.ts`, shared with the
 * HTTP/JSON client (`etcd_http.ts`); etcd3's own retries and circuit breaker
 * are switched off.
 *
 * - A watch is one gRPC `Watch` stream per watcher; a lease keeps one
 *   `LeaseKeepAlive` stream open while its keep-alives are answered.
 * - After a failed connection grpc-js keeps a reconnect timer that cannot be
 *   cancelled, so `close()` waits it out (see `SETTLE_AFTER_FAILURE_MS`).
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
  type IWatchResponse,
  KVClient,
  LeaseClient,
  WatchClient,
} from "etcd3";
import { sleep } from "../common/async.ts";
import { MAX_BACKOFF_MS } from "./etcd_common.ts";
import {
  type EtcdStore,
  type EtcdStoreOptions,
  type EtcdTransport,
  type KeepAliveChannel,
  openEtcdStoreWith,
  type WatchAnswer,
  type WatchChannel,
  type WatchStream,
} from "./etcd_loops.ts";
import type { CasResult, KeyValue, ListResult, StoreSettings, WatchEvent } from "./types.ts";

export type { EtcdStore, EtcdStoreOptions };

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

/** How the store talks to etcd through etcd3's gRPC clients. */
class Etcd3Transport implements EtcdTransport {
  readonly #client: PooledEtcd3;
  readonly kv: KVClient;
  readonly leases: LeaseClient;
  readonly watches: WatchClient;
  #lastFailure = 0;

  constructor(urls: string[]) {
    this.#client = new PooledEtcd3({
      hosts: urls,
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

  /** Records a failed call or stream (see {@linkcode SETTLE_AFTER_FAILURE_MS}). */
  noteFailure(): void {
    this.#lastFailure = Date.now();
  }

  readonly leaseGoneError = EtcdLeaseInvalidError;

  isRecoverable(error: unknown): boolean {
    return error instanceof Error && isRecoverableError(error);
  }

  onRecoverableFailure(): void {
    this.noteFailure();
  }

  async get(key: string, deadline: number): Promise<KeyValue | undefined> {
    const kv = (await this.kv.range({ key: toBytes(key) }, { deadline })).kvs[0];
    return kv === undefined ? undefined : toKeyValue(kv);
  }

  async list(prefix: string, deadline: number): Promise<ListResult> {
    const res = await this.kv.range({ ...prefixRange(prefix), sort_order: "Ascend" }, { deadline });
    return { items: res.kvs.map(toKeyValue), revision: Number(res.header.revision) };
  }

  async put(
    key: string,
    value: string,
    lease: string | undefined,
    deadline: number,
  ): Promise<number> {
    const request = lease === undefined
      ? { key: toBytes(key), value: toBytes(value) }
      : { key: toBytes(key), value: toBytes(value), lease };
    return Number((await this.kv.put(request, { deadline })).header.revision);
  }

  async delete(key: string, deadline: number): Promise<boolean> {
    return Number((await this.kv.deleteRange({ key: toBytes(key) }, { deadline })).deleted) > 0;
  }

  async compareAndSet(
    key: string,
    value: string,
    expectedRevision: number,
    deadline: number,
  ): Promise<CasResult> {
    const k = toBytes(key);
    const compare = expectedRevision === 0
      ? { key: k, target: "Create" as const, result: "Equal" as const, create_revision: 0 }
      : {
        key: k,
        target: "Mod" as const,
        result: "Equal" as const,
        mod_revision: expectedRevision,
      };
    const res = await this.kv.txn({
      compare: [compare],
      success: [{ request_put: { key: k, value: toBytes(value) } }],
      failure: [{ request_range: { key: k } }],
    }, { deadline });
    if (res.succeeded) return { ok: true, revision: Number(res.header.revision) };
    const current = res.responses[0]?.response_range?.kvs[0];
    return { ok: false, revision: current === undefined ? 0 : Number(current.mod_revision) };
  }

  async countOnly(prefix: string, revision: number | undefined, deadline: number): Promise<number> {
    const request = revision === undefined
      ? { ...prefixRange(prefix), count_only: true }
      : { ...prefixRange(prefix), count_only: true, revision };
    return Number((await this.kv.range(request, { deadline })).header.revision);
  }

  async grant(ttlSeconds: number, deadline: number): Promise<string> {
    return (await this.leases.leaseGrant({ TTL: ttlSeconds }, { deadline })).ID;
  }

  async revoke(lease: string, deadline: number): Promise<void> {
    await this.leases.leaseRevoke({ ID: lease }, { deadline });
  }

  watchChannel(): WatchChannel {
    return new Etcd3WatchChannel(this);
  }

  keepAliveChannel(): KeepAliveChannel {
    return new Etcd3KeepAlive(this);
  }

  async close(): Promise<void> {
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

/** One gRPC `Watch` stream per connection of a watch. */
class Etcd3WatchChannel implements WatchChannel {
  constructor(readonly transport: Etcd3Transport) {}

  async open(): Promise<WatchStream> {
    const stream = await this.transport.watches.watch();
    return {
      create: (prefix, revision, sink) => {
        stream.on("data", (res: IWatchResponse) => sink.response(watchAnswer(res)));
        stream.on("error", (error: Error) => sink.fail(error));
        stream.on("end", () => sink.fail(new Error("etcd ended the watch stream")));
        const range = prefixRange(prefix);
        stream.write({
          create_request: {
            key: range.key,
            range_end: range.range_end,
            start_revision: revision,
            progress_notify: true,
          },
        });
      },
      end: () => endStream(stream),
    };
  }

  noAnswer(): Error {
    return new Error(`no answer to the watch request within the timeout`);
  }

  /** Every failure of a first connection is tried again (until the call timeout). */
  isRetryable(): boolean {
    return true;
  }

  onRetry(): void {}

  onStreamFailure(): void {
    this.transport.noteFailure();
  }

  drained(): Promise<void> {
    return Promise.resolve();
  }
}

function watchAnswer(res: IWatchResponse): WatchAnswer {
  return {
    created: res.created,
    canceled: res.canceled,
    compactRevision: Number(res.compact_revision),
    cancelReason: res.cancel_reason,
    headerRevision: Number(res.header?.revision ?? 0),
    events: res.events.map((event): WatchEvent => {
      const revision = Number(event.kv.mod_revision);
      const key = event.kv.key.toString("utf8");
      return event.type === "Delete"
        ? { type: "delete", key, revision }
        : { type: "put", key, value: event.kv.value.toString("utf8"), revision };
    }),
  };
}

/** A `LeaseKeepAlive` stream, opened on the first keep-alive and kept while they are answered. */
class Etcd3KeepAlive implements KeepAliveChannel {
  #stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  #pending:
    | { resolve: (r: ILeaseKeepAliveResponse) => void; reject: (e: Error) => void }
    | undefined;

  constructor(readonly transport: Etcd3Transport) {}

  async ping(lease: string, timeoutMs: number, stopped: AbortSignal): Promise<number> {
    if (this.#stream === undefined) {
      const stream = await this.transport.leases.leaseKeepAlive();
      if (stopped.aborted) {
        void endStream(stream);
        throw new Error("stopped");
      }
      const fail = (error: Error) => {
        if (this.#stream !== stream) return;
        this.transport.noteFailure();
        this.#pending?.reject(error);
        this.#pending = undefined;
        this.drop();
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
    const res = await new Promise<ILeaseKeepAliveResponse>((resolve, reject) => {
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
      stream.write({ ID: lease });
    });
    return Number(res.TTL);
  }

  /** A failed keep-alive drops the stream; the next one opens a new stream. */
  failed(): void {
    this.drop();
  }

  drop(): void {
    const stream = this.#stream;
    this.#stream = undefined;
    this.#pending?.reject(new Error("keep-alive stream closed"));
    this.#pending = undefined;
    if (stream !== undefined) void endStream(stream);
  }
}

/**
 * Connects to etcd at `settings.endpoints`. Fails with
 * `StoreUnavailableError` naming the endpoints when none answers
 * within `settings.connectTimeoutMs` (default 5 s).
 *
 * ```ts ignore
 * const store = await openEtcdStore({
 *   backend: "etcd", endpoints: ["127.0.0.1:2379"], prefix: "/monitor", path: "",
 * });
 * await store.put("/monitor/x", "1");
 * await store.close();
 * ```
 */
export function openEtcdStore(
  settings: StoreSettings,
  options: EtcdStoreOptions = {},
): Promise<EtcdStore> {
  return openEtcdStoreWith(settings, options, (urls) => new Etcd3Transport(urls));
}
