import assert from "node:assert/strict";
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import Encoder from "kafkajs/src/protocol/encoder.js";
import Record from "kafkajs/src/protocol/recordBatch/record/v0/index.js";
import RecordBatchModule from "kafkajs/src/protocol/recordBatch/v0/index.js";
import { kafkajsEncoderOriginals, patchedEncoder, patchedRequestQueue } from "./kafkajs_patch.ts";

/** A stand-in for kafkajs's RequestQueue state that the patched method reads. */
function queue(pending: number, throttledUntil: number) {
  return {
    throttledUntil,
    throttleCheckTimeoutId: null as ReturnType<typeof setTimeout> | null,
    pending: Array.from({ length: pending }, (_, i) => i),
    checks: 0,
    checkPendingRequests() {
      this.checks++;
    },
  };
}

const schedule = (q: ReturnType<typeof queue>) =>
  (RequestQueue.prototype.scheduleCheckPendingRequests as (this: unknown) => void).call(q);

Deno.test("kafkajs patch: nothing waiting and nothing throttled arms no timer (kafkajs re-armed one every ~1 ms)", () => {
  assert.equal(
    patchedRequestQueue,
    true,
    "the installed kafkajs has RequestQueue.scheduleCheckPendingRequests",
  );
  const idle = queue(0, -1);
  schedule(idle);
  assert.equal(idle.throttleCheckTimeoutId, null);
  // A throttle that already ended is the same.
  const ended = queue(0, Date.now() - 5);
  schedule(ended);
  assert.equal(ended.throttleCheckTimeoutId, null);
});

Deno.test("kafkajs patch: waiting requests are checked again in 10 ms, or when the throttle ends", async () => {
  const waiting = queue(2, -1);
  schedule(waiting);
  assert.notEqual(waiting.throttleCheckTimeoutId, null);
  // One timer at a time.
  const first = waiting.throttleCheckTimeoutId;
  schedule(waiting);
  assert.equal(waiting.throttleCheckTimeoutId, first);
  const throttled = queue(0, Date.now() + 60);
  schedule(throttled);
  assert.notEqual(throttled.throttleCheckTimeoutId, null);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(waiting.checks, 1, "checked after 10 ms");
  assert.equal(waiting.throttleCheckTimeoutId, null);
  assert.equal(throttled.checks, 0, "not before the throttle ends");
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(throttled.checks, 1, "checked when the throttle ended");
});

// ---- The encoder patch: the same bytes as kafkajs's own methods. ----

type Enc = {
  buffer: Uint8Array;
  writeUVarInt(v: unknown): Enc;
  writeVarInt(v: unknown): Enc;
  writeVarLong(v: unknown): Enc;
};
const EncoderClass = Encoder as unknown as {
  new (size?: number): Enc;
  prototype: Record<string, unknown>;
  sizeOfVarLong(v: unknown): number;
};

/** Runs `fn` with kafkajs's original Encoder methods in place, then puts the patched ones back. */
function withOriginals<T>(fn: () => T): T {
  const patched = {
    writeUVarInt: EncoderClass.prototype.writeUVarInt,
    writeVarLong: EncoderClass.prototype.writeVarLong,
    sizeOfVarLong: EncoderClass.sizeOfVarLong,
  };
  EncoderClass.prototype.writeUVarInt = kafkajsEncoderOriginals.writeUVarInt;
  EncoderClass.prototype.writeVarLong = kafkajsEncoderOriginals.writeVarLong;
  EncoderClass.sizeOfVarLong = kafkajsEncoderOriginals.sizeOfVarLong;
  try {
    return fn();
  } finally {
    EncoderClass.prototype.writeUVarInt = patched.writeUVarInt;
    EncoderClass.prototype.writeVarLong = patched.writeVarLong;
    EncoderClass.sizeOfVarLong = patched.sizeOfVarLong;
  }
}

/** Edge values, powers of two and their neighbours, and a seeded random spread. */
function sampleValues(): number[] {
  const values = [
    0,
    -0,
    1,
    -1,
    63,
    64,
    -64,
    -65,
    127,
    128,
    255,
    256,
    2 ** 31 - 1,
    -(2 ** 31),
    2 ** 32 - 1,
    2 ** 32,
  ];
  for (let bit = 0; bit <= 53; bit++) {
    for (const d of [-1, 0, 1]) values.push(2 ** bit + d, -(2 ** bit) + d);
  }
  let seed = 0x2545f491;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 5000; i++) {
    const magnitude = 2 ** Math.floor(next() * 54);
    values.push(Math.floor(next() * magnitude) * (next() < 0.5 ? -1 : 1));
  }
  return values;
}

const { RecordBatch } = RecordBatchModule as unknown as {
  RecordBatch(batch: Record<string, unknown>): Promise<Enc>;
};

const bytes = (e: Enc) => Array.from(e.buffer);

Deno.test("kafkajs patch: varints and varlongs are byte for byte kafkajs's own (0, negatives, +-2^31, 2^52, random)", () => {
  assert.equal(
    patchedEncoder,
    true,
    "the installed kafkajs has Encoder.writeUVarInt, writeVarLong, sizeOfVarLong",
  );
  const values = sampleValues();
  // Plus what kafkajs's own code handles outside the fast path: beyond 2^52 and unsafe integers.
  const longValues = [
    ...values,
    2 ** 52 + 2,
    -(2 ** 53),
    2 ** 60,
    -(2 ** 62),
    Number.MAX_SAFE_INTEGER,
  ];
  for (const v of values) {
    // After a 5-byte prefix so that the patched path also grows a buffer it shares.
    const write = (e: Enc) => bytes(e.writeUVarInt(7).writeVarInt(v).writeUVarInt(v));
    assert.deepEqual(
      write(new EncoderClass(1)),
      withOriginals(() => write(new EncoderClass(1))),
      `varint ${v}`,
    );
  }
  for (const v of longValues) {
    const write = (e: Enc) => bytes(e.writeVarLong(v));
    const original = withOriginals(() => write(new EncoderClass(1)));
    assert.deepEqual(write(new EncoderClass(1)), original, `varlong ${v}`);
    assert.equal(
      EncoderClass.sizeOfVarLong(v),
      withOriginals(() => EncoderClass.sizeOfVarLong(v)),
      `size ${v}`,
    );
    assert.equal(EncoderClass.sizeOfVarLong(v), original.length, `size ${v} is the written length`);
  }
  // kafkajs's answer to a non-integer varlong (BigInt refuses it) is kept.
  assert.throws(() => new EncoderClass().writeVarLong(1.5), RangeError);
  assert.throws(() => EncoderClass.sizeOfVarLong(1.5), RangeError);
});

Deno.test("kafkajs patch: whole records and record batches encode to kafkajs's own bytes", async () => {
  const longText = "x".repeat(70_000);
  const records = [
    { key: "agent-1", value: '{"agent_id":"agent-1","hostname":"h","timestamp":1,"metrics":{}}' },
    { key: null, value: null, timestampDelta: 0, offsetDelta: 0 },
    {
      key: "é😀\u0000",
      value: longText,
      timestampDelta: 123_456,
      offsetDelta: 300,
      headers: { a: "b", c: ["d", "e"] },
    },
    { key: "k", value: "v", timestampDelta: -5, offsetDelta: 2 ** 31 - 1 },
  ];
  const encode = () => records.map((r) => bytes(Record(r)));
  assert.deepEqual(encode(), withOriginals(encode));
  const batch = () =>
    RecordBatch({
      firstTimestamp: 1_700_000_000_000,
      maxTimestamp: 1_700_000_000_500,
      lastOffsetDelta: records.length - 1,
      records: records.map((r) => Record(r)),
    });
  const patched = bytes(await batch());
  // Uncompressed, RecordBatch encodes before its first await: all of it runs inside withOriginals.
  const original = await withOriginals(batch);
  assert.deepEqual(patched, bytes(original));
});
