/**
 * A fix for kafkajs 2.2.4's idle timer loop (tulios/kafkajs#1556, fixes
 * proposed in #1667 and #1768, not released): once a connection has had a
 * response, `RequestQueue.scheduleCheckPendingRequests` re-arms a timer of
 * `throttledUntil - Date.now()` ms, negative when nothing is throttled, so
 * every Kafka connection (producer, consumers, admin; one per Kafka broker
 * each) wakes its process about once a millisecond for ever, with nothing
 * to do. Measured on a broker with 20 agents (bench scenario 8, Kafka mock,
 * README.md "Performance"): 12-13 % of a core without this patch, 4 % with.
 *
 * The patched method arms the timer only when it has a purpose: requests
 * are waiting (then as before: at the end of a throttle, else in 10 ms), or
 * the connection is throttled (then when the throttle ends). With no request
 * waiting and no throttle there is nothing to check: a request pushed later
 * is sent at once or schedules its own check (`push` calls this method), and
 * every answered request checks the queue again.
 *
 * A second patch makes kafkajs's record encoding allocate less, with the
 * same bytes: its `Encoder.writeUVarInt` (every varint of every record:
 * length, offset delta, key and value lengths, header count) built an array
 * and a `Buffer` per call, and `writeVarLong` / `sizeOfVarLong` (each
 * record's timestamp delta) made a chain of BigInt `Long` objects. The
 * replacements write straight into the encoder's buffer with the same
 * arithmetic; varlongs take a plain-number path for integers within
 * +-2^52 (where the zig-zag value is exact in a double) and kafkajs's own
 * code for everything else. kafkajs_patch_test.ts compares the bytes with
 * kafkajs's original methods ({@linkcode kafkajsEncoderOriginals}).
 *
 * Imported for its effect by kafka.ts (the only importer of kafkajs);
 * {@linkcode patchedRequestQueue} and {@linkcode patchedEncoder} say whether
 * the patches are in place.
 *
 * @module
 */
// kafkajs's own module (CommonJS, one instance per process, the one its connections use).
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import Encoder from "kafkajs/src/protocol/encoder.js";

/** What kafkajs waits before checking waiting requests again (its CHECK_PENDING_REQUESTS_INTERVAL). */
const CHECK_PENDING_REQUESTS_INTERVAL_MS = 10;

interface Queue {
  throttledUntil: number;
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
  pending: unknown[];
  checkPendingRequests(): void;
}

const proto = (RequestQueue as { prototype?: Record<string, unknown> } | undefined)?.prototype;
const original = proto?.scheduleCheckPendingRequests;

/** True when the installed kafkajs has the method this patch replaces (and it was replaced). */
export const patchedRequestQueue: boolean = typeof original === "function";

if (proto && patchedRequestQueue) {
  proto.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: Queue) {
    if (this.throttleCheckTimeoutId) return;
    let scheduleAt = this.throttledUntil - Date.now();
    if (this.pending.length > 0) {
      scheduleAt = scheduleAt > 0 ? scheduleAt : CHECK_PENDING_REQUESTS_INTERVAL_MS;
    } else if (scheduleAt <= 0) {
      return; // Nothing waits, nothing throttled: no timer (kafkajs re-armed one every ~1 ms).
    }
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    }, scheduleAt);
  };
}

/** The part of kafkajs's Encoder that the encoder patch touches. */
interface EncoderState {
  buf: Uint8Array;
  offset: number;
  ensureAvailable(length: number): void;
}

type EncoderMethod = (this: EncoderState, value: unknown) => EncoderState;

const encoderClass = Encoder as unknown as
  | { prototype?: Record<string, unknown>; sizeOfVarLong?: unknown }
  | undefined;
const encoderProto = encoderClass?.prototype;

/** kafkajs's own methods, as they were before the patch (for the byte-identity test). */
export const kafkajsEncoderOriginals: {
  writeUVarInt: EncoderMethod;
  writeVarLong: EncoderMethod;
  sizeOfVarLong: (value: unknown) => number;
} = {
  writeUVarInt: encoderProto?.writeUVarInt as EncoderMethod,
  writeVarLong: encoderProto?.writeVarLong as EncoderMethod,
  sizeOfVarLong: encoderClass?.sizeOfVarLong as (value: unknown) => number,
};

/** True when the installed kafkajs has the Encoder methods the encoder patch replaces (and they were replaced). */
export const patchedEncoder: boolean = typeof kafkajsEncoderOriginals.writeUVarInt === "function" &&
  typeof kafkajsEncoderOriginals.writeVarLong === "function" &&
  typeof kafkajsEncoderOriginals.sizeOfVarLong === "function";

/** Largest magnitude whose zig-zag value (2|v| or 2|v|-1) is an exact double. */
const FAST_VARLONG_MAX = 2 ** 52;

/** The zig-zag value of an integer within +-2^52, as a (exact) double. */
function zigZagNumber(value: number): number {
  return value >= 0 ? value * 2 : -value * 2 - 1;
}

if (encoderClass && encoderProto && patchedEncoder) {
  const { writeVarLong, sizeOfVarLong } = kafkajsEncoderOriginals;
  // Same loop as kafkajs (32-bit `&` and `>>>`, so the same bytes for any input), without the array and Buffer.
  encoderProto.writeUVarInt = function writeUVarInt(this: EncoderState, value: number) {
    let size = 1;
    for (let v = value; (v & 0xffffff80) !== 0; v >>>= 7) size++;
    this.ensureAvailable(size);
    const buf = this.buf;
    let offset = this.offset;
    let v = value;
    while ((v & 0xffffff80) !== 0) {
      buf[offset++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[offset++] = v & 0x7f;
    this.offset = offset;
    return this;
  };
  encoderProto.writeVarLong = function patchedWriteVarLong(this: EncoderState, value: unknown) {
    if (
      typeof value !== "number" || !Number.isInteger(value) || Math.abs(value) > FAST_VARLONG_MAX
    ) {
      return writeVarLong.call(this, value);
    }
    let z = zigZagNumber(value);
    let size = 1;
    for (let v = z; v >= 128; v = Math.floor(v / 128)) size++;
    this.ensureAvailable(size);
    const buf = this.buf;
    let offset = this.offset;
    while (z >= 128) {
      buf[offset++] = (z % 128) | 0x80;
      z = Math.floor(z / 128);
    }
    buf[offset++] = z;
    this.offset = offset;
    return this;
  };
  encoderClass.sizeOfVarLong = function patchedSizeOfVarLong(value: unknown): number {
    if (
      typeof value !== "number" || !Number.isInteger(value) || Math.abs(value) > FAST_VARLONG_MAX
    ) {
      return sizeOfVarLong.call(Encoder, value);
    }
    let size = 1;
    for (let v = zigZagNumber(value); v >= 128; v = Math.floor(v / 128)) size++;
    return size;
  };
}
