/**
 * gRPC's message framing and status rules on HTTP/2, for the agent's client
 * (client.ts) and the broker's server (server.ts): the 5-byte message prefix (compressed flag, big-endian
 * length), the status of a response from its headers or trailers, and the
 * status an HTTP status maps to. No I/O; internal to services/rpc.
 *
 * ```ts
 * const reader = new FrameReader(1024);
 * const out = reader.push(frameMessage(new Uint8Array([8, 1])));
 * console.log(out.messages.length); // 1
 * ```
 *
 * @module
 */
import { RpcError, RpcStatus } from "./status.ts";

/** Bytes before each message: 1 byte compressed flag, 4 bytes length (big-endian). */
export const FRAME_PREFIX_BYTES = 5;

/** One message with its gRPC prefix (never compressed). */
export function frameMessage(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_PREFIX_BYTES + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, FRAME_PREFIX_BYTES);
  return out;
}

/** What {@linkcode FrameReader.push} found. */
export interface FrameReadResult {
  /** Complete messages, in order. */
  messages: Uint8Array[];
  /** Set when the stream carries something this client refuses (the reader stops there). */
  error?: RpcError;
}

/**
 * Splits a request or response body into messages as DATA frames arrive,
 * whatever their boundaries. Refuses, like grpc-js, a compressed message
 * (both ends accept only `identity`: INTERNAL) and one over `maxBytes`
 * (RESOURCE_EXHAUSTED), as soon as its prefix arrives, before buffering it.
 */
export class FrameReader {
  readonly #maxBytes: number;
  readonly #receiver: string;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #failed = false;

  /**
   * @param maxBytes largest message accepted
   * @param receiver who reads, for the error text (`this client`, `the broker`)
   */
  constructor(maxBytes: number, receiver = "this client") {
    this.#maxBytes = maxBytes;
    this.#receiver = receiver;
  }

  /** True when data that is not a whole message is waiting. */
  get partial(): boolean {
    return this.#buffered > 0;
  }

  /** Adds received bytes; returns the messages they complete. */
  push(chunk: Uint8Array): FrameReadResult {
    const messages: Uint8Array[] = [];
    if (this.#failed) return { messages };
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    while (this.#buffered >= FRAME_PREFIX_BYTES) {
      const head = this.#peek(FRAME_PREFIX_BYTES);
      const flag = head[0];
      const length = new DataView(head.buffer, head.byteOffset, FRAME_PREFIX_BYTES).getUint32(1);
      if (flag !== 0) {
        this.#failed = true;
        return {
          messages,
          error: new RpcError(
            RpcStatus.INTERNAL,
            flag === 1
              ? `received a compressed message, but ${this.#receiver} accepts only grpc-encoding identity`
              : `received a message with an invalid compressed flag ${flag} (expected 0)`,
          ),
        };
      }
      if (length > this.#maxBytes) {
        this.#failed = true;
        return {
          messages,
          error: new RpcError(
            RpcStatus.RESOURCE_EXHAUSTED,
            `Received message larger than max (${length} vs. ${this.#maxBytes})`,
          ),
        };
      }
      if (this.#buffered < FRAME_PREFIX_BYTES + length) break;
      const frame = this.#take(FRAME_PREFIX_BYTES + length);
      messages.push(frame.subarray(FRAME_PREFIX_BYTES));
    }
    return { messages };
  }

  /** The first `n` buffered bytes (joined when they span chunks), left in place. */
  #peek(n: number): Uint8Array {
    const first = this.#chunks[0];
    if (first.length >= n) return first.subarray(0, n);
    this.#join();
    return this.#chunks[0].subarray(0, n);
  }

  /** Removes and returns the first `n` buffered bytes. */
  #take(n: number): Uint8Array {
    if (this.#chunks[0].length < n) this.#join();
    const first = this.#chunks[0];
    const out = first.subarray(0, n);
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return out;
  }

  #join() {
    const all = new Uint8Array(this.#buffered);
    let at = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    this.#chunks = [all];
  }
}

/** Response headers or trailers by name (client.ts builds it from the decoded fields). */
export type HeaderMap = Record<string, string | string[] | number | undefined>;

function one(headers: HeaderMap, name: string): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value[0] : String(value);
}

/** `grpc-message` as sent (percent-encoded UTF-8), decoded; kept as it is when malformed. */
export function decodeGrpcMessage(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * The status carried by trailers (or the headers of a trailers-only
 * response): undefined when they hold no `grpc-status`, OK as `null`.
 */
export function statusOf(headers: HeaderMap): RpcError | null | undefined {
  const raw = one(headers, "grpc-status");
  if (raw === undefined) return undefined;
  const code = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  const details = decodeGrpcMessage(one(headers, "grpc-message") ?? "");
  if (!Number.isInteger(code)) {
    return new RpcError(RpcStatus.UNKNOWN, `invalid grpc-status ${JSON.stringify(raw)}`);
  }
  return code === RpcStatus.OK ? null : new RpcError(code, details);
}

/**
 * The gRPC status of a response whose HTTP status is not 200 (gRPC's
 * "HTTP to gRPC status code mapping").
 */
export function statusOfHttp(httpStatus: number): RpcError {
  const code = httpStatus === 400
    ? RpcStatus.INTERNAL
    : httpStatus === 401
    ? RpcStatus.UNAUTHENTICATED
    : httpStatus === 403
    ? RpcStatus.PERMISSION_DENIED
    : httpStatus === 404
    ? RpcStatus.UNIMPLEMENTED
    : [429, 502, 503, 504].includes(httpStatus)
    ? RpcStatus.UNAVAILABLE
    : RpcStatus.UNKNOWN;
  return new RpcError(code, `the broker answered HTTP status ${httpStatus} instead of 200`);
}

/** The status of a stream the peer reset (RST_STREAM) without sending one. */
export function statusOfReset(rstCode: number): RpcError {
  // HTTP/2 error codes: REFUSED_STREAM 7, CANCEL 8, ENHANCE_YOUR_CALM 11, INADEQUATE_SECURITY 12.
  if (rstCode === 7) return new RpcError(RpcStatus.UNAVAILABLE, "the broker refused the stream");
  if (rstCode === 8) return new RpcError(RpcStatus.CANCELLED, "the broker cancelled the stream");
  if (rstCode === 11) {
    return new RpcError(
      RpcStatus.RESOURCE_EXHAUSTED,
      "the broker reset the stream: bandwidth exhausted or memory limit exceeded",
    );
  }
  if (rstCode === 12) {
    return new RpcError(
      RpcStatus.PERMISSION_DENIED,
      "the broker reset the stream: insufficient TLS",
    );
  }
  return new RpcError(
    RpcStatus.INTERNAL,
    `the broker reset the stream (RST_STREAM code ${rstCode})`,
  );
}
