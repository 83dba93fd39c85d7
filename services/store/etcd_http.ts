/**
 * The `etcd` Store backend without a client library: etcd's own HTTP/JSON
 * gateway (served on the client URL since etcd 3.4: `POST /v3/kv/range`,
 * `/v3/watch`, `/v3/lease/keepalive`, ...) through Deno's `fetch`. Keys and
 * values travel as base64, 64-bit integers as decimal strings. Same
 * behaviour and error language as the etcd3 client (`etcd.ts`), at a
 * fraction of its start-up cost: no grpc-js, protobufjs or `rpc.proto` to
 * load (chosen per process with `openStore(settings, { etcd: { client: "http" } })`;
 * the agent uses it).
 *
 * - Unary calls retry recoverable errors (connection refused or reset,
 *   etcd unavailable or electing a leader, no answer in time) with a short
 *   backoff for up to `connectTimeoutMs`, moving to the next endpoint, then
 *   fail with {@linkcode StoreUnavailableError} naming the endpoints.
 * - A watch is one streamed `POST /v3/watch` (newline-delimited JSON
 *   `{"result": WatchResponse}`). It keeps the revision of the last event (and
 *   of progress notifications) and, after a dropped stream, creates the
 *   watch again from the next revision, so nothing is missed or repeated.
 * - A lease sends one `POST /v3/lease/keepalive` every TTL/3. An answer
 *   without TTL, or "lease not found" on a put, means the lease is gone: a
 *   new one is granted, every key put through it is put again, and the
 *   `onLost` listeners are called.
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

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** gRPC status codes etcd's gateway reports in `code` that are worth a retry. */
const RETRY_CODES = new Set([
  1, // CANCELLED
  4, // DEADLINE_EXCEEDED
  14, // UNAVAILABLE (etcd starting, no leader, leader changed)
]);
/** gRPC NOT_FOUND, which etcd answers for an unknown lease. */
const CODE_NOT_FOUND = 5;

/** Tuning of the HTTP etcd backend. */
export interface EtcdHttpStoreOptions {
  /** Retry budget of each call, and the connect timeout (ms). Default: `settings.connectTimeoutMs` or 5000. */
  callTimeoutMs?: number;
}

/** An error answer of etcd's gateway (`{"error", "message", "code"}`). */
export class EtcdHttpError extends Error {
  /**
   * @param code gRPC status code from the answer (0 when there was none)
   * @param status HTTP status (0 inside a stream)
   * @param message etcd's message
   */
  constructor(readonly code: number, readonly status: number, message: string) {
    super(message);
    this.name = "EtcdHttpError";
  }
}

/** etcd said the lease does not exist (any more). */
export class EtcdLeaseGoneError extends Error {
  /** @param id the lease */
  constructor(readonly id: string, options?: ErrorOptions) {
    super(`lease ${id} not found`, options);
    this.name = "EtcdLeaseGoneError";
  }
}

/** True for failures a retry may fix: the network, etcd unavailable, no answer in time. */
export function isRecoverable(error: unknown): boolean {
  if (error instanceof EtcdHttpError) {
    return RETRY_CODES.has(error.code) || error.status === 502 || error.status === 503 ||
      error.status === 504;
  }
  if (error instanceof EtcdLeaseGoneError) return false;
  // fetch rejects with a TypeError on network failures; our per-attempt timer aborts.
  return error instanceof TypeError ||
    (error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError")) ||
    error instanceof NoAnswerError;
}

class NoAnswerError extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = "NoAnswerError";
  }
}

/** UTF-8 text as base64 (the gateway's `bytes`). */
export function toBase64(text: string): string {
  return encoder.encode(text).toBase64();
}

/** Base64 `bytes` from the gateway as UTF-8 text (absent means empty). */
export function fromBase64(data: unknown): string {
  if (typeof data !== "string" || data === "") return "";
  return decoder.decode(Uint8Array.fromBase64(data));
}

/** Key range of a prefix in base64 (etcd's convention: `\0` means "no end"); the empty prefix is every key. */
export function prefixRange(prefix: string): { key: string; range_end: string } {
  const zero = new Uint8Array([0]).toBase64();
  if (prefix === "") return { key: zero, range_end: zero };
  const bytes = encoder.encode(prefix);
  const end = bytes.slice();
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return { key: bytes.toBase64(), range_end: end.subarray(0, i + 1).toBase64() };
    }
  }
  return { key: bytes.toBase64(), range_end: zero };
}

/** A gateway key-value (`mvccpb.KeyValue` as JSON). */
interface JsonKeyValue {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

interface JsonHeader {
  revision?: string;
}

interface RangeResponse {
  header?: JsonHeader;
  kvs?: JsonKeyValue[];
}

interface WatchResponse {
  header?: JsonHeader;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  events?: Array<{ type?: string; kv?: JsonKeyValue }>;
}

function num(value: unknown): number {
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? n : 0;
}

function toKeyValue(kv: JsonKeyValue): KeyValue {
  const result: KeyValue = {
    key: fromBase64(kv.key),
    value: fromBase64(kv.value),
    modRevision: num(kv.mod_revision),
    createRevision: num(kv.create_revision),
  };
  if (kv.lease !== undefined && kv.lease !== "0" && kv.lease !== "") result.lease = kv.lease;
  return result;
}

/** Parses an error body of the gateway; falls back to the HTTP status. */
function errorFrom(status: number, text: string): EtcdHttpError {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown; code?: unknown };
    const message = typeof body.message === "string"
      ? body.message
      : typeof body.error === "string"
      ? body.error
      : undefined;
    if (message !== undefined) return new EtcdHttpError(num(body.code), status, message);
  } catch {
    // not JSON: below
  }
  return new EtcdHttpError(0, status, `HTTP ${status}: ${text.slice(0, 200)}`);
}

/** Reads newline-delimited JSON objects from a response body. */
async function* jsonLines(body: ReadableStream<Uint8Array>): AsyncGenerator<unknown> {
  const lines = body.pipeThrough(new TextDecoderStream());
  let buffered = "";
  for await (const chunk of lines) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line !== "") yield JSON.parse(line);
    }
  }
  if (buffered.trim() !== "") yield JSON.parse(buffered);
}

/** The etcd Store over the HTTP/JSON gateway. Open it with {@linkcode openEtcdHttpStore}. */
export class EtcdHttpStore implements Store {
  /** Always `"etcd"`. */
  readonly backend = "etcd";
  /** What errors name, e.g. `etcd at 127.0.0.1:2379`. */
  readonly endpoint: string;
  /** Retry budget of each call (ms). */
  readonly callTimeoutMs: number;
  readonly #urls: string[];
  #current = 0;
  #closed = false;
  /** Aborted on close: ends every request, retry pause and reconnect wait. */
  readonly #closing = new AbortController();
  #watchers = new Set<EtcdHttpWatcher>();
  #leaseSet = new Set<EtcdHttpLease>();

  /** Use {@linkcode openEtcdHttpStore}. */
  constructor(endpoints: string[], callTimeoutMs: number) {
    this.endpoint = etcdLabel(endpoints);
    this.callTimeoutMs = callTimeoutMs;
    this.#urls = endpoints.map(endpointUrl);
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Aborted when the store closes. */
  get closingSignal(): AbortSignal {
    return this.#closing.signal;
  }

  /** The endpoint to use now; {@linkcode failover} moves on after a failure. */
  get url(): string {
    return this.#urls[this.#current];
  }

  /** @internal Moves to the next endpoint (after a recoverable failure). */
  failover(): void {
    this.#current = (this.#current + 1) % this.#urls.length;
  }

  /**
   * Starts one request; the response (status checked) or an {@linkcode EtcdHttpError}.
   * @internal
   */
  async request(path: string, body: unknown, signal: AbortSignal): Promise<Response> {
    const res = await fetch(`${this.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
    if (!res.ok) throw errorFrom(res.status, await res.text());
    return res;
  }

  /**
   * One unary request answered before `deadline`: its JSON body. For the
   * streamed `lease/keepalive`, the first result.
   * @internal
   */
  async post<T>(path: string, body: unknown, deadline: number): Promise<T> {
    const ms = Math.max(1, deadline - Date.now());
    const timer = new AbortController();
    const timeout = setTimeout(() => timer.abort(new NoAnswerError(ms)), ms);
    const signal = AbortSignal.any([timer.signal, this.#closing.signal]);
    try {
      const res = await this.request(path, body, signal);
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text.split("\n", 1)[0]);
      } catch {
        throw new Error(
          `${path}: expected a JSON answer, got ${JSON.stringify(text.slice(0, 200))}`,
        );
      }
      const answer = parsed as { result?: unknown; error?: { message?: string; code?: number } };
      if (typeof answer !== "object" || answer === null) {
        throw new Error(
          `${path}: expected a JSON object, got ${JSON.stringify(text.slice(0, 200))}`,
        );
      }
      if (answer.error !== undefined) {
        throw new EtcdHttpError(num(answer.error.code), 0, String(answer.error.message ?? "error"));
      }
      return ("result" in answer ? answer.result : answer) as T;
    } catch (error) {
      if (timer.signal.aborted && !this.#closed) throw timer.signal.reason;
      throw error;
    } finally {
      clearTimeout(timeout);
    }
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
        if (error instanceof EtcdLeaseGoneError) throw error;
        if (!isRecoverable(error)) {
          throw new Error(`${this.endpoint}: ${what}: ${errorMessage(error)}`, { cause: error });
        }
        this.failover();
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

  /** @internal `kv/range` (count only), e.g. to pin a revision or probe a compacted one. */
  countOnly(what: string, prefix: string, revision?: number): Promise<RangeResponse> {
    const body: Record<string, unknown> = { ...prefixRange(prefix), count_only: true };
    if (revision !== undefined) body.revision = String(revision);
    return this.call(what, (deadline) => this.post<RangeResponse>("/v3/kv/range", body, deadline));
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key, "get");
    this.#check("get");
    const res = await this.call(
      `get ${JSON.stringify(key)}`,
      (deadline) => this.post<RangeResponse>("/v3/kv/range", { key: toBase64(key) }, deadline),
    );
    const kv = res.kvs?.[0];
    return kv === undefined ? undefined : toKeyValue(kv);
  }

  async list(prefix: string): Promise<ListResult> {
    checkPrefix(prefix, "list");
    this.#check("list");
    const res = await this.call(
      `list ${JSON.stringify(prefix)}`,
      (deadline) =>
        this.post<RangeResponse>(
          "/v3/kv/range",
          { ...prefixRange(prefix), sort_order: "ASCEND", sort_target: "KEY" },
          deadline,
        ),
    );
    return { items: (res.kvs ?? []).map(toKeyValue), revision: num(res.header?.revision) };
  }

  async put(key: string, value: string): Promise<number> {
    checkKey(key, "put");
    checkValue(value, `put ${JSON.stringify(key)}`);
    this.#check("put");
    return await this.putRaw(`put ${JSON.stringify(key)}`, key, value);
  }

  /** @internal `kv/put`, optionally through a lease (unknown lease: {@linkcode EtcdLeaseGoneError}). */
  async putRaw(what: string, key: string, value: string, lease?: string): Promise<number> {
    const body: Record<string, unknown> = { key: toBase64(key), value: toBase64(value) };
    if (lease !== undefined) body.lease = lease;
    const res = await this.call(what, async (deadline) => {
      try {
        return await this.post<RangeResponse>("/v3/kv/put", body, deadline);
      } catch (error) {
        if (lease !== undefined && isLeaseNotFound(error)) {
          throw new EtcdLeaseGoneError(lease, { cause: error });
        }
        throw error;
      }
    });
    return num(res.header?.revision);
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key, "delete");
    this.#check("delete");
    const res = await this.call(
      `delete ${JSON.stringify(key)}`,
      (deadline) =>
        this.post<{ deleted?: string }>("/v3/kv/deleterange", { key: toBase64(key) }, deadline),
    );
    return num(res.deleted) > 0;
  }

  async compareAndSet(key: string, value: string, expectedRevision: number): Promise<CasResult> {
    checkKey(key, "compareAndSet");
    checkValue(value, `compareAndSet ${JSON.stringify(key)}`);
    checkRevision(expectedRevision, `compareAndSet ${JSON.stringify(key)}: expectedRevision`, 0);
    this.#check("compareAndSet");
    const k = toBase64(key);
    const compare = expectedRevision === 0
      ? { key: k, target: "CREATE", result: "EQUAL", create_revision: "0" }
      : { key: k, target: "MOD", result: "EQUAL", mod_revision: String(expectedRevision) };
    const res = await this.call(
      `compareAndSet ${JSON.stringify(key)}`,
      (deadline) =>
        this.post<{
          header?: JsonHeader;
          succeeded?: boolean;
          responses?: Array<{ response_range?: RangeResponse }>;
        }>("/v3/kv/txn", {
          compare: [compare],
          success: [{ request_put: { key: k, value: toBase64(value) } }],
          failure: [{ request_range: { key: k } }],
        }, deadline),
    );
    if (res.succeeded === true) return { ok: true, revision: num(res.header?.revision) };
    const current = res.responses?.[0]?.response_range?.kvs?.[0];
    return { ok: false, revision: current === undefined ? 0 : num(current.mod_revision) };
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
      try {
        await this.countOnly(what, prefix, from);
      } catch (error) {
        const message = errorMessage(error);
        if (/required revision has been compacted/.test(message)) compacted = true;
        else if (!/future revision/.test(message)) throw error;
      }
    } else {
      // "Only changes after the call": pin the current revision now.
      from = num((await this.countOnly(what, prefix)).header?.revision) + 1;
    }
    const watcher = new EtcdHttpWatcher(this, prefix, from, onEvent, options.onError, (w) => {
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
    const lease = new EtcdHttpLease(this, id, ttlSeconds, (l) => this.#leaseSet.delete(l));
    this.#leaseSet.add(lease);
    return lease;
  }

  /** @internal Grants a lease; its id. */
  async grant(ttlSeconds: number): Promise<string> {
    const res = await this.call(
      `lease grant (TTL ${ttlSeconds} s)`,
      (deadline) =>
        this.post<{ ID?: string }>("/v3/lease/grant", { TTL: String(ttlSeconds) }, deadline),
    );
    if (typeof res.ID !== "string" || res.ID === "" || res.ID === "0") {
      throw new Error(`${this.endpoint}: lease grant: etcd answered without a lease id`);
    }
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
  }
}

function isLeaseNotFound(error: unknown): boolean {
  return error instanceof EtcdHttpError &&
    (error.code === CODE_NOT_FOUND || /lease not found/.test(error.message));
}

/** A watch over one streamed `POST /v3/watch`, resumed from the last revision it saw. */
class EtcdHttpWatcher implements Watcher {
  #next: number;
  #closed = false;
  /** Aborts the current stream; undefined between streams. */
  #stream: AbortController | undefined;
  /** Readers of the streams opened so far (awaited by close). */
  #pumps = new Set<Promise<void>>();
  #dispatcher: WatchDispatcher;
  #reconnecting: Promise<void> | undefined;
  #wait = new AbortController();
  #outageSince: number | undefined;

  constructor(
    readonly store: EtcdHttpStore,
    readonly prefix: string,
    from: number,
    onEvent: (event: WatchEvent) => void | Promise<void>,
    readonly onError: ((error: Error) => void) | undefined,
    readonly onClosed: (watcher: EtcdHttpWatcher) => void,
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
        if (!isRecoverable(error)) {
          throw new Error(`${this.store.endpoint}: ${this.#what}: ${errorMessage(error)}`, {
            cause: error,
          });
        }
        this.store.failover();
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
  #connect(deadline: number): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("closed"));
    const abort = new AbortController();
    this.#stream = abort;
    return new Promise<void>((resolve, reject) => {
      let created = false;
      const ms = Math.max(1, deadline - Date.now());
      const timer = setTimeout(() => {
        if (!created) fail(new NoAnswerError(ms));
      }, ms);
      const fail = (error: Error) => {
        clearTimeout(timer);
        if (this.#stream !== abort) return;
        this.#stream = undefined;
        abort.abort();
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
      const onResponse = (res: WatchResponse) => {
        if (res.canceled) {
          const compact = num(res.compact_revision);
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
        if (res.created) {
          // A watch from a compacted revision is confirmed, then cancelled: wait for that.
          if (!this.expectCompaction) confirm();
          return;
        }
        confirm();
        this.#receive(res);
      };
      const range = prefixRange(this.prefix);
      const body = {
        create_request: {
          key: range.key,
          range_end: range.range_end,
          start_revision: String(this.#next),
          progress_notify: true,
        },
      };
      const pump = (async () => {
        try {
          const res = await this.store.request("/v3/watch", body, abort.signal);
          for await (const message of jsonLines(res.body!)) {
            if (this.#stream !== abort || this.#closed) break;
            const m = message as {
              result?: WatchResponse;
              error?: { message?: string; code?: number };
            };
            if (m.error !== undefined) {
              throw new EtcdHttpError(num(m.error.code), 0, String(m.error.message ?? "error"));
            }
            if (m.result !== undefined) onResponse(m.result);
          }
          fail(new Error("etcd ended the watch stream"));
        } catch (error) {
          fail(error instanceof Error ? error : new Error(String(error)));
        }
      })();
      this.#pumps.add(pump);
      void pump.finally(() => this.#pumps.delete(pump));
    });
  }

  #receive(res: WatchResponse) {
    const list = res.events ?? [];
    if (list.length === 0) {
      // Progress notification: everything up to the header revision was sent.
      this.#next = Math.max(this.#next, num(res.header?.revision) + 1);
      return;
    }
    const events: WatchEvent[] = [];
    let last = this.#next - 1;
    for (const event of list) {
      const kv = event.kv ?? {};
      const revision = num(kv.mod_revision);
      if (revision < this.#next) continue; // already delivered before a reconnect
      last = Math.max(last, revision);
      const key = fromBase64(kv.key);
      events.push(
        event.type === "DELETE"
          ? { type: "delete", key, revision }
          : { type: "put", key, value: fromBase64(kv.value), revision },
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
          this.store.failover();
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
      await Promise.all(this.#pumps);
      return;
    }
    this.#closed = true;
    this.#dispatcher.close();
    this.#wait.abort();
    const stream = this.#stream;
    this.#stream = undefined;
    this.onClosed(this);
    stream?.abort();
    await this.#reconnecting;
    await Promise.all(this.#pumps);
  }
}

/** A lease on etcd with its own keep-alive and re-establishment. */
class EtcdHttpLease implements Lease {
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
    readonly store: EtcdHttpStore,
    id: string,
    readonly ttl: number,
    readonly onEnded: (lease: EtcdHttpLease) => void,
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
        return await this.store.putRaw(`lease ${id}: put ${JSON.stringify(key)}`, key, value, id);
      } catch (error) {
        if (!(error instanceof EtcdLeaseGoneError) || attempt > 0) throw error;
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
          const ttl = await this.#ping(interval);
          if (ttl <= 0) {
            await this.#reestablish(new EtcdLeaseGoneError(this.#id));
          } else if (this.#failing) {
            this.#failing = false;
            log.info(`lease ${this.#id}: keep-alive works again`);
          }
        }
      } catch (error) {
        if (this.#stopped) break;
        if (!this.#failing) {
          this.#failing = true;
          log.warn(`lease ${this.#id}: keep-alive failed (${errorMessage(error)}); retrying`);
        }
        if (isRecoverable(error)) this.store.failover();
      }
      await sleep(this.#failing ? Math.min(interval, MAX_BACKOFF_MS) : interval, this.#wait.signal);
    }
  }

  /** Sends one keep-alive and waits for its answer (at most `timeoutMs`): the TTL left (0: gone). */
  async #ping(timeoutMs: number): Promise<number> {
    const res = await this.store.post<{ TTL?: string }>(
      "/v3/lease/keepalive",
      { ID: this.#id },
      Date.now() + timeoutMs,
    );
    return num(res.TTL);
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
    for (const [key, value] of this.#keys) {
      await this.store.putRaw(`lease ${id}: re-put ${JSON.stringify(key)}`, key, value, id);
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
        (deadline) => this.store.post("/v3/lease/revoke", { ID: id }, deadline),
      );
    } catch (error) {
      if (!(error instanceof Error && isLeaseNotFound(error.cause))) throw error;
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
      this.onEnded(this);
    }
    await this.#loop;
  }
}

/**
 * Connects to etcd's HTTP gateway at `settings.endpoints`. Fails with
 * {@linkcode StoreUnavailableError} naming the endpoints when none answers
 * within `settings.connectTimeoutMs` (default 5 s).
 *
 * ```ts ignore
 * const store = await openEtcdHttpStore({
 *   backend: "etcd", endpoints: ["127.0.0.1:2379"], prefix: "/monitor", path: "",
 * });
 * await store.put("/monitor/x", "1");
 * await store.close();
 * ```
 */
export async function openEtcdHttpStore(
  settings: StoreSettings,
  options: EtcdHttpStoreOptions = {},
): Promise<EtcdHttpStore> {
  const endpoints = normalizeEndpoints(settings?.endpoints);
  const timeout = options.callTimeoutMs ?? settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout <= 0) {
    throw new TypeError(`store.connectTimeoutMs: expected a number of ms > 0, got ${timeout}`);
  }
  const prefix = typeof settings.prefix === "string" ? settings.prefix : "";
  const store = new EtcdHttpStore(endpoints, timeout);
  try {
    await store.countOnly("connect", prefix);
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
