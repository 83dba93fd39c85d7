/**
 * The client side of one HTTP/2 connection (RFC 9113) carrying ONE stream,
 * for the agent's gRPC client (client.ts): the connection preface, SETTINGS,
 * PING both ways, flow control both ways, the request's HEADERS and DATA,
 * the response's HEADERS (decoded by hpack.ts, Huffman and dynamic table
 * included), DATA, trailers, RST_STREAM and a peer's GOAWAY. Frame code and
 * constants are h2.ts's (the broker's server side). No timers and no
 * sockets: the owner feeds bytes in ({@linkcode H2ClientConnection.receive})
 * and gives it a `write` function. Internal to services/rpc.
 *
 * ## Invariant: this side never sends GOAWAY
 *
 * There is no method that writes one; a connection error is reported to the
 * owner ({@linkcode H2ClientEvents.onError}), which closes the transport.
 * Ending the request is a DATA frame with END_STREAM
 * ({@linkcode H2ClientConnection.end}); client.ts then closes the socket.
 *
 * ```ts
 * const written: Uint8Array[] = [];
 * const conn = new H2ClientConnection((bytes) => written.push(bytes), {});
 * conn.start([[":method", "POST"], [":path", "/x"]]);
 * conn.flush();
 * console.log(new TextDecoder().decode(written[0].subarray(0, 3))); // PRI
 * ```
 *
 * @module
 */
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";
import {
  concat,
  Flag,
  frame,
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_FRAME_BYTES,
  MAX_HEADER_BLOCK_BYTES,
  MAX_HEADER_LIST_BYTES,
  MAX_WINDOW,
  PREFACE,
  RECEIVE_WINDOW,
  Setting,
  u32,
} from "./h2.ts";

/** The one stream's id (the first a client opens). */
const STREAM_ID = 1;

/** What the connection reports to its owner. */
export interface H2ClientEvents {
  /** The server's first SETTINGS arrived (the connection is up). */
  onSettings?(): void;
  /** Response headers (`endStream`: a trailers-only response) or trailers (`trailers`). */
  onHeaders?(fields: HeaderField[], endStream: boolean, trailers: boolean): void;
  /** Response body bytes, in order (a view the owner may keep). */
  onData?(bytes: Uint8Array): void;
  /** The server ended the stream with a DATA frame (END_STREAM) and no trailers. */
  onEnd?(): void;
  /** The server reset the stream (RST_STREAM code). */
  onReset?(code: number): void;
  /** The answer to this side's PING. */
  onPingAck?(): void;
  /** The server sent GOAWAY (the stream still ends by itself). */
  onGoaway?(): void;
  /** The server broke the protocol: the owner closes the transport (no GOAWAY). */
  onError?(reason: string): void;
}

/** Thrown inside the frame loop for a connection error. */
class ConnectionError extends Error {}

/** The client side of one HTTP/2 connection with one stream (see the module doc). */
export class H2ClientConnection {
  readonly #write: (bytes: Uint8Array) => void;
  readonly #events: H2ClientEvents;
  readonly #decoder = new HpackDecoder(4096);
  #in: Uint8Array = new Uint8Array(0);
  #out: Uint8Array[] = [];
  #flushQueued = false;
  #failed = false;
  #settingsSeen = false;
  #responseSeen = false;
  /** The stream is over on the server's side (END_STREAM or RST_STREAM). */
  #remoteEnded = false;
  /** This side sent END_STREAM. */
  #localEnded = false;
  #headerBlock: { endStream: boolean; parts: Uint8Array[]; bytes: number } | undefined;
  #peerMaxFrame = 16_384;
  #peerInitialWindow = 65_535;
  #streamSendWindow = 65_535;
  #connSendWindow = 65_535;
  #streamUnacknowledged = 0;
  #connUnacknowledged = 0;
  /** Request body waiting for send window; `end` once END_STREAM is to follow it. */
  #pending: Uint8Array[] = [];
  #endPending = false;

  /**
   * @param write where bytes go (called at most once per turn, from a microtask, or from flush())
   * @param events what the owner is told
   */
  constructor(write: (bytes: Uint8Array) => void, events: H2ClientEvents) {
    this.#write = write;
    this.#events = events;
  }

  /** True once this side sent END_STREAM. */
  get localEnded(): boolean {
    return this.#localEnded;
  }

  /** True once the server ended or reset the stream. */
  get remoteEnded(): boolean {
    return this.#remoteEnded;
  }

  /** Queues the preface, this side's SETTINGS and window, and the request's HEADERS (stream 1 open). */
  start(request: ReadonlyArray<readonly [string, string]>): void {
    const settings = new Uint8Array(3 * 6);
    const view = new DataView(settings.buffer);
    const put = (i: number, id: number, value: number) => {
      view.setUint16(i * 6, id);
      view.setUint32(i * 6 + 2, value);
    };
    put(0, Setting.ENABLE_PUSH, 0);
    put(1, Setting.INITIAL_WINDOW_SIZE, RECEIVE_WINDOW);
    put(2, Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_BYTES);
    this.#queue(PREFACE);
    this.#queue(frame(FrameType.SETTINGS, 0, 0, settings));
    this.#queue(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(RECEIVE_WINDOW - 65_535)));
    const block = encodeHeaders(request);
    // The request's block is a few hundred bytes: one HEADERS frame (CONTINUATION beyond 16 KiB).
    for (let at = 0, first = true; at < block.length || first; at += MAX_FRAME_BYTES) {
      const last = at + MAX_FRAME_BYTES >= block.length;
      this.#queue(
        frame(
          first ? FrameType.HEADERS : FrameType.CONTINUATION,
          last ? Flag.END_HEADERS : 0,
          STREAM_ID,
          block.subarray(at, at + MAX_FRAME_BYTES),
        ),
      );
      first = false;
    }
  }

  /** Queues request body bytes, as far as the send windows allow (the rest waits for WINDOW_UPDATE). */
  send(bytes: Uint8Array): void {
    if (this.#localEnded || this.#endPending || this.#failed) return;
    if (this.#pending.length > 0) this.#pending.push(bytes);
    else {
      const rest = this.#writeData(bytes);
      if (rest.length > 0) this.#pending.push(rest);
    }
  }

  /** Ends the request (an empty DATA frame with END_STREAM, after what waits for window). */
  end(): void {
    if (this.#localEnded || this.#endPending || this.#failed) return;
    if (this.#pending.length > 0) {
      this.#endPending = true;
      return;
    }
    this.#localEnded = true;
    this.#queue(frame(FrameType.DATA, Flag.END_STREAM, STREAM_ID, new Uint8Array(0)));
  }

  /** Queues a keep-alive PING. */
  ping(): void {
    this.#queue(frame(FrameType.PING, 0, 0, new Uint8Array(8)));
  }

  /** Writes what is queued now (also done on the next microtask by itself). */
  flush(): void {
    this.#flushQueued = false;
    if (this.#out.length === 0 || this.#failed) return;
    const out = this.#out.length === 1 ? this.#out[0] : concat(...this.#out);
    this.#out = [];
    this.#write(out);
  }

  /** Feeds received bytes; frames are handled synchronously, in order. */
  receive(chunk: Uint8Array): void {
    if (this.#failed) return;
    const buffer = this.#in.length === 0 ? chunk : concat(this.#in, chunk);
    try {
      let at = 0;
      while (buffer.length - at >= FRAME_HEADER_BYTES && !this.#failed) {
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
      this.#in = at === buffer.length ? new Uint8Array(0) : buffer.slice(at);
    } catch (error) {
      if (!(error instanceof ConnectionError)) throw error;
      this.#failed = true;
      this.#out = [];
      this.#events.onError?.(error.message);
    }
  }

  #queue(bytes: Uint8Array) {
    if (this.#failed) return;
    this.#out.push(bytes);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Writes as much of `bytes` as the windows allow; returns the rest. */
  #writeData(bytes: Uint8Array): Uint8Array {
    let at = 0;
    while (at < bytes.length) {
      const room = Math.min(this.#connSendWindow, this.#streamSendWindow, this.#peerMaxFrame);
      if (room <= 0) break;
      const part = bytes.subarray(at, at + room);
      this.#queue(frame(FrameType.DATA, 0, STREAM_ID, part));
      this.#connSendWindow -= part.length;
      this.#streamSendWindow -= part.length;
      at += part.length;
    }
    return at === 0 ? bytes : bytes.subarray(at);
  }

  #unblock() {
    while (this.#pending.length > 0) {
      const rest = this.#writeData(this.#pending[0]);
      if (rest.length > 0) {
        this.#pending[0] = rest;
        return;
      }
      this.#pending.shift();
    }
    if (this.#endPending) {
      this.#endPending = false;
      this.end();
    }
  }

  #frame(type: number, flags: number, streamId: number, payload: Uint8Array) {
    if (this.#headerBlock && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(
        `PROTOCOL_ERROR: expected a CONTINUATION frame, found frame type ${type}`,
      );
    }
    if (!this.#settingsSeen && type !== FrameType.SETTINGS) {
      throw new ConnectionError(
        `PROTOCOL_ERROR: expected the server's SETTINGS first, found frame type ${type}`,
      );
    }
    switch (type) {
      case FrameType.DATA:
        return this.#data(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.#headers(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.#continuation(flags, payload);
      case FrameType.RST_STREAM:
        if (payload.length !== 4) throw new ConnectionError("FRAME_SIZE_ERROR: RST_STREAM");
        if (streamId !== STREAM_ID || this.#remoteEnded) return;
        this.#remoteEnded = true;
        this.#pending = [];
        this.#events.onReset?.(new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0));
        return;
      case FrameType.SETTINGS:
        return this.#settings(flags, streamId, payload);
      case FrameType.PING:
        if (streamId !== 0) throw new ConnectionError("PROTOCOL_ERROR: PING on a stream");
        if (payload.length !== 8) throw new ConnectionError("FRAME_SIZE_ERROR: PING");
        if (flags & Flag.ACK) this.#events.onPingAck?.();
        else this.#queue(frame(FrameType.PING, Flag.ACK, 0, payload.slice()));
        return;
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError("PROTOCOL_ERROR: GOAWAY on a stream");
        this.#events.onGoaway?.();
        return;
      case FrameType.WINDOW_UPDATE:
        return this.#windowUpdate(streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError("PROTOCOL_ERROR: PUSH_PROMISE, which this client disabled");
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.3.2).
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
    if (streamId !== STREAM_ID) {
      throw new ConnectionError(`PROTOCOL_ERROR: DATA on stream ${streamId}`);
    }
    this.#connUnacknowledged += payload.length;
    this.#streamUnacknowledged += payload.length;
    if (
      this.#connUnacknowledged > RECEIVE_WINDOW || this.#streamUnacknowledged > RECEIVE_WINDOW
    ) {
      throw new ConnectionError("FLOW_CONTROL_ERROR: the server sent past the window");
    }
    if (this.#remoteEnded) return; // After a reset or the end: dropped.
    if (!this.#responseSeen) {
      throw new ConnectionError("PROTOCOL_ERROR: DATA before the response headers");
    }
    const end = (flags & Flag.END_STREAM) !== 0;
    if (this.#connUnacknowledged >= RECEIVE_WINDOW / 2) {
      this.#queue(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(this.#connUnacknowledged)));
      this.#connUnacknowledged = 0;
    }
    if (!end && this.#streamUnacknowledged >= RECEIVE_WINDOW / 2) {
      this.#queue(frame(FrameType.WINDOW_UPDATE, 0, STREAM_ID, u32(this.#streamUnacknowledged)));
      this.#streamUnacknowledged = 0;
    }
    const body = this.#body(flags, payload, false);
    if (body.length > 0) this.#events.onData?.(body);
    if (end && !this.#remoteEnded) {
      this.#remoteEnded = true;
      this.#events.onEnd?.();
    }
  }

  #headers(flags: number, streamId: number, payload: Uint8Array) {
    if (streamId !== STREAM_ID) {
      throw new ConnectionError(`PROTOCOL_ERROR: HEADERS on stream ${streamId}`);
    }
    const block = this.#body(flags, payload, (flags & Flag.PRIORITY) !== 0);
    this.#headerBlock = {
      endStream: (flags & Flag.END_STREAM) !== 0,
      parts: [block],
      bytes: block.length,
    };
    if (flags & Flag.END_HEADERS) this.#headersDone();
  }

  #continuation(flags: number, payload: Uint8Array) {
    const pending = this.#headerBlock;
    if (!pending) throw new ConnectionError("PROTOCOL_ERROR: an unexpected CONTINUATION");
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
    const { endStream, parts } = this.#headerBlock!;
    this.#headerBlock = undefined;
    let fields: HeaderField[];
    try {
      // Decoded even after the stream ended: the HPACK table is the connection's.
      fields = this.#decoder.decode(parts.length === 1 ? parts[0] : concat(...parts));
    } catch (error) {
      throw new ConnectionError(`COMPRESSION_ERROR: ${(error as Error).message}`);
    }
    if (this.#remoteEnded) return;
    const trailers = this.#responseSeen;
    if (trailers && !endStream) {
      throw new ConnectionError("PROTOCOL_ERROR: a second HEADERS without END_STREAM");
    }
    this.#responseSeen = true;
    if (endStream) this.#remoteEnded = true;
    this.#events.onHeaders?.(fields, endStream, trailers);
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
        this.#streamSendWindow += value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
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
    if (!this.#settingsSeen) {
      this.#settingsSeen = true;
      this.#events.onSettings?.();
    }
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
    } else if (streamId === STREAM_ID) {
      this.#streamSendWindow += increment;
      if (increment === 0 || this.#streamSendWindow > MAX_WINDOW) {
        throw new ConnectionError("FLOW_CONTROL_ERROR: an invalid WINDOW_UPDATE of the stream");
      }
    }
    this.#unblock();
  }
}
