import assert from "node:assert/strict";
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  frame,
  FrameParser,
  FrameType,
  H2Error,
  parseSettings,
  pingFrame,
  Setting,
  SETTINGS_ACK,
  settingsFrame,
  uint31,
  unpadded,
  windowUpdateFrame,
} from "./h2_frames.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

Deno.test("frames: header layout, SETTINGS, PING, WINDOW_UPDATE, preface", () => {
  assert.deepEqual(
    [...frame(FrameType.HEADERS, Flag.END_HEADERS, 1, bytes(7, 8, 9))],
    [0, 0, 3, 1, 4, 0, 0, 0, 1, 7, 8, 9],
  );
  assert.deepEqual(
    [...frame(FrameType.DATA, 0, 2 ** 31 - 1, new Uint8Array(70_000)).subarray(0, 9)],
    [0x01, 0x11, 0x70, 0, 0, 0x7f, 0xff, 0xff, 0xff],
  );
  const settings = settingsFrame([[Setting.ENABLE_PUSH, 0], [
    Setting.INITIAL_WINDOW_SIZE,
    1 << 20,
  ]]);
  assert.deepEqual([...settings.subarray(0, 9)], [0, 0, 12, 4, 0, 0, 0, 0, 0]);
  assert.deepEqual(parseSettings(settings.subarray(9)), [[2, 0], [4, 1 << 20]]);
  assert.deepEqual([...SETTINGS_ACK], [0, 0, 0, 4, 1, 0, 0, 0, 0]);
  assert.deepEqual(
    [...pingFrame(bytes(1, 2, 3, 4, 5, 6, 7, 8), true)],
    [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
  );
  assert.throws(() => pingFrame(bytes(1), false), /expected 8 opaque bytes, got 1/);
  const update = windowUpdateFrame(1, 983_041);
  assert.deepEqual([...update.subarray(0, 9)], [0, 0, 4, 8, 0, 0, 0, 0, 1]);
  assert.equal(uint31(update, 9), 983_041);
  assert.throws(() => windowUpdateFrame(0, 0), /expected an increment of 1 to 2147483647, got 0/);
  assert.equal(new TextDecoder().decode(CLIENT_PREFACE), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  assert.throws(
    () => parseSettings(new Uint8Array(5)),
    /SETTINGS frame of 5 bytes, expected a multiple of 6/,
  );
});

Deno.test("frame parser: the same frames whatever the read boundaries; only partial frames are kept", () => {
  const stream = [
    frame(FrameType.SETTINGS, 0, 0, new Uint8Array(12).fill(3)),
    frame(FrameType.DATA, Flag.END_STREAM, 1, new Uint8Array(300).map((_, i) => i & 0xff)),
    frame(FrameType.PING, 0, 0, new Uint8Array(8).fill(9)),
    frame(FrameType.HEADERS, Flag.END_HEADERS, 1),
  ];
  const all = new Uint8Array(stream.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of stream) {
    all.set(f, at);
    at += f.length;
  }
  const expected = stream.map((f) => ({
    type: f[3],
    flags: f[4],
    streamId: f[8],
    payload: [...f.subarray(9)],
  }));
  for (const step of [1, 2, 7, 9, 100, all.length]) {
    const parser = new FrameParser();
    const got = [];
    for (let i = 0; i < all.length; i += step) {
      // A reused read buffer: frames must not depend on it after push returns.
      const buffer = all.slice(i, i + step);
      for (const f of parser.push(buffer)) got.push({ ...f, payload: [...f.payload] });
      buffer.fill(0xee);
    }
    assert.deepEqual(got, expected, `read in steps of ${step}`);
    assert.equal(parser.partial, false);
  }
  const parser = new FrameParser();
  assert.deepEqual(parser.push(all.subarray(0, 5)), []);
  assert.equal(parser.partial, true);
});

Deno.test("frame parser: a frame over the advertised size is a FRAME_SIZE_ERROR before its payload arrives", () => {
  const parser = new FrameParser(16_384);
  const header = frame(FrameType.DATA, 0, 1, new Uint8Array(16_385)).subarray(0, 9);
  assert.throws(
    () => parser.push(header),
    (e) =>
      e instanceof H2Error && e.code === ErrorCode.FRAME_SIZE_ERROR &&
      /frame of 16385 bytes, over this side's SETTINGS_MAX_FRAME_SIZE 16384/.test(e.message),
  );
});

Deno.test("DATA padding is removed; padding longer than the frame is a PROTOCOL_ERROR", () => {
  const padded = { type: 0, flags: Flag.PADDED, streamId: 1, payload: bytes(2, 10, 11, 0, 0) };
  assert.deepEqual([...unpadded(padded)], [10, 11]);
  assert.deepEqual([...unpadded({ ...padded, flags: 0 })], [2, 10, 11, 0, 0]);
  assert.throws(
    () => unpadded({ ...padded, payload: bytes(5, 1, 2) }),
    (e) => e instanceof H2Error && e.code === ErrorCode.PROTOCOL_ERROR,
  );
});
