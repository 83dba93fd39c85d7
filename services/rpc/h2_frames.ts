/**
 * The HTTP/2 (RFC 9113) frame codec of the tree, with no I/O and no state
 * beyond a parser's buffer: frame types, flags, settings and error codes,
 * the client connection preface, frame headers and whole frames (SETTINGS,
 * PING, WINDOW_UPDATE), and a parser that splits received bytes into frames
 * whatever their boundaries. Used by the broker's server side (h2.ts), the
 * agent's client side (h2_client.ts) and the benchmark's simulated agents
 * (bench/h2_call.ts). Header blocks are hpack.ts's.
 *
 * ```ts
 * const bytes = frame(FrameType.PING, 0, 0, new Uint8Array(8));
 * const [parsed] = new FrameParser().push(bytes);
 * console.log(parsed.type === FrameType.PING, parsed.payload.length); // true 8
 * ```
 *
 * @module
 */

/** Frame types (RFC 9113 6). */
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

/** Frame flags (RFC 9113 6): ACK shares its bit with END_STREAM. */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** SETTINGS parameters (RFC 9113 6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Error codes of RST_STREAM and GOAWAY (RFC 9113 7), the ones named here. */
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

/** Bytes of a frame header: 24-bit length, type, flags, 31-bit stream id. */
export const FRAME_HEADER_BYTES = 9;
/** Initial flow-control window of a connection and of a stream (RFC 9113 6.9.2). */
export const DEFAULT_WINDOW = 65_535;
/** Largest window (RFC 9113 6.9.1). */
export const MAX_WINDOW = 2 ** 31 - 1;
/** SETTINGS_MAX_FRAME_SIZE until the peer says otherwise, and the most this side accepts. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;

/** The client connection preface (RFC 9113 3.4), sent before the first SETTINGS. */
export const CLIENT_PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);

/** A connection error found while parsing (the connection must be dropped). */
export class H2Error extends Error {
  /** The HTTP/2 error code (ErrorCode). */
  readonly code: number;
  /** @param code HTTP/2 error code @param message what was wrong */
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/** Writes a frame header at `at` of `out`. */
export function writeFrameHeader(
  out: Uint8Array,
  at: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  out[at] = (length >>> 16) & 0xff;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out[at + 5] = (streamId >>> 24) & 0x7f;
  out[at + 6] = (streamId >>> 16) & 0xff;
  out[at + 7] = (streamId >>> 8) & 0xff;
  out[at + 8] = streamId & 0xff;
}

/** One whole frame: header and payload. */
export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(out, 0, payload.length, type, flags, streamId);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** A SETTINGS frame with these parameters (id, value), in order. */
export function settingsFrame(entries: ReadonlyArray<readonly [number, number]>): Uint8Array {
  const payload = new Uint8Array(entries.length * 6);
  const view = new DataView(payload.buffer);
  entries.forEach(([id, value], i) => {
    view.setUint16(i * 6, id);
    view.setUint32(i * 6 + 2, value);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

/** The SETTINGS acknowledgement. */
export const SETTINGS_ACK: Uint8Array = frame(FrameType.SETTINGS, Flag.ACK, 0);

/** A PING (or, with `ack`, its answer) carrying 8 opaque bytes. */
export function pingFrame(opaque: Uint8Array, ack: boolean): Uint8Array {
  if (opaque.length !== 8) {
    throw new RangeError(`PING: expected 8 opaque bytes, got ${opaque.length}`);
  }
  return frame(FrameType.PING, ack ? Flag.ACK : 0, 0, opaque);
}

/** A WINDOW_UPDATE of the connection (stream 0) or of a stream, by 1 to 2^31-1 bytes. */
export function windowUpdateFrame(streamId: number, increment: number): Uint8Array {
  if (!Number.isInteger(increment) || increment < 1 || increment > MAX_WINDOW) {
    throw new RangeError(
      `WINDOW_UPDATE: expected an increment of 1 to ${MAX_WINDOW}, got ${increment}`,
    );
  }
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, increment);
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
}

/** A 4-byte big-endian payload (WINDOW_UPDATE increments, RST_STREAM and GOAWAY codes). */
export function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

/** One received frame; `payload` is valid only until the next push (copy what is kept). */
export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

/**
 * Splits received bytes into frames, whatever the read boundaries. A frame
 * longer than `maxFrameSize` (what this side advertised, by default the
 * protocol's 16,384) is a FRAME_SIZE_ERROR (thrown as {@linkcode H2Error}).
 * Frames wholly inside a pushed chunk are returned as views of it (no copy);
 * only a partial frame's bytes are kept (copied) until the rest arrives.
 */
export class FrameParser {
  readonly #maxFrameSize: number;
  #rest: Uint8Array | undefined;

  /** @param maxFrameSize largest payload accepted (bytes) */
  constructor(maxFrameSize = DEFAULT_MAX_FRAME_SIZE) {
    this.#maxFrameSize = maxFrameSize;
  }

  /** True when part of a frame is waiting for more bytes. */
  get partial(): boolean {
    return this.#rest !== undefined;
  }

  /** Adds received bytes; returns the frames they complete, in order. */
  push(chunk: Uint8Array): Frame[] {
    let bytes = chunk;
    if (this.#rest) {
      const joined = new Uint8Array(this.#rest.length + chunk.length);
      joined.set(this.#rest);
      joined.set(chunk, this.#rest.length);
      bytes = joined;
      this.#rest = undefined;
    }
    const frames: Frame[] = [];
    let at = 0;
    while (bytes.length - at >= FRAME_HEADER_BYTES) {
      const length = (bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2];
      if (length > this.#maxFrameSize) {
        throw new H2Error(
          ErrorCode.FRAME_SIZE_ERROR,
          `received a frame of ${length} bytes, over this side's SETTINGS_MAX_FRAME_SIZE ${this.#maxFrameSize}`,
        );
      }
      if (bytes.length - at < FRAME_HEADER_BYTES + length) break;
      const streamId = ((bytes[at + 5] & 0x7f) << 24) | (bytes[at + 6] << 16) |
        (bytes[at + 7] << 8) | bytes[at + 8];
      frames.push({
        type: bytes[at + 3],
        flags: bytes[at + 4],
        streamId,
        payload: bytes.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length),
      });
      at += FRAME_HEADER_BYTES + length;
    }
    if (at < bytes.length) this.#rest = bytes.slice(at);
    return frames;
  }
}

/** The (id, value) pairs of a SETTINGS payload; FRAME_SIZE_ERROR unless a multiple of 6 bytes. */
export function parseSettings(payload: Uint8Array): Array<[number, number]> {
  if (payload.length % 6 !== 0) {
    throw new H2Error(
      ErrorCode.FRAME_SIZE_ERROR,
      `received a SETTINGS frame of ${payload.length} bytes, expected a multiple of 6`,
    );
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const out: Array<[number, number]> = [];
  for (let i = 0; i < payload.length; i += 6) out.push([view.getUint16(i), view.getUint32(i + 2)]);
  return out;
}

/** A 4-byte big-endian value at `at` of a payload, its top bit cleared (window increments, stream ids). */
export function uint31(payload: Uint8Array, at = 0): number {
  return ((payload[at] & 0x7f) << 24 | payload[at + 1] << 16 | payload[at + 2] << 8 |
    payload[at + 3]) >>> 0;
}

/** A 4-byte big-endian value at `at` of a payload (error codes). */
export function uint32(payload: Uint8Array, at = 0): number {
  return (payload[at] << 24 | payload[at + 1] << 16 | payload[at + 2] << 8 | payload[at + 3]) >>> 0;
}

/**
 * The data of a DATA frame without its padding (PADDED flag: a pad-length
 * byte first, that many bytes of padding last); PROTOCOL_ERROR when the
 * padding is longer than the frame.
 */
export function unpadded(f: Frame): Uint8Array {
  if ((f.flags & Flag.PADDED) === 0) return f.payload;
  const pad = f.payload[0];
  if (f.payload.length === 0 || pad >= f.payload.length) {
    throw new H2Error(
      ErrorCode.PROTOCOL_ERROR,
      "received a DATA frame whose padding is longer than the frame",
    );
  }
  return f.payload.subarray(1, f.payload.length - pad);
}
