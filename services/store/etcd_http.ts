/**
 * The `etcd` Store backend without a client library: how to talk to etcd's
 * own HTTP/JSON gateway (served on the client URL since etcd 3.4: `POST
 * /v3/kv/range`, `/v3/watch`, `/v3/lease/keepalive`, ...) through Deno's
 * `fetch`. Keys and values travel as base64, 64-bit integers as decimal
 * strings. The fault handling (call retries, watch resume, lease re-grant)
 * and the error language are {@linkcode EtcdStore}'s in `etcd_loops.ts`,
 * shared with the etcd3 client (`etcd.ts`), at a fraction of its start-up
 * cost: no grpc-js, protobufjs or `rpc.proto` to load (chosen per process with
 * `openStore(settings, { etcd: { client: "http" } })`; the agent uses it).
 *
 * - Recoverable failures (connection refused or reset, etcd unavailable or
 *   electing a leader, no answer in time) also move to the next endpoint.
 * - A watch is one streamed `POST /v3/watch` (newline-delimited JSON
 *   `{"result": WatchResponse}`), opened again from the next revision after
 *   a dropped stream.
 * - A lease sends one `POST /v3/lease/keepalive` every TTL/3; an answer
 *   without TTL means the lease is gone.
 *
 * @module
 */
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

function isLeaseNotFound(error: unknown): boolean {
  return error instanceof EtcdHttpError &&
    (error.code === CODE_NOT_FOUND || /lease not found/.test(error.message));
}

/** How the store talks to etcd through its HTTP/JSON gateway. */
class EtcdHttpTransport implements EtcdTransport {
  readonly #urls: string[];
  #current = 0;

  /** `closing` aborts every request (the store is closing). */
  constructor(urls: string[], readonly closing: AbortSignal) {
    this.#urls = urls;
  }

  /** The endpoint to use now; {@linkcode failover} moves on after a failure. */
  get url(): string {
    return this.#urls[this.#current];
  }

  /** Moves to the next endpoint (after a recoverable failure). */
  failover(): void {
    this.#current = (this.#current + 1) % this.#urls.length;
  }

  /** Starts one request; the response (status checked) or an {@linkcode EtcdHttpError}. */
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
   */
  async post<T>(path: string, body: unknown, deadline: number): Promise<T> {
    const ms = Math.max(1, deadline - Date.now());
    const timer = new AbortController();
    const timeout = setTimeout(() => timer.abort(new NoAnswerError(ms)), ms);
    const signal = AbortSignal.any([timer.signal, this.closing]);
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
      if (timer.signal.aborted && !this.closing.aborted) throw timer.signal.reason;
      throw error;
    } finally {
      clearTimeout(timeout);
    }
  }

  readonly leaseGoneError = EtcdLeaseGoneError;

  isRecoverable(error: unknown): boolean {
    return isRecoverable(error);
  }

  onRecoverableFailure(): void {
    this.failover();
  }

  async get(key: string, deadline: number): Promise<KeyValue | undefined> {
    const res = await this.post<RangeResponse>("/v3/kv/range", { key: toBase64(key) }, deadline);
    const kv = res.kvs?.[0];
    return kv === undefined ? undefined : toKeyValue(kv);
  }

  async list(prefix: string, deadline: number): Promise<ListResult> {
    const res = await this.post<RangeResponse>(
      "/v3/kv/range",
      { ...prefixRange(prefix), sort_order: "ASCEND", sort_target: "KEY" },
      deadline,
    );
    return { items: (res.kvs ?? []).map(toKeyValue), revision: num(res.header?.revision) };
  }

  async put(
    key: string,
    value: string,
    lease: string | undefined,
    deadline: number,
  ): Promise<number> {
    const body: Record<string, unknown> = { key: toBase64(key), value: toBase64(value) };
    if (lease !== undefined) body.lease = lease;
    try {
      return num((await this.post<RangeResponse>("/v3/kv/put", body, deadline)).header?.revision);
    } catch (error) {
      if (lease !== undefined && isLeaseNotFound(error)) {
        throw new EtcdLeaseGoneError(lease, { cause: error });
      }
      throw error;
    }
  }

  async delete(key: string, deadline: number): Promise<boolean> {
    const res = await this.post<{ deleted?: string }>(
      "/v3/kv/deleterange",
      { key: toBase64(key) },
      deadline,
    );
    return num(res.deleted) > 0;
  }

  async compareAndSet(
    key: string,
    value: string,
    expectedRevision: number,
    deadline: number,
  ): Promise<CasResult> {
    const k = toBase64(key);
    const compare = expectedRevision === 0
      ? { key: k, target: "CREATE", result: "EQUAL", create_revision: "0" }
      : { key: k, target: "MOD", result: "EQUAL", mod_revision: String(expectedRevision) };
    const res = await this.post<{
      header?: JsonHeader;
      succeeded?: boolean;
      responses?: Array<{ response_range?: RangeResponse }>;
    }>("/v3/kv/txn", {
      compare: [compare],
      success: [{ request_put: { key: k, value: toBase64(value) } }],
      failure: [{ request_range: { key: k } }],
    }, deadline);
    if (res.succeeded === true) return { ok: true, revision: num(res.header?.revision) };
    const current = res.responses?.[0]?.response_range?.kvs?.[0];
    return { ok: false, revision: current === undefined ? 0 : num(current.mod_revision) };
  }

  async countOnly(prefix: string, revision: number | undefined, deadline: number): Promise<number> {
    const body: Record<string, unknown> = { ...prefixRange(prefix), count_only: true };
    if (revision !== undefined) body.revision = String(revision);
    return num((await this.post<RangeResponse>("/v3/kv/range", body, deadline)).header?.revision);
  }

  async grant(ttlSeconds: number, deadline: number): Promise<string | undefined> {
    return (await this.post<{ ID?: string }>(
      "/v3/lease/grant",
      { TTL: String(ttlSeconds) },
      deadline,
    )).ID;
  }

  async revoke(lease: string, deadline: number): Promise<void> {
    try {
      await this.post("/v3/lease/revoke", { ID: lease }, deadline);
    } catch (error) {
      if (isLeaseNotFound(error)) throw new EtcdLeaseGoneError(lease, { cause: error });
      throw error;
    }
  }

  watchChannel(): WatchChannel {
    return new EtcdHttpWatchChannel(this);
  }

  keepAliveChannel(): KeepAliveChannel {
    return {
      ping: async (lease, timeoutMs) =>
        num(
          (await this.post<{ TTL?: string }>(
            "/v3/lease/keepalive",
            { ID: lease },
            Date.now() + timeoutMs,
          )).TTL,
        ),
      failed: (error) => {
        if (isRecoverable(error)) this.failover();
      },
      drop: () => {},
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** One streamed `POST /v3/watch` per connection of a watch. */
class EtcdHttpWatchChannel implements WatchChannel {
  /** Readers of the streams opened so far (awaited by the watch's close). */
  #pumps = new Set<Promise<void>>();

  constructor(readonly transport: EtcdHttpTransport) {}

  open(): Promise<WatchStream> {
    const abort = new AbortController();
    return Promise.resolve({
      create: (prefix, revision, sink) => {
        const range = prefixRange(prefix);
        const body = {
          create_request: {
            key: range.key,
            range_end: range.range_end,
            start_revision: String(revision),
            progress_notify: true,
          },
        };
        const pump = (async () => {
          try {
            const res = await this.transport.request("/v3/watch", body, abort.signal);
            for await (const message of jsonLines(res.body!)) {
              if (abort.signal.aborted) break;
              const m = message as {
                result?: WatchResponse;
                error?: { message?: string; code?: number };
              };
              if (m.error !== undefined) {
                throw new EtcdHttpError(num(m.error.code), 0, String(m.error.message ?? "error"));
              }
              if (m.result !== undefined) sink.response(watchAnswer(m.result));
            }
            sink.fail(new Error("etcd ended the watch stream"));
          } catch (error) {
            sink.fail(error instanceof Error ? error : new Error(String(error)));
          }
        })();
        this.#pumps.add(pump);
        void pump.finally(() => this.#pumps.delete(pump));
      },
      end: () => {
        abort.abort();
        return Promise.resolve();
      },
    });
  }

  noAnswer(ms: number): Error {
    return new NoAnswerError(ms);
  }

  /** A refusal (a bad request, say) fails the watch at once; the network and etcd's outages are retried. */
  isRetryable(error: unknown): boolean {
    return isRecoverable(error);
  }

  onRetry(): void {
    this.transport.failover();
  }

  onStreamFailure(): void {}

  async drained(): Promise<void> {
    await Promise.all(this.#pumps);
  }
}

function watchAnswer(res: WatchResponse): WatchAnswer {
  return {
    created: res.created === true,
    canceled: res.canceled === true,
    compactRevision: num(res.compact_revision),
    cancelReason: res.cancel_reason ?? "",
    headerRevision: num(res.header?.revision),
    events: (res.events ?? []).map((event): WatchEvent => {
      const kv = event.kv ?? {};
      const revision = num(kv.mod_revision);
      const key = fromBase64(kv.key);
      return event.type === "DELETE"
        ? { type: "delete", key, revision }
        : { type: "put", key, value: fromBase64(kv.value), revision };
    }),
  };
}

/**
 * Connects to etcd's HTTP gateway at `settings.endpoints`. Fails with
 * `StoreUnavailableError` naming the endpoints when none answers within
 * `settings.connectTimeoutMs` (default 5 s).
 *
 * ```ts ignore
 * const store = await openEtcdHttpStore({
 *   backend: "etcd", endpoints: ["127.0.0.1:2379"], prefix: "/monitor", path: "",
 * });
 * await store.put("/monitor/x", "1");
 * await store.close();
 * ```
 */
export function openEtcdHttpStore(
  settings: StoreSettings,
  options: EtcdStoreOptions = {},
): Promise<EtcdStore> {
  return openEtcdStoreWith(
    settings,
    options,
    (urls, closing) => new EtcdHttpTransport(urls, closing),
  );
}
