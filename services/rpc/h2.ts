/**
 * The server side of one HTTP/2 connection (RFC 9113), written for the
 * broker's gRPC server (server.ts) so that the broker does not run on
 * `node:http2`: frames in and out of a byte transport (a node:net or
 * node:tls socket), HPACK (hpack.ts), SETTINGS, PING, flow control both
 * ways, RST_STREAM, CONTINUATION, and a peer's GOAWAY. No timers and no
 * sockets here: the owner feeds bytes in ({@linkcode H2Connection.receive}),
 * gives it a `write` function and runs keep-alive from one sweep
 * ({@linkcode H2Connection.keepalive}). Internal to services/rpc.
 * Its frame code and constants also serve the client side (h2_client.ts).
 *
 * ## Invariant: this side never sends GOAWAY
 *
 * Deno 2.9's `node:http2` client can abort its whole process when it
 * receives a GOAWAY (denoland/deno#36788), and older agents may still run on
 * it. A connection error (a peer breaking the protocol) therefore closes the
 * transport without a GOAWAY frame ({@linkcode H2Handler.onError} says why),
 * and a stream ends with its trailers (END_STREAM) alone: no RST_STREAM
 * after them (see `#endWith`); DATA the peer still sends is dropped.
 *
 * ## What is sent per message
 *
 * Frames produced in one turn of the event loop go out in one transport
 * write. The receive windows are large (1 MiB per stream and per
 * connection) and refilled with WINDOW_UPDATE only after half of them was
 * used, so an agent sending a few hundred bytes a second costs one DATA
 * frame in, one DATA frame (its ack) out, and nothing else.
 *
 * ```ts
 * const written: Uint8Array[] = [];
 * const conn = new H2Connection({ write: (b) => written.push(b), close: () => {} }, {
 *   onStream() {},
 *   onError() {},
 * });
 * conn.start();
 * console.log(written.length >= 0); // true (the SETTINGS go out on the next microtask)
 * ```
 *
 * @module
 */
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";

/** Frame types (RFC 9113 §6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags used here. */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes (RFC 9113 §7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
} as const;

/** SETTINGS identifiers (RFC 9113 §6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The client connection preface (RFC 9113 §3.4). */
export const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const FRAME_HEADER_BYTES = 9;
/** Largest frame payload this side accepts (the protocol default; peers rarely send more). */
export const MAX_FRAME_BYTES = 16_384;
/** This side's receive window per stream and per connection (bytes). */
export const RECEIVE_WINDOW = 1 << 20;
/** Largest header block (HEADERS + CONTINUATION) accepted, encoded. */
export const MAX_HEADER_BLOCK_BYTES = 64 * 1024;
/** SETTINGS_MAX_HEADER_LIST_SIZE announced and enforced (decoded, RFC counting). */
export const MAX_HEADER_LIST_BYTES = 16 * 1024;
/** Largest flow-control window (RFC 9113 §6.9.1). */
export const MAX_WINDOW = 0x7fffffff;

/** Where the connection's bytes go. */
export interface H2Transport {
  /** Writes bytes (called at most once per turn with everything queued). */
  write(bytes: Uint8Array): void;
  /** Closes the transport (after what was written). */
  close(): void;
}

/** What the connection reports to its owner. */
export interface H2Handler {
  /**
   * A new stream with its request headers. `endStream` is set when the
   * request has no body. The owner answers through the stream.
   */
  onStream(stream: H2Stream, headers: HeaderField[], endStream: boolean): void;
  /** A connection error: the transport is being closed (no GOAWAY, see the module doc). */
  onError(reason: string): void;
}

/** Listeners of one stream, set by the owner. */
export interface H2StreamEvents {
  /** Request body bytes, in order. */
  onData?(bytes: Uint8Array): void;
  /** The peer ended its side (END_STREAM). */
  onEnd?(): void;
  /** The stream is gone without a clean end: reset by the peer (code) or its connection lost. */
  onAbort?(reason: string, rstCode?: number): void;
}

/** One stream as the server sees it. */
export class H2Stream {
  /** Listeners, set by the owner in onStream. */
  events: H2StreamEvents = {};
  /** The peer sent END_STREAM. */
  remoteEnded = false;
  /** This side sent END_STREAM (or reset the stream). */
  localEnded = false;
  /** Headers were sent. */
  headersSent = false;
  /** Flow control: bytes this side may still send. */
  sendWindow: number;
  /** Flow control: bytes received since the last WINDOW_UPDATE for this stream. */
  unacknowledged = 0;
  /** Frames waiting for send window (DATA and the trailers after it). */
  pending: Array<{ kind: "data"; bytes: Uint8Array } | { kind: "trailers"; block: Uint8Array }> =
    [];

  /** @param id stream id @param connection its connection @param sendWindow the peer's initial window */
  constructor(readonly id: number, readonly connection: H2Connection, sendWindow: number) {
    this.sendWindow = sendWindow;
  }

  /** Sends the response headers (once). */
  respond(fields: ReadonlyArray<readonly [string, string]>): void {
    if (this.localEnded || this.headersSent) return;
    this.headersSent = true;
    this.connection.sendHeaders(this.id, encodeHeaders(fields), false);
  }

  /** Sends body bytes (split and queued as flow control requires). */
  write(bytes: Uint8Array): void {
    if (this.localEnded) return;
    this.connection.sendData(this, bytes);
  }

  /**
   * Ends this side with headers carrying END_STREAM: the trailers, or the
   * whole response when no headers were sent (a trailers-only response).
   * What the peer sends afterwards is dropped.
   */
  end(fields: ReadonlyArray<readonly [string, string]>): void {
    if (this.localEnded) return;
    this.localEnded = true;
    this.headersSent = true;
    this.connection.sendTrailers(this, encodeHeaders(fields));
  }

  /** Resets the stream (RST_STREAM `code`). */
  reset(code: number): void {
    if (this.localEnded && this.remoteEnded) return;
    this.localEnded = true;
    this.remoteEnded = true;
    this.pending = [];
    this.connection.resetStream(this, code);
  }
}

/** One frame: the 9-byte header and its payload. */
export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  out[0] = payload.length >>> 16;
  out[1] = (payload.length >>> 8) & 0xff;
  out[2] = payload.length & 0xff;
  out[3] = type;
  out[4] = flags;
  out[5] = (streamId >>> 24) & 0x7f;
  out[6] = (streamId >>> 16) & 0xff;
  out[7] = (streamId >>> 8) & 0xff;
  out[8] = streamId & 0xff;
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** A 32-bit big-endian value (WINDOW_UPDATE, RST_STREAM payloads). */
export function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

/** Thrown inside the frame loop for a connection error. */
class ConnectionError extends Error {}

/** Options of {@linkcode H2Connection}. */
export interface H2Options {
  /** SETTINGS_MAX_CONCURRENT_STREAMS announced and enforced (REFUSED_STREAM beyond it). */
  maxConcurrentStreams?: number;
}

/** The server side of one HTTP/2 connection (see the module doc). */
export class H2Connection {
  readonly #transport: H2Transport;
  readonly #handler: H2Handler;
  readonly #maxStreams: number;
  readonly #decoder = new HpackDecoder(4096);
  readonly #streams = new Map<number, H2Stream>();
  #in: Uint8Array = new Uint8Array(0);
  #prefaceSeen = false;
  #out: Uint8Array[] = [];
  #flushQueued = false;
  #closed = false;
  #lastStreamId = 0;
  /** The header block being collected (HEADERS then CONTINUATION). */
  #headerBlock:
    | { streamId: number; endStream: boolean; parts: Uint8Array[]; bytes: number }
    | undefined;
  /** Peer's settings that matter when sending. */
  #peerInitialWindow = 65_535;
  #peerMaxFrame = 16_384;
  #connSendWindow = 65_535;
  #connUnacknowledged = 0;
  /** Streams with frames waiting for window. */
  readonly #blocked = new Set<H2Stream>();
  /** The peer sent GOAWAY: it opens no more streams. */
  goawayReceived = false;
  /** When something was last received (`performance.now()` of the owner's clock, ms). */
  lastReceivedAt: number = performance.now();
  /** When this side's keep-alive ping went out (0: none outstanding). */
  #pingSentAt = 0;

  /**
   * @param transport where bytes go
   * @param handler new streams and connection errors
   * @param options limits
   */
  constructor(transport: H2Transport, handler: H2Handler, options: H2Options = {}) {
    this.#transport = transport;
    this.#handler = handler;
    this.#maxStreams = options.maxConcurrentStreams ?? 100;
  }

  /** Open streams. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** True once the connection failed or was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends this side's SETTINGS and widens the connection's receive window. */
  start(): void {
    const settings = new Uint8Array(6 * 4);
    const view = new DataView(settings.buffer);
    const put = (i: number, id: number, value: number) => {
      view.setUint16(i * 6, id);
      view.setUint32(i * 6 + 2, value);
    };
    put(0, Setting.MAX_CONCURRENT_STREAMS, this.#maxStreams);
    put(1, Setting.INITIAL_WINDOW_SIZE, RECEIVE_WINDOW);
    put(2, Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_BYTES);
    put(3, Setting.ENABLE_PUSH, 0);
    this.#queue(frame(FrameType.SETTINGS, 0, 0, settings));
    this.#queue(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(RECEIVE_WINDOW - 65_535)));
  }

  /** Feeds received bytes; frames are handled synchronously, in order. */
  receive(chunk: Uint8Array, now: number): void {
    if (this.#closed) return;
    this.lastReceivedAt = now;
    let buffer = this.#in.length === 0 ? chunk : concat(this.#in, chunk);
    try {
      if (!this.#prefaceSeen) {
        if (buffer.length < PREFACE.length) {
          if (!PREFACE.subarray(0, buffer.length).every((b, i) => b === buffer[i])) {
            throw new ConnectionError(notHttp2(buffer));
          }
          this.#in = buffer;
          return;
        }
        if (!PREFACE.every((b, i) => b === buffer[i])) throw new ConnectionError(notHttp2(buffer));
        this.#prefaceSeen = true;
        buffer = buffer.subarray(PREFACE.length);
      }
      let at = 0;
      while (buffer.length - at >= FRAME_HEADER_BYTES && !this.#closed) {
        const length = (buffer[at] << 16) | (buffer[at + 1] << 8) | buffer[at + 2];
        if (length > MAX_FRAME_BYTES) {
          throw new ConnectionError(
            `FRAME_SIZE_ERROR: a frame of ${length} bytes (at most ${MAX_FRAME_BYTES})`,
          );
        }
        if (buffer.length - at < FRAME_HEADER_BYTES + length) break;
        const type = buffer[at + 3];
        const flags = buffer[at + 4];
        const streamId = ((buffer[at + 5] & 0x7f) << 24) | (buffer[at + 6] << 16) |
          (buffer[at + 7] << 8) | buffer[at + 8];
        const payload = buffer.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
        at += FRAME_HEADER_BYTES + length;
        this.#frame(type, flags, streamId, payload);
      }
      // Keep the rest (a copy: the transport may reuse its buffer).
      this.#in = at === buffer.length ? new Uint8Array(0) : buffer.slice(at);
    } catch (error) {
      if (error instanceof ConnectionError) this.fail(error.message);
      else throw error;
    }
  }

  /**
   * Keep-alive, called by the owner's sweep: pings a connection silent for
   * `idleMs`, and fails it when a ping stays unanswered for `timeoutMs`.
   */
  keepalive(now: number, idleMs: number, timeoutMs: number): void {
    if (this.#closed) return;
    if (this.#pingSentAt !== 0) {
      if (now - this.#pingSentAt >= timeoutMs) {
        this.fail(`keepalive: the peer did not answer a ping within ${timeoutMs} ms`);
      }
      return;
    }
    if (now - this.lastReceivedAt >= idleMs) {
      this.#pingSentAt = now;
      this.#queue(frame(FrameType.PING, 0, 0, new Uint8Array(8)));
    }
  }

  /** Fails the connection: every open stream is aborted and the transport closed (no GOAWAY). */
  fail(reason: string): void {
    if (this.#closed) return;
    this.#handler.onError(reason);
    this.#abortAll(reason);
  }

  /** Closes the transport once what was queued is written (streams still open are aborted). */
  close(reason = "the connection was closed"): void {
    if (this.#closed) return;
    this.#abortAll(reason);
  }

  /** The transport closed under this connection. */
  transportClosed(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out = [];
    this.#dropStreams(reason);
  }

  #abortAll(reason: string) {
    this.#flush();
    this.#closed = true;
    this.#dropStreams(reason);
    this.#transport.close();
  }

  #dropStreams(reason: string) {
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#blocked.clear();
    for (const stream of streams) {
      stream.localEnded = stream.remoteEnded = true;
      stream.events.onAbort?.(reason);
    }
  }

  // --- sending (called by H2Stream) ---

  /** Queues a HEADERS frame (split into CONTINUATION frames when large). */
  sendHeaders(streamId: number, block: Uint8Array, endStream: boolean): void {
    const max = this.#peerMaxFrame;
    let first = true;
    for (let at = 0; at < block.length || first; at += max) {
      const part = block.subarray(at, at + max);
      const last = at + max >= block.length;
      const flags = (last ? Flag.END_HEADERS : 0) | (first && endStream ? Flag.END_STREAM : 0);
      this.#queue(frame(first ? FrameType.HEADERS : FrameType.CONTINUATION, flags, streamId, part));
      first = false;
    }
  }

  /** Queues body bytes, as far as the send windows allow; the rest waits for WINDOW_UPDATE. */
  sendData(stream: H2Stream, bytes: Uint8Array): void {
    if (this.#closed) return;
    if (stream.pending.length > 0) {
      stream.pending.push({ kind: "data", bytes });
      return;
    }
    const rest = this.#writeData(stream, bytes);
    if (rest.length > 0) {
      stream.pending.push({ kind: "data", bytes: rest });
      this.#blocked.add(stream);
    }
  }

  /** Queues the trailers (after any DATA still waiting for window). */
  sendTrailers(stream: H2Stream, block: Uint8Array): void {
    if (this.#closed) return;
    if (stream.pending.length > 0) {
      stream.pending.push({ kind: "trailers", block });
      return;
    }
    this.#endWith(stream, block);
  }

  /** Queues RST_STREAM and forgets the stream. */
  resetStream(stream: H2Stream, code: number): void {
    if (this.#closed) return;
    this.#queue(frame(FrameType.RST_STREAM, 0, stream.id, u32(code)));
    this.#forget(stream);
  }

  #endWith(stream: H2Stream, block: Uint8Array) {
    this.sendHeaders(stream.id, block, true);
    // No RST_STREAM NO_ERROR after it (RFC 9113 §8.1 allows one when the peer has not ended
    // its side): Deno 2.9's node:http2 client, reading it in the same packet as the status
    // and destroying its socket from the status handler, sometimes never closed its session
    // (an agent's stop() then waited for ever). Whatever the peer still sends is dropped.
    stream.remoteEnded = true;
    this.#forget(stream);
  }

  #forget(stream: H2Stream) {
    this.#streams.delete(stream.id);
    this.#blocked.delete(stream);
  }

  /** Writes as much of `bytes` as the windows allow; returns the rest. */
  #writeData(stream: H2Stream, bytes: Uint8Array): Uint8Array {
    let at = 0;
    while (at < bytes.length) {
      const room = Math.min(this.#connSendWindow, stream.sendWindow, this.#peerMaxFrame);
      if (room <= 0) break;
      const part = bytes.subarray(at, at + room);
      this.#queue(frame(FrameType.DATA, 0, stream.id, part));
      this.#connSendWindow -= part.length;
      stream.sendWindow -= part.length;
      at += part.length;
    }
    return at === 0 ? bytes : bytes.subarray(at);
  }

  /** Sends what waits for window, stream by stream. */
  #unblock() {
    for (const stream of this.#blocked) {
      while (stream.pending.length > 0) {
        const next = stream.pending[0];
        if (next.kind === "trailers") {
          stream.pending.shift();
          this.#endWith(stream, next.block);
          break;
        }
        const rest = this.#writeData(stream, next.bytes);
        if (rest.length > 0) {
          next.bytes = rest;
          break;
        }
        stream.pending.shift();
      }
      if (stream.pending.length === 0) this.#blocked.delete(stream);
      if (this.#connSendWindow <= 0) break;
    }
  }

  #queue(bytes: Uint8Array) {
    if (this.#closed) return;
    this.#out.push(bytes);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush() {
    this.#flushQueued = false;
    if (this.#out.length === 0 || this.#closed) return;
    const out = this.#out.length === 1 ? this.#out[0] : concat(...this.#out);
    this.#out = [];
    this.#transport.write(out);
  }

  // --- receiving ---

  #frame(type: number, flags: number, streamId: number, payload: Uint8Array) {
    if (this.#headerBlock && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(
        `PROTOCOL_ERROR: expected a CONTINUATION frame of stream ${this.#headerBlock.streamId}, found frame type ${type}`,
      );
    }
    switch (type) {
      case FrameType.DATA:
        return this.#data(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.#headers(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.#continuation(flags, streamId, payload);
      case FrameType.PRIORITY:
        if (payload.length !== 5) throw new ConnectionError("FRAME_SIZE_ERROR: PRIORITY frame");
        return;
      case FrameType.RST_STREAM:
        return this.#rst(streamId, payload);
      case FrameType.SETTINGS:
        return this.#settings(flags, streamId, payload);
      case FrameType.PING:
        return this.#ping(flags, streamId, payload);
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError("PROTOCOL_ERROR: GOAWAY on a stream");
        this.goawayReceived = true;
        return;
      case FrameType.WINDOW_UPDATE:
        return this.#windowUpdate(streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError("PROTOCOL_ERROR: a client sent PUSH_PROMISE");
      default:
        // Unknown frame types are ignored (RFC 9113 §4.1).
        return;
    }
  }

  /** Strips padding (and the priority fields of HEADERS). */
  #body(flags: number, payload: Uint8Array, priority: boolean): Uint8Array {
    let start = 0;
    let end = payload.length;
    if (flags & Flag.PADDED) {
      if (payload.length < 1) throw new ConnectionError("PROTOCOL_ERROR: padded frame too short");
      end -= payload[0];
      start = 1;
    }
    if (priority) start += 5;
    if (end < start) throw new ConnectionError("PROTOCOL_ERROR: padding longer than the frame");
    return payload.subarray(start, end);
  }

  #data(flags: number, streamId: number, payload: Uint8Array) {
    if (streamId === 0) throw new ConnectionError("PROTOCOL_ERROR: DATA on stream 0");
    // Flow control counts the whole payload, padding included, even for closed streams.
    this.#connUnacknowledged += payload.length;
    if (this.#connUnacknowledged > RECEIVE_WINDOW) {
      throw new ConnectionError("FLOW_CONTROL_ERROR: the peer sent past the connection window");
    }
    if (this.#connUnacknowledged >= RECEIVE_WINDOW / 2) {
      this.#queue(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(this.#connUnacknowledged)));
      this.#connUnacknowledged = 0;
    }
    const stream = this.#streams.get(streamId);
    if (!stream || stream.remoteEnded) {
      if (streamId > this.#lastStreamId) {
        throw new ConnectionError(`PROTOCOL_ERROR: DATA on idle stream ${streamId}`);
      }
      return; // A stream this side already ended or reset: dropped (RFC 9113 §5.1).
    }
    stream.unacknowledged += payload.length;
    if (stream.unacknowledged > RECEIVE_WINDOW) {
      stream.reset(ErrorCode.FLOW_CONTROL_ERROR);
      stream.events.onAbort?.(
        "the peer sent past the stream's window",
        ErrorCode.FLOW_CONTROL_ERROR,
      );
      return;
    }
    const end = (flags & Flag.END_STREAM) !== 0;
    if (!end && stream.unacknowledged >= RECEIVE_WINDOW / 2) {
      this.#queue(frame(FrameType.WINDOW_UPDATE, 0, streamId, u32(stream.unacknowledged)));
      stream.unacknowledged = 0;
    }
    const body = this.#body(flags, payload, false);
    if (body.length > 0) stream.events.onData?.(body);
    if (end) this.#remoteEnd(stream);
  }

  #remoteEnd(stream: H2Stream) {
    if (stream.remoteEnded) return;
    stream.remoteEnded = true;
    if (stream.localEnded) this.#forget(stream);
    stream.events.onEnd?.();
  }

  #headers(flags: number, streamId: number, payload: Uint8Array) {
    if (streamId === 0) throw new ConnectionError("PROTOCOL_ERROR: HEADERS on stream 0");
    const block = this.#body(flags, payload, (flags & Flag.PRIORITY) !== 0);
    this.#headerBlock = {
      streamId,
      endStream: (flags & Flag.END_STREAM) !== 0,
      parts: [block],
      bytes: block.length,
    };
    if (flags & Flag.END_HEADERS) this.#headersDone();
  }

  #continuation(flags: number, streamId: number, payload: Uint8Array) {
    const pending = this.#headerBlock;
    if (!pending || pending.streamId !== streamId) {
      throw new ConnectionError(`PROTOCOL_ERROR: an unexpected CONTINUATION on stream ${streamId}`);
    }
    pending.parts.push(payload);
    pending.bytes += payload.length;
    if (pending.bytes > MAX_HEADER_BLOCK_BYTES) {
      throw new ConnectionError(
        `PROTOCOL_ERROR: a header block larger than ${MAX_HEADER_BLOCK_BYTES} bytes`,
      );
    }
    if (flags & Flag.END_HEADERS) this.#headersDone();
  }

  #headersDone() {
    const { streamId, endStream, parts } = this.#headerBlock!;
    this.#headerBlock = undefined;
    let fields: HeaderField[] | undefined;
    let tooLarge = false;
    try {
      fields = this.#decoder.decode(parts.length === 1 ? parts[0] : concat(...parts));
    } catch (error) {
      throw new ConnectionError(`COMPRESSION_ERROR: ${(error as Error).message}`);
    }
    let listBytes = 0;
    for (const [name, value] of fields) listBytes += name.length + value.length + 32;
    if (listBytes > MAX_HEADER_LIST_BYTES) tooLarge = true;
    const existing = this.#streams.get(streamId);
    if (existing) {
      // Trailers: they must end the stream.
      if (!endStream) {
        existing.reset(ErrorCode.PROTOCOL_ERROR);
        existing.events.onAbort?.("the peer sent a second HEADERS without END_STREAM");
        return;
      }
      this.#remoteEnd(existing);
      return;
    }
    if (streamId <= this.#lastStreamId || streamId % 2 === 0) {
      if (streamId % 2 === 0 || streamId > this.#lastStreamId) {
        throw new ConnectionError(`PROTOCOL_ERROR: HEADERS open stream ${streamId}`);
      }
      return; // Trailers of a stream this side already ended.
    }
    this.#lastStreamId = streamId;
    const stream = new H2Stream(streamId, this, this.#peerInitialWindow);
    if (this.#streams.size >= this.#maxStreams || this.goawayReceived) {
      stream.remoteEnded = true;
      stream.reset(ErrorCode.REFUSED_STREAM);
      return;
    }
    this.#streams.set(streamId, stream);
    if (tooLarge) {
      stream.end([[":status", "431"]]);
      return;
    }
    if (endStream) stream.remoteEnded = true;
    this.#handler.onStream(stream, fields, endStream);
  }

  #rst(streamId: number, payload: Uint8Array) {
    if (payload.length !== 4) throw new ConnectionError("FRAME_SIZE_ERROR: RST_STREAM");
    if (streamId === 0) throw new ConnectionError("PROTOCOL_ERROR: RST_STREAM on stream 0");
    const stream = this.#streams.get(streamId);
    if (!stream) return;
    const code = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
    stream.localEnded = stream.remoteEnded = true;
    stream.pending = [];
    this.#forget(stream);
    stream.events.onAbort?.(`the peer reset the stream (RST_STREAM code ${code})`, code);
  }

  #settings(flags: number, streamId: number, payload: Uint8Array) {
    if (streamId !== 0) throw new ConnectionError("PROTOCOL_ERROR: SETTINGS on a stream");
    if (flags & Flag.ACK) return;
    if (payload.length % 6 !== 0) throw new ConnectionError("FRAME_SIZE_ERROR: SETTINGS");
    const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
    for (let at = 0; at < payload.length; at += 6) {
      const id = view.getUint16(at);
      const value = view.getUint32(at + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) {
          throw new ConnectionError("FLOW_CONTROL_ERROR: SETTINGS_INITIAL_WINDOW_SIZE too large");
        }
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const stream of this.#streams.values()) stream.sendWindow += delta;
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < 16_384 || value > 16_777_215) {
          throw new ConnectionError(`PROTOCOL_ERROR: SETTINGS_MAX_FRAME_SIZE ${value}`);
        }
        this.#peerMaxFrame = value;
      }
      // HEADER_TABLE_SIZE: this side's encoder uses no dynamic table. Others: nothing to do.
    }
    this.#queue(frame(FrameType.SETTINGS, Flag.ACK, 0, new Uint8Array(0)));
    this.#unblock();
  }

  #ping(flags: number, streamId: number, payload: Uint8Array) {
    if (streamId !== 0) throw new ConnectionError("PROTOCOL_ERROR: PING on a stream");
    if (payload.length !== 8) throw new ConnectionError("FRAME_SIZE_ERROR: PING");
    if (flags & Flag.ACK) {
      this.#pingSentAt = 0;
      return;
    }
    this.#queue(frame(FrameType.PING, Flag.ACK, 0, payload.slice()));
  }

  #windowUpdate(streamId: number, payload: Uint8Array) {
    if (payload.length !== 4) throw new ConnectionError("FRAME_SIZE_ERROR: WINDOW_UPDATE");
    const increment = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0) &
      0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError("PROTOCOL_ERROR: WINDOW_UPDATE of 0");
      this.#connSendWindow += increment;
      if (this.#connSendWindow > MAX_WINDOW) {
        throw new ConnectionError("FLOW_CONTROL_ERROR: the connection window overflowed");
      }
      this.#unblock();
      return;
    }
    const stream = this.#streams.get(streamId);
    if (!stream) return;
    if (increment === 0 || stream.sendWindow + increment > MAX_WINDOW) {
      stream.reset(increment === 0 ? ErrorCode.PROTOCOL_ERROR : ErrorCode.FLOW_CONTROL_ERROR);
      stream.events.onAbort?.("the peer sent an invalid WINDOW_UPDATE");
      return;
    }
    stream.sendWindow += increment;
    if (stream.pending.length > 0) this.#unblock();
  }
}

/** Why bytes that do not start with the HTTP/2 preface were refused, in words. */
function notHttp2(bytes: Uint8Array): string {
  const head = new TextDecoder().decode(bytes.subarray(0, 16));
  if (/^[A-Z]+ \S/.test(head)) {
    return "expected the HTTP/2 connection preface (a gRPC client speaking HTTP/2), found an HTTP/1 request";
  }
  if (bytes[0] === 0x16) {
    return "expected the HTTP/2 connection preface, found a TLS handshake (the client uses TLS; this broker listens without)";
  }
  return "expected the HTTP/2 connection preface, found other bytes";
}

/** Joins byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
