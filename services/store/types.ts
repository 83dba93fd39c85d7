/**
 * The Store port: a small key-value interface with revisions, watches and
 * leases. Services use only this interface; the backends (`etcd`, `embedded`)
 * live in their own modules and are chosen by {@linkcode openStore}.
 *
 * @module
 */

/** One stored key. */
export interface KeyValue {
  /** Full key, e.g. `/monitor/config/web-1`. */
  key: string;
  /** Value as UTF-8 text (JSON for every key the product writes). */
  value: string;
  /** Store revision of the last modification of this key. */
  modRevision: number;
  /** Store revision at which this key was created. */
  createRevision: number;
  /** Lease the key is attached to, if any. */
  lease?: string;
}

/** A change seen by a watcher. */
export type WatchEvent =
  | { type: "put"; key: string; value: string; revision: number }
  | { type: "delete"; key: string; revision: number };

/** Result of listing a prefix: the items and the store revision they were read at. */
export interface ListResult {
  /** The keys under the prefix, sorted by key. */
  items: KeyValue[];
  /** Store revision at the moment of the read; watch from `revision + 1` to miss nothing. */
  revision: number;
}

/** Options of {@linkcode Store.watch}. */
export interface WatchOptions {
  /**
   * First revision to report. Events with `revision >= fromRevision` are
   * delivered in revision order. Omitted: only changes after the call.
   * A revision that the backend has already compacted makes `watch()` reject
   * with {@linkcode StoreCompactedError}.
   */
  fromRevision?: number;
  /**
   * Called once when the watch stops for good because of an error it cannot
   * recover from (for example its next revision was compacted while it was
   * disconnected). Connection losses are not reported here: the watch resumes
   * from the last revision it saw. Never called after `close()`.
   */
  onError?: (error: Error) => void;
}

/** A running watch. */
export interface Watcher {
  /** Stops the watch; no event is delivered after the returned promise resolves. */
  close(): Promise<void>;
}

/** Outcome of {@linkcode Store.compareAndSet}. */
export interface CasResult {
  /** True when the write happened. */
  ok: boolean;
  /** The key's modRevision after the call (0 when the key does not exist). */
  revision: number;
}

/**
 * A lease with a TTL. Keep-alive runs automatically until `revoke()` or the
 * store is closed. Keys put through the lease disappear when it expires.
 * When the backend reports the lease lost (expired during a partition), the
 * implementation grants a new one and re-puts the keys put through it, then
 * calls the `onLost` listeners.
 */
export interface Lease {
  /** Backend lease id (changes when the lease is re-established). */
  readonly id: string;
  /** TTL in seconds. */
  readonly ttl: number;
  /** Puts a key attached to this lease; returns the new store revision. */
  put(key: string, value: string): Promise<number>;
  /** Revokes the lease now, deleting its keys. */
  revoke(): Promise<void>;
  /** Registers a listener called after the lease was lost and re-established. */
  onLost(listener: (error: Error) => void): void;
}

/** The Store port. */
export interface Store {
  /** `"etcd"` or `"embedded"`. */
  readonly backend: string;
  /** Reads one key. */
  get(key: string): Promise<KeyValue | undefined>;
  /** Lists every key that starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<ListResult>;
  /** Writes a key; returns the new store revision. */
  put(key: string, value: string): Promise<number>;
  /** Deletes a key; true when it existed. */
  delete(key: string): Promise<boolean>;
  /**
   * Writes `value` only if the key's modRevision equals `expectedRevision`
   * (0 means: only if the key does not exist).
   */
  compareAndSet(
    key: string,
    value: string,
    expectedRevision: number,
  ): Promise<CasResult>;
  /**
   * Watches every key under `prefix`. `onEvent` is called in revision order
   * and awaited before the next event.
   */
  watch(
    prefix: string,
    options: WatchOptions,
    onEvent: (event: WatchEvent) => void | Promise<void>,
  ): Promise<Watcher>;
  /** Grants a lease with the given TTL in seconds (keep-alive starts at once). */
  lease(ttlSeconds: number): Promise<Lease>;
  /** Stops watches and keep-alives and releases connections. Idempotent. */
  close(): Promise<void>;
}

/** Store connection settings, as in monitor.yaml's `store:` section. */
export interface StoreSettings {
  /** Which backend {@linkcode openStore} opens. */
  backend: "embedded" | "etcd";
  /** etcd only: `host:port` list. */
  endpoints: string[];
  /** Key prefix of the product, default `/monitor`. */
  prefix: string;
  /** embedded only: path of the SQLite file. */
  path: string;
  /** How long connecting may take before failing with an error naming the endpoint (ms). */
  connectTimeoutMs?: number;
}

/**
 * Which client a process uses for the etcd backend (a per-process choice,
 * not part of monitor.yaml; both speak to the same etcd and behave the same):
 * - `"etcd3"` (default): the etcd3 npm package over gRPC (grpc-js,
 *   protobufjs, etcd's `rpc.proto` parsed at load);
 * - `"http"`: etcd's built-in HTTP/JSON gateway through `fetch`
 *   (services/store/etcd_http.ts): no client library, far cheaper to load.
 */
export interface EtcdClientOptions {
  /** Default `"etcd3"`. */
  client?: "etcd3" | "http";
}

/** Error raised when a backend cannot be reached; the message names the endpoint. */
export class StoreUnavailableError extends Error {
  /**
   * Creates the error.
   * @param endpoint what was tried, e.g. `etcd at 127.0.0.1:2379`
   * @param message the whole message (names the endpoint too)
   * @param options the underlying error as `cause`
   */
  constructor(
    /** What was tried, e.g. `etcd at 127.0.0.1:2379`. */
    readonly endpoint: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

/**
 * Error raised when a watch asks for history the backend no longer keeps
 * (the revision was compacted). Re-read with `list()` and watch from its
 * revision + 1.
 */
export class StoreCompactedError extends Error {
  /**
   * Creates the error.
   * @param requestedRevision the first revision the watch wanted
   * @param compactRevision the oldest revision a watch can still start from
   */
  constructor(
    /** The first revision the watch wanted. */
    readonly requestedRevision: number,
    /** The oldest revision a watch can still start from (0 when the backend did not say). */
    readonly compactRevision: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "StoreCompactedError";
  }
}
