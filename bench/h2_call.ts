/**
 * One gRPC bidirectional call on an HTTP/2 connection of its own, as the
 * benchmark's simulated agents make it (bench/agent_sim.ts): the protocol
 * state without the I/O. The owner hands received bytes to
 * {@linkcode H2Call.receive}, writes what the call gives its `write`
 * callback to the socket in order, and closes the socket once `onEnd` was
 * called. The call is always stream 1 of its connection.
 * Frames are written and parsed by services/rpc/h2_frames.ts and the request's
 * header block encoded by services/rpc/hpack.ts: the codec of the broker's
 * server and of the agent's client.
 *
 * What it does, as RFC 9113 asks of a client:
 * - opens with the connection preface, SETTINGS (push disabled, a 1 MiB
 *   stream window), a connection WINDOW_UPDATE to the same 1 MiB, and the
 *   call's HEADERS; all in one write, pre-encoded once per header block
 *   ({@linkcode openingBytes}), without waiting for the server's SETTINGS
 *   (3.4 allows it);
 * - acknowledges every SETTINGS, applies INITIAL_WINDOW_SIZE and
 *   MAX_FRAME_SIZE, answers every PING, sends a keep-alive PING itself
 *   ({@linkcode H2Call.tick}), keeps the windows it grants open with
 *   WINDOW_UPDATE, and sends DATA only within the windows granted to it
 *   (queued until WINDOW_UPDATE otherwise), split at the peer's frame size;
 * - each message goes out as gRPC's length-prefixed message in DATA frames.
 *
 * What it leaves out, on purpose:
 * - Response header blocks (the response headers and the trailers) are not
 *   decoded: their bytes are skipped. Nothing in them changes what a
 *   simulated agent does: a HEADERS frame with END_STREAM ends the call
 *   whatever status it carries. Because nothing is decoded, no HPACK
 *   dynamic table is kept either (the table only serves decoding; the
 *   server's encoder may index what it likes, this side never looks).
 *   HEADERS and CONTINUATION are still followed, so that a header block's
 *   END_STREAM takes effect at its END_HEADERS.
 * - The status of an ended call is therefore not known. What the agent
 *   simulator needs is only whether the call may be tried again as it is:
 *   `retryable` is true when the connection failed or closed, a GOAWAY
 *   said the stream was not processed, or RST_STREAM said REFUSED_STREAM;
 *   false when the server ended the stream (trailers, RST_STREAM otherwise)
 *   or broke the protocol.
 * - It never sends GOAWAY or RST_STREAM: a call ends by its owner closing
 *   the TCP connection (the broker's runtime has aborted on receiving a
 *   GOAWAY, denoland/deno#36788; the agent's own client keeps the same rule,
 *   services/rpc/client.ts).
 * - No request compression (`grpc-encoding` is never sent), no server push
 *   (disabled in SETTINGS; a PUSH_PROMISE is a protocol error), no
 *   priorities, no TLS.
 *
 * ```ts
 * import { requestHeaderBlock } from "./h2_call.ts";
 * const out: Uint8Array[] = [];
 * const call = new H2Call({
 *   headerBlock: requestHeaderBlock("127.0.0.1:50052", "/monitoring.v1.Monitoring/Connect"),
 *   write: (bytes) => out.push(bytes),
 *   onMessage: () => {},
 *   onEnd: () => {},
 * });
 * call.start(0);
 * call.send(new Uint8Array([8, 1]));
 * console.log(out.length); // 2: the opening, then one DATA frame
 * ```
 *
 * @module
 */
import { FrameReader } from "../services/rpc/framing.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../services/rpc/limits.ts";
import { encodeHeaders } from "../services/rpc/hpack.ts";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  type Frame,
  frame,
  FRAME_HEADER_BYTES,
  FrameParser,
  FrameType,
  H2Error,
  MAX_WINDOW,
  parseSettings,
  pingFrame,
  Setting,
  SETTINGS_ACK,
  settingsFrame,
  uint31,
  uint32,
  unpadded,
  windowUpdateFrame,
  writeFrameHeader,
} from "../services/rpc/h2_frames.ts";

/** The call's stream (the first a client opens). */
export const STREAM_ID = 1;
/** The window this side grants the server, per stream and for the connection (bytes). */
export const RECEIVE_WINDOW = 1 << 20;
/** Keep-alive PING period (ms), as the agent's client (services/rpc/client.ts). */
export const KEEPALIVE_MS = 10_000;
/** How long a keep-alive PING may wait for its answer (ms), as the agent's client. */
export const KEEPALIVE_TIMEOUT_MS = 5000;
/** gRPC's message prefix: compressed flag and 4-byte length. */
const MESSAGE_PREFIX_BYTES = 5;

/** `user-agent` of the simulated agents' requests. */
const USER_AGENT = "monitor-agent-sim/1 (bench/h2_call.ts)";

/**
 * The request header block of a gRPC call to `path` at `authority`
 * (`host:port`), with the headers the agent's client sends
 * (services/rpc/client.ts) and, when given, an agent token as
 * `authorization: Bearer <token>`.
 */
export function requestHeaderBlock(authority: string, path: string, token?: string): Uint8Array {
  const headers: Array<[string, string]> = [
    [":method", "POST"],
    [":scheme", "http"],
    [":authority", authority],
    [":path", path],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ["grpc-accept-encoding", "identity"],
    ["user-agent", USER_AGENT],
  ];
  if (token) headers.push(["authorization", `Bearer ${token}`]);
  return encodeHeaders(headers);
}

/**
 * Everything a connection starts with, for a call with this header block:
 * preface, SETTINGS, connection WINDOW_UPDATE, HEADERS (stream 1, no
 * END_STREAM). One array, meant to be shared by every call with the same
 * block (it is never changed).
 */
export function openingBytes(block: Uint8Array): Uint8Array {
  if (block.length > DEFAULT_MAX_FRAME_SIZE) {
    throw new RangeError(
      `HEADERS: a header block of ${block.length} bytes needs CONTINUATION, which this client does not send`,
    );
  }
  const parts = [
    CLIENT_PREFACE,
    settingsFrame([[Setting.ENABLE_PUSH, 0], [Setting.INITIAL_WINDOW_SIZE, RECEIVE_WINDOW]]),
    windowUpdateFrame(0, RECEIVE_WINDOW - DEFAULT_WINDOW),
    frame(FrameType.HEADERS, Flag.END_HEADERS, STREAM_ID, block),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** How a call ended. */
export interface CallEnd {
  /** True when the call may be tried again as it is (module doc). */
  retryable: boolean;
  /** What happened, for a log line. */
  reason: string;
}

/** Options of {@linkcode H2Call}. */
export interface H2CallOptions {
  /** The request header block (requestHeaderBlock); the opening is built from it once per block. */
  headerBlock: Uint8Array;
  /** Writes bytes to the connection, in call order. */
  write(bytes: Uint8Array): void;
  /** Each message the server sends (the gRPC message without its prefix; a fresh array). */
  onMessage(bytes: Uint8Array): void;
  /** Called once when the call ends; the owner closes the connection then. */
  onEnd(end: CallEnd): void;
  /** Largest message accepted (bytes; default 4 MiB, as the agent). */
  maxMessageBytes?: number;
}

const openings = new WeakMap<Uint8Array, Uint8Array>();

/** The protocol state of one call (module doc). */
export class H2Call {
  readonly #options: H2CallOptions;
  readonly #frames = new FrameParser(DEFAULT_MAX_FRAME_SIZE);
  readonly #messages: FrameReader;
  #ended = false;
  #connected = false;
  #startedAt = 0;
  /** Send windows granted by the server. */
  #connectionWindow = DEFAULT_WINDOW;
  #streamWindow = DEFAULT_WINDOW;
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  /** gRPC-framed messages waiting for window, the first possibly partly sent. */
  #queue: Uint8Array[] = [];
  /** DATA bytes received since the last WINDOW_UPDATE this side sent. */
  #received = 0;
  /** Inside a header block (HEADERS without END_HEADERS): whether it ends the stream. */
  #inHeaderBlock = false;
  #blockEndsStream = false;
  #goawayReceived = false;
  #lastPingAt = 0;
  #pingSentAt: number | undefined;

  /** @param options what the call writes to and reports */
  constructor(options: H2CallOptions) {
    this.#options = options;
    this.#messages = new FrameReader(options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
  }

  /** True once the server's SETTINGS arrived. */
  get connected(): boolean {
    return this.#connected;
  }

  /** True once ended. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Bytes of messages waiting for flow-control window. */
  get queuedBytes(): number {
    return this.#queue.reduce((n, q) => n + q.length, 0);
  }

  /** Writes the opening (module doc); `now` (ms) starts the keep-alive period. */
  start(now: number): void {
    const block = this.#options.headerBlock;
    let opening = openings.get(block);
    if (!opening) openings.set(block, opening = openingBytes(block));
    this.#startedAt = now;
    this.#lastPingAt = now;
    this.#options.write(opening);
  }

  /** Sends one message (already encoded); false once the call has ended. */
  send(message: Uint8Array): boolean {
    if (this.#ended) return false;
    const length = MESSAGE_PREFIX_BYTES + message.length;
    if (
      this.#queue.length === 0 && length <= this.#peerMaxFrame &&
      length <= this.#connectionWindow && length <= this.#streamWindow
    ) {
      // The common case: one DATA frame, built in one array.
      const out = new Uint8Array(FRAME_HEADER_BYTES + length);
      writeFrameHeader(out, 0, length, FrameType.DATA, 0, STREAM_ID);
      writeLength(out, FRAME_HEADER_BYTES + 1, message.length);
      out.set(message, FRAME_HEADER_BYTES + MESSAGE_PREFIX_BYTES);
      this.#connectionWindow -= length;
      this.#streamWindow -= length;
      this.#options.write(out);
      return true;
    }
    const framed = new Uint8Array(length);
    writeLength(framed, 1, message.length);
    framed.set(message, MESSAGE_PREFIX_BYTES);
    this.#queue.push(framed);
    this.#flush();
    return true;
  }

  /**
   * Timers, driven by the owner (one sweep for many calls is cheaper than
   * timers per call): ends the call when the server's SETTINGS have not come
   * within `connectTimeoutMs` of start, or a keep-alive PING has waited
   * {@linkcode KEEPALIVE_TIMEOUT_MS}; sends a PING every {@linkcode KEEPALIVE_MS}.
   */
  tick(now: number, connectTimeoutMs: number): void {
    if (this.#ended) return;
    if (!this.#connected) {
      if (now - this.#startedAt > connectTimeoutMs) {
        this.#end(true, `no HTTP/2 SETTINGS from the server within ${connectTimeoutMs} ms`);
      }
      return;
    }
    if (this.#pingSentAt !== undefined) {
      if (now - this.#pingSentAt > KEEPALIVE_TIMEOUT_MS) {
        this.#end(true, `keepalive: no PING answer within ${KEEPALIVE_TIMEOUT_MS} ms`);
      }
      return;
    }
    if (now - this.#lastPingAt >= KEEPALIVE_MS) {
      this.#pingSentAt = now;
      this.#lastPingAt = now;
      this.#options.write(pingFrame(new Uint8Array(8), false));
    }
  }

  /** The connection failed or closed (read end, error): the call ends, retryable. */
  connectionLost(why: string): void {
    this.#end(true, why);
  }

  /** Ends the call on the owner's behalf (e.g. a message it cannot decode); not retryable. */
  fail(why: string): void {
    this.#end(false, why);
  }

  /** Bytes read from the connection; `chunk` may be reused by the caller afterwards. */
  receive(chunk: Uint8Array): void {
    if (this.#ended) return;
    try {
      for (const f of this.#frames.push(chunk)) {
        this.#onFrame(f);
        if (this.#ended) return;
      }
    } catch (error) {
      if (!(error instanceof H2Error)) throw error;
      this.#end(false, `HTTP/2 protocol error from the server: ${error.message}`);
    }
  }

  #onFrame(f: Frame): void {
    if (this.#inHeaderBlock && f.type !== FrameType.CONTINUATION) {
      throw new H2Error(
        ErrorCode.PROTOCOL_ERROR,
        `received frame type ${f.type} inside a header block`,
      );
    }
    switch (f.type) {
      case FrameType.DATA:
        return this.#onData(f);
      case FrameType.HEADERS:
      case FrameType.CONTINUATION:
        return this.#onHeaders(f);
      case FrameType.RST_STREAM:
        if (f.streamId !== STREAM_ID) return;
        if (f.payload.length !== 4) {
          throw new H2Error(
            ErrorCode.FRAME_SIZE_ERROR,
            "received an RST_STREAM frame that is not 4 bytes",
          );
        }
        return this.#onReset(uint32(f.payload));
      case FrameType.SETTINGS:
        return this.#onSettings(f);
      case FrameType.PING:
        if (f.payload.length !== 8) {
          throw new H2Error(
            ErrorCode.FRAME_SIZE_ERROR,
            "received a PING frame that is not 8 bytes",
          );
        }
        if (f.flags & Flag.ACK) this.#pingSentAt = undefined;
        else this.#options.write(pingFrame(f.payload, true));
        return;
      case FrameType.GOAWAY:
        return this.#onGoaway(f);
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(f);
      case FrameType.PUSH_PROMISE:
        throw new H2Error(
          ErrorCode.PROTOCOL_ERROR,
          "received PUSH_PROMISE although push is disabled",
        );
      default:
        // PRIORITY and unknown types are ignored (RFC 9113 4.1, 5.5).
        return;
    }
  }

  #onData(f: Frame): void {
    if (f.streamId !== STREAM_ID) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `received DATA on stream ${f.streamId}`);
    }
    // Flow control counts the whole payload, padding included (RFC 9113 6.9.1).
    this.#received += f.payload.length;
    if (this.#received >= RECEIVE_WINDOW / 2) {
      const grant = this.#received;
      this.#received = 0;
      const conn = windowUpdateFrame(0, grant);
      const stream = windowUpdateFrame(STREAM_ID, grant);
      const both = new Uint8Array(conn.length + stream.length);
      both.set(conn);
      both.set(stream, conn.length);
      this.#options.write(both);
    }
    const data = unpadded(f);
    if (data.length > 0) {
      // A copy: the reader may keep it past this read, and the caller reuses its buffer.
      const { messages, error } = this.#messages.push(data.slice());
      for (const message of messages) {
        this.#options.onMessage(message);
        if (this.#ended) return;
      }
      if (error) return this.#end(false, `gRPC: ${error.message}`);
    }
    if (f.flags & Flag.END_STREAM) this.#end(false, "the server ended the stream without trailers");
  }

  #onHeaders(f: Frame): void {
    if (f.type === FrameType.CONTINUATION) {
      if (!this.#inHeaderBlock) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "received CONTINUATION outside a header block");
      }
    } else {
      if (f.streamId !== STREAM_ID) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, `received HEADERS on stream ${f.streamId}`);
      }
      this.#blockEndsStream = (f.flags & Flag.END_STREAM) !== 0;
    }
    // The block's bytes are not decoded (module doc).
    this.#inHeaderBlock = (f.flags & Flag.END_HEADERS) === 0;
    if (!this.#inHeaderBlock && this.#blockEndsStream) {
      this.#end(false, "the server ended the stream (trailers)");
    }
  }

  #onReset(code: number): void {
    if (code === ErrorCode.REFUSED_STREAM) {
      this.#end(true, "the server refused the stream (RST_STREAM REFUSED_STREAM)");
    } else this.#end(false, `the server reset the stream (RST_STREAM code ${code})`);
  }

  #onSettings(f: Frame): void {
    if (f.streamId !== 0) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `received SETTINGS on stream ${f.streamId}`);
    }
    if (f.flags & Flag.ACK) {
      if (f.payload.length !== 0) {
        throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "received a SETTINGS ACK with a payload");
      }
      return;
    }
    for (const [id, value] of parseSettings(f.payload)) {
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) {
          throw new H2Error(
            ErrorCode.FLOW_CONTROL_ERROR,
            `received INITIAL_WINDOW_SIZE ${value}, over 2^31-1`,
          );
        }
        this.#streamWindow += value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME_SIZE || value > 0xffffff) {
          throw new H2Error(
            ErrorCode.PROTOCOL_ERROR,
            `received MAX_FRAME_SIZE ${value}, outside 16384..16777215`,
          );
        }
        this.#peerMaxFrame = value;
      }
    }
    this.#options.write(SETTINGS_ACK);
    this.#connected = true;
    this.#flush();
  }

  #onGoaway(f: Frame): void {
    if (f.payload.length < 8) {
      throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "received a GOAWAY frame shorter than 8 bytes");
    }
    const lastStream = uint31(f.payload);
    const code = uint32(f.payload, 4);
    this.#goawayReceived = true;
    if (lastStream < STREAM_ID) {
      this.#end(true, `the server sent GOAWAY (code ${code}) before processing the stream`);
    }
    // Otherwise the stream was processed: the server ends it with its status in time.
  }

  #onWindowUpdate(f: Frame): void {
    if (f.payload.length !== 4) {
      throw new H2Error(
        ErrorCode.FRAME_SIZE_ERROR,
        "received a WINDOW_UPDATE frame that is not 4 bytes",
      );
    }
    const increment = uint31(f.payload);
    if (increment === 0) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "received a WINDOW_UPDATE of 0");
    }
    if (f.streamId === 0) this.#connectionWindow += increment;
    else if (f.streamId === STREAM_ID) this.#streamWindow += increment;
    else return;
    if (this.#connectionWindow > MAX_WINDOW || this.#streamWindow > MAX_WINDOW) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "a WINDOW_UPDATE took a window over 2^31-1");
    }
    this.#flush();
  }

  /** Sends queued message bytes as far as the windows allow, in frames of at most the peer's size. */
  #flush(): void {
    while (this.#queue.length > 0 && !this.#ended) {
      const room = Math.min(this.#connectionWindow, this.#streamWindow, this.#peerMaxFrame);
      if (room <= 0) return;
      const head = this.#queue[0];
      const n = Math.min(room, head.length);
      this.#options.write(frame(FrameType.DATA, 0, STREAM_ID, head.subarray(0, n)));
      this.#connectionWindow -= n;
      this.#streamWindow -= n;
      if (n === head.length) this.#queue.shift();
      else this.#queue[0] = head.subarray(n);
    }
  }

  #end(retryable: boolean, reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#queue = [];
    this.#options.onEnd({
      retryable,
      reason: this.#goawayReceived ? `${reason} (after a GOAWAY)` : reason,
    });
  }
}

function writeLength(out: Uint8Array, at: number, length: number): void {
  out[at] = (length >>> 24) & 0xff;
  out[at + 1] = (length >>> 16) & 0xff;
  out[at + 2] = (length >>> 8) & 0xff;
  out[at + 3] = length & 0xff;
}
