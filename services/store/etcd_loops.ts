/**
 * The `etcd` Store, written once for both etcd clients over a small
 * {@linkcode EtcdTransport} that only says how to talk to etcd: the etcd3
 * gRPC client (`etcd.ts`) and the HTTP/JSON gateway with `fetch`
 * (`etcd_http.ts`). Everything about faults lives here, and no client
 * library is imported here (the agent loads this module with the HTTP
 * client and must never load etcd3):
 *
 * - Unary calls: one transport attempt at a time; failures the transport
 *   calls recoverable (connection refused, etcd restarting, leader election,
 *   no answer in time) are retried with a backoff from
 *   {@linkcode FIRST_BACKOFF_MS} doubling to {@linkcode MAX_BACKOFF_MS} for up
 *   to `callTimeoutMs`, then fail with {@linkcode StoreUnavailableError}
 *   naming the endpoints. Opening the store makes one such call, so an
 *   unreachable etcd fails {@linkcode openEtcdStoreWith} within the timeout.
 * - Watches: a watch keeps the revision after the last event it received
 *   (and after each progress notification) and, after a lost stream,
 *   re-creates the etcd watch from that revision with the same backoff until
 *   it works, however long the outage (etcd sends every event of one revision
 *   in one response).
 * - Leases: a lease sends a keep-alive every TTL/3. When etcd answers that the
 *   lease is gone (TTL 0, or "lease not found" on a put), a new lease is
 *   granted, every key put through the lease is put again, and the `onLost`
 *   listeners are called.
 *
 * Invariants (the store contract suite checks them for both clients):
 * - A watch hands each event after its start revision to its handler exactly
 *   once and in revision order, across any number of reconnects: events below
 *   its next revision are dropped, and it resumes from that revision.
 * - A watch from a compacted revision never skips silently: it ends with one
 *   {@linkcode StoreCompactedError} (to `onError`, else the log), from which
 *   the caller reloads with `list()` (a full reload) and watches again.
 * - A lost lease is re-granted once however many callers notice at the same
 *   time, and its keys are all put again before the listeners hear of it.
 * - Nothing outlives {@linkcode EtcdStore.close}: every stream is ended, every
 *   retry pause and reconnect loop is over, every keep-alive stopped.
 *
 * A client is a transport and one line to open it:
 *
 * ```ts
 * import { type EtcdTransport, openEtcdStoreWith } from "./etcd_loops.ts";
 *
 * declare function myTransport(urls: string[], closing: AbortSignal): EtcdTransport;
 * export const open = () =>
 *   openEtcdStoreWith(
 *     { backend: "etcd", endpoints: ["127.0.0.1:2379"], prefix: "/monitor", path: "" },
 *     {},
 *     myTransport,
 *   );
 * ```
 *
 * @module
 */
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
 * The pause after `backoff` ms: doubled, at most {@linkcode MAX_BACKOFF_MS}.
 *
 * ```ts
 * import { nextBackoff } from "./etcd_loops.ts";
 * nextBackoff(50); // 100
 * nextBackoff(800); // 1000
 * ```
 */
export function nextBackoff(backoff: number): number {
  return Math.min(backoff * 2, MAX_BACKOFF_MS);
}

/**
 * How a client talks to etcd. Each method is one attempt (the retries,
 * backoff and error wording are the store's), answered by `deadline` (ms
 * since the epoch) or failed.
 */
export interface EtcdTransport {
  /** True for a failure a retry may fix (the network, etcd unavailable, no answer in time). */
  isRecoverable(error: unknown): boolean;
  /**
   * The error for a lease etcd does not know (any more): what {@linkcode put}
   * with a lease and {@linkcode revoke} fail with then, what a keep-alive
   * answered with no TTL left is reported as, and what calls throw as it is.
   */
  readonly leaseGoneError: new (lease: string) => Error;
  /** After a recoverable failure of a call (e.g. move to the next endpoint). */
  onRecoverableFailure(): void;
  /** The key, if present. */
  get(key: string, deadline: number): Promise<KeyValue | undefined>;
  /** Every key under `prefix` in key order, and the revision read at. */
  list(prefix: string, deadline: number): Promise<ListResult>;
  /** Puts `key` (through `lease` when given; an unknown lease fails with {@linkcode leaseGoneError}): the revision. */
  put(key: string, value: string, lease: string | undefined, deadline: number): Promise<number>;
  /** Deletes `key`: whether it existed. */
  delete(key: string, deadline: number): Promise<boolean>;
  /** Puts `key` when its mod revision is `expectedRevision` (0: when it does not exist). */
  compareAndSet(
    key: string,
    value: string,
    expectedRevision: number,
    deadline: number,
  ): Promise<CasResult>;
  /** A count-only read of `prefix` (at `revision` when given): the revision of its answer. */
  countOnly(prefix: string, revision: number | undefined, deadline: number): Promise<number>;
  /** Grants a lease: its id (anything but a non-empty string other than `"0"` is refused). */
  grant(ttlSeconds: number, deadline: number): Promise<string | undefined>;
  /** Revokes a lease (an unknown lease fails with {@linkcode leaseGoneError}). */
  revoke(lease: string, deadline: number): Promise<void>;
  /** A new channel for one watch. */
  watchChannel(): WatchChannel;
  /** A new channel for one lease's keep-alives. */
  keepAliveChannel(): KeepAliveChannel;
  /** Last step of the store's close, after every watch and lease ended. */
  close(): Promise<void>;
}

/** One answer of etcd on a watch stream, decoded. */
export interface WatchAnswer {
  /** The watch was created (the answer to the create request). */
  created: boolean;
  /** etcd cancelled the watch (a compacted start revision, or {@linkcode cancelReason}). */
  canceled: boolean;
  /** With `canceled`: the oldest revision still available (0: not a compaction). */
  compactRevision: number;
  /** With `canceled`: what etcd said. */
  cancelReason: string;
  /** The revision of the answer's header. */
  headerRevision: number;
  /** The events, in order (none: a progress notification). */
  events: WatchEvent[];
}

/** Where a watch stream hands what it reads. */
export interface WatchSink {
  /** One answer of etcd. */
  response(answer: WatchAnswer): void;
  /** The stream failed or ended. */
  fail(error: Error): void;
}

/** One open watch stream. */
export interface WatchStream {
  /** Asks etcd to watch `prefix` from `revision` (with progress notifications); answers go to `sink`. */
  create(prefix: string, revision: number, sink: WatchSink): void;
  /** Ends the stream; resolves when it is finished (or shortly after). */
  end(): Promise<void>;
}

/** How one watch opens streams. */
export interface WatchChannel {
  /** Opens a stream (not yet watching). */
  open(): Promise<WatchStream>;
  /** The error when etcd did not confirm the watch within `ms`. */
  noAnswer(ms: number): Error;
  /** Whether a failed first connection is worth another try (else it fails at once). */
  isRetryable(error: unknown): boolean;
  /** Before each new try after a failed connection (e.g. move to the next endpoint). */
  onRetry(): void;
  /** A stream failed after it was opened. */
  onStreamFailure(): void;
  /** Resolves when every stream of this channel is finished (the watch's close waits for it). */
  drained(): Promise<void>;
}

/** How one lease sends keep-alives. */
export interface KeepAliveChannel {
  /**
   * Sends one keep-alive for `lease`: the TTL etcd answered (0: the lease is
   * gone). Rejects when there is no answer within `timeoutMs`, or when
   * `stopped` aborts while a stream opens.
   */
  ping(lease: string, timeoutMs: number, stopped: AbortSignal): Promise<number>;
  /** A ping (or re-granting the lease) failed while the lease runs. */
  failed(error: unknown): void;
  /** Drops what the channel holds open; the next ping opens it again. */
  drop(): void;
}

/** Tuning of the etcd backend. */
export interface EtcdStoreOptions {
  /** Retry budget of each call, and the connect timeout (ms). Default: `settings.connectTimeoutMs` or 5000. */
  callTimeoutMs?: number;
}

/** The etcd Store over a transport. Open it with {@linkcode openEtcdStoreWith}. */
export class EtcdStore implements Store {
  /** Always `"etcd"`. */
  readonly backend = "etcd";
  /** What errors name, e.g. `etcd at 127.0.0.1:2379`. */
  readonly endpoint: string;
  /** Retry budget of each call (ms). */
  readonly callTimeoutMs: number;
  /** @internal */
  readonly transport: EtcdTransport;
  #closed = false;
  /** Aborted on close: ends every retry pause, reconnect wait and (HTTP) request. */
  readonly #closing = new AbortController();
  #watchers = new Set<LoopWatcher>();
  #leaseSet = new Set<LoopLease>();

  /** Use {@linkcode openEtcdStoreWith}. */
  constructor(
    endpoints: string[],
    callTimeoutMs: number,
    transport: (urls: string[], closing: AbortSignal) => EtcdTransport,
  ) {
    this.endpoint = etcdLabel(endpoints);
    this.callTimeoutMs = callTimeoutMs;
    this.transport = transport(endpoints.map(endpointUrl), this.#closing.signal);
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Runs one etcd call, retrying recoverable errors with backoff for up to
   * {@linkcode callTimeoutMs}; then fails with {@linkcode StoreUnavailableError}.
   * A lease etcd does not know is thrown as the transport reported it.
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
        if (error instanceof this.transport.leaseGoneError) throw error;
        if (!this.transport.isRecoverable(error)) {
          throw new Error(`${this.endpoint}: ${what}: ${errorMessage(error)}`, { cause: error });
        }
        this.transport.onRecoverableFailure();
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
        backoff = nextBackoff(backoff);
      }
    }
  }

  #check(where: string) {
    if (this.#closed) throw new Error(`${this.endpoint}: ${where}: the store is closed`);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key, "get");
    this.#check("get");
    return await this.call(`get ${JSON.stringify(key)}`, (d) => this.transport.get(key, d));
  }

  async list(prefix: string): Promise<ListResult> {
    checkPrefix(prefix, "list");
    this.#check("list");
    return await this.call(`list ${JSON.stringify(prefix)}`, (d) => this.transport.list(prefix, d));
  }

  async put(key: string, value: string): Promise<number> {
    checkKey(key, "put");
    checkValue(value, `put ${JSON.stringify(key)}`);
    this.#check("put");
    return await this.call(
      `put ${JSON.stringify(key)}`,
      (d) => this.transport.put(key, value, undefined, d),
    );
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key, "delete");
    this.#check("delete");
    return await this.call(`delete ${JSON.stringify(key)}`, (d) => this.transport.delete(key, d));
  }

  async compareAndSet(key: string, value: string, expectedRevision: number): Promise<CasResult> {
    checkKey(key, "compareAndSet");
    checkValue(value, `compareAndSet ${JSON.stringify(key)}`);
    checkRevision(expectedRevision, `compareAndSet ${JSON.stringify(key)}: expectedRevision`, 0);
    this.#check("compareAndSet");
    return await this.call(
      `compareAndSet ${JSON.stringify(key)}`,
      (d) => this.transport.compareAndSet(key, value, expectedRevision, d),
    );
  }

  async watch(
    prefix: string,
    options: WatchOptions,
    onEvent: (event: WatchEvent) => void | Promise<void>,
  ): Promise<Watcher> {
    checkWatchArgs(prefix, options, onEvent);
    this.#check("watch");
    const what = `watch ${JSON.stringify(prefix)}`;
    let from = options.fromRevision;
    let compacted = false;
    if (from !== undefined) {
      // etcd reports a compacted start revision only after confirming the watch; a read at
      // that revision tells at once (a future revision is fine for a watch).
      const at = from;
      try {
        await this.call(what, (d) => this.transport.countOnly(prefix, at, d));
      } catch (error) {
        const message = errorMessage(error);
        if (/required revision has been compacted/.test(message)) compacted = true;
        else if (!/future revision/.test(message)) throw error;
      }
    } else {
      // "Only changes after the call": pin the current revision now.
      from = (await this.call(what, (d) => this.transport.countOnly(prefix, undefined, d))) + 1;
    }
    const watcher = new LoopWatcher(
      this,
      this.transport.watchChannel(),
      prefix,
      from,
      onEvent,
      options.onError,
      (w) => this.#watchers.delete(w),
      compacted,
    );
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
    const lease = new LoopLease(
      this,
      this.transport.keepAliveChannel(),
      id,
      ttlSeconds,
      (l) => this.#leaseSet.delete(l),
    );
    this.#leaseSet.add(lease);
    return lease;
  }

  /** @internal Grants a lease; its id. */
  async grant(ttlSeconds: number): Promise<string> {
    const id = await this.call(
      `lease grant (TTL ${ttlSeconds} s)`,
      (d) => this.transport.grant(ttlSeconds, d),
    );
    if (typeof id !== "string" || id === "" || id === "0") {
      throw new Error(`${this.endpoint}: lease grant: etcd answered without a lease id`);
    }
    return id;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    await Promise.all([
      ...[...this.#watchers].map((w) => w.close()),
      ...[...this.#leaseSet].map((l) => l.stop()),
    ]);
    await this.transport.close();
  }
}

/** A watch on etcd that resumes from the last revision it saw after a connection loss. */
class LoopWatcher implements Watcher {
  #next: number;
  #closed = false;
  #stream: WatchStream | undefined;
  #dispatcher: WatchDispatcher;
  #reconnecting: Promise<void> | undefined;
  #wait = new AbortController();
  #outageSince: number | undefined;

  constructor(
    readonly store: EtcdStore,
    readonly channel: WatchChannel,
    readonly prefix: string,
    from: number,
    onEvent: (event: WatchEvent) => void | Promise<void>,
    readonly onError: ((error: Error) => void) | undefined,
    readonly onClosed: (watcher: LoopWatcher) => void,
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
        if (!this.channel.isRetryable(error)) {
          throw new Error(`${this.store.endpoint}: ${this.#what}: ${errorMessage(error)}`, {
            cause: error,
          });
        }
        this.channel.onRetry();
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
        backoff = nextBackoff(backoff);
      }
    }
  }

  /**
   * Opens a stream and creates the etcd watch from `#next`. Resolves once
   * etcd confirmed the watch; rejects when the stream fails first, when etcd
   * refuses (compacted revision) or at `deadline`.
   */
  async #connect(deadline: number): Promise<void> {
    if (this.#closed) throw new Error("closed");
    const stream = await this.channel.open();
    if (this.#closed) {
      await stream.end();
      throw new Error("closed");
    }
    this.#stream = stream;
    await new Promise<void>((resolve, reject) => {
      let created = false;
      const ms = Math.max(1, deadline - Date.now());
      const timer = setTimeout(() => {
        if (!created) fail(this.channel.noAnswer(ms));
      }, ms);
      const fail = (error: Error) => {
        clearTimeout(timer);
        if (this.#stream !== stream) return;
        this.channel.onStreamFailure();
        this.#stream = undefined;
        void stream.end();
        if (!created) {
          created = true; // settle once
          reject(error);
        } else if (error instanceof StoreCompactedError) {
          this.#fail(error);
        } else {
          this.#lost(error);
        }
      };
      const confirm = () => {
        if (created) return;
        created = true;
        clearTimeout(timer);
        this.#resumed();
        resolve();
      };
      const response = (res: WatchAnswer) => {
        if (this.#stream !== stream || this.#closed) return;
        if (res.canceled) {
          const compact = res.compactRevision;
          fail(
            compact > 0
              ? new StoreCompactedError(
                this.#next,
                compact,
                `${this.#what} from revision ${this.#next}: that revision was compacted; ` +
                  `the oldest revision available is ${compact}. Re-read with list() and watch from its revision + 1`,
              )
              : new Error(`etcd cancelled the watch: ${res.cancelReason || "no reason given"}`),
          );
          return;
        }
        if (res.created) {
          // A watch from a compacted revision is confirmed, then cancelled: wait for that.
          if (!this.expectCompaction) confirm();
          return;
        }
        confirm();
        this.#receive(res);
      };
      stream.create(this.prefix, this.#next, { response, fail });
    });
  }

  #receive(res: WatchAnswer) {
    if (res.events.length === 0) {
      // Progress notification: everything up to the header revision was sent.
      this.#next = Math.max(this.#next, res.headerRevision + 1);
      return;
    }
    const events: WatchEvent[] = [];
    let last = this.#next - 1;
    for (const event of res.events) {
      if (event.revision < this.#next) continue; // already delivered before a reconnect
      last = Math.max(last, event.revision);
      events.push(event);
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
          this.channel.onRetry();
          log.debug(`${this.#what}: reconnect failed: ${errorMessage(e)}`);
          backoff = nextBackoff(backoff);
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
      await this.channel.drained();
      return;
    }
    this.#closed = true;
    this.#dispatcher.close();
    this.#wait.abort();
    const stream = this.#stream;
    this.#stream = undefined;
    this.onClosed(this);
    if (stream !== undefined) await stream.end();
    await this.#reconnecting;
    await this.channel.drained();
  }
}

/** A lease on etcd with its own keep-alive and re-establishment. */
class LoopLease implements Lease {
  #id: string;
  #keys = new Map<string, string>();
  #listeners: ((error: Error) => void)[] = [];
  #stopped = false;
  #wait = new AbortController();
  #loop: Promise<void>;
  /** Set when etcd said the lease is gone and it could not be re-established yet. */
  #lostError: Error | undefined;
  #failing = false;
  #reestablishing: Promise<void> | undefined;

  constructor(
    readonly store: EtcdStore,
    readonly keepAlive: KeepAliveChannel,
    id: string,
    readonly ttl: number,
    readonly onEnded: (lease: LoopLease) => void,
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
        return await this.store.call(
          `lease ${id}: put ${JSON.stringify(key)}`,
          (d) => this.store.transport.put(key, value, id, d),
        );
      } catch (error) {
        if (!(error instanceof this.store.transport.leaseGoneError) || attempt > 0) throw error;
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
          const ttl = await this.keepAlive.ping(this.#id, interval, this.#wait.signal);
          if (ttl <= 0) {
            await this.#reestablish(new this.store.transport.leaseGoneError(this.#id));
          } else if (this.#failing) {
            this.#failing = false;
            log.info(`lease ${this.#id}: keep-alive works again`);
          }
        }
      } catch (error) {
        if (this.#stopped) break;
        this.keepAlive.failed(error);
        if (!this.#failing) {
          this.#failing = true;
          log.warn(`lease ${this.#id}: keep-alive failed (${errorMessage(error)}); retrying`);
        }
      }
      await sleep(this.#failing ? Math.min(interval, MAX_BACKOFF_MS) : interval, this.#wait.signal);
    }
    this.keepAlive.drop();
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
    this.keepAlive.drop();
    for (const [key, value] of this.#keys) {
      await this.store.call(
        `lease ${id}: re-put ${JSON.stringify(key)}`,
        (d) => this.store.transport.put(key, value, id, d),
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
      await this.store.call(`lease ${id}: revoke`, (d) => this.store.transport.revoke(id, d));
    } catch (error) {
      if (!(error instanceof this.store.transport.leaseGoneError)) throw error;
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
      this.keepAlive.drop();
      this.onEnded(this);
    }
    await this.#loop;
  }
}

/**
 * Connects to etcd at `settings.endpoints` through the transport `transport`
 * makes. Fails with {@linkcode StoreUnavailableError} naming the endpoints
 * when none answers within `settings.connectTimeoutMs` (default 5 s).
 */
export async function openEtcdStoreWith(
  settings: StoreSettings,
  options: EtcdStoreOptions,
  transport: (urls: string[], closing: AbortSignal) => EtcdTransport,
): Promise<EtcdStore> {
  const endpoints = normalizeEndpoints(settings?.endpoints);
  const timeout = options.callTimeoutMs ?? settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout <= 0) {
    throw new TypeError(`store.connectTimeoutMs: expected a number of ms > 0, got ${timeout}`);
  }
  const prefix = typeof settings.prefix === "string" ? settings.prefix : "";
  const store = new EtcdStore(endpoints, timeout, transport);
  try {
    await store.call("connect", (d) => store.transport.countOnly(prefix, undefined, d));
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
