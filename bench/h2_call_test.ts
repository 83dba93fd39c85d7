import assert from "node:assert/strict";
import {
  decodeAgentMessage,
  encodeAgentMessage,
  encodeBrokerMessage,
} from "../services/rpc/codec.ts";
import { frameMessage } from "../services/rpc/framing.ts";
import { HpackDecoder } from "../services/rpc/hpack.ts";
import {
  type CallEnd,
  H2Call,
  KEEPALIVE_MS,
  KEEPALIVE_TIMEOUT_MS,
  RECEIVE_WINDOW,
  requestHeaderBlock,
} from "./h2_call.ts";
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  type Frame,
  frame,
  FrameParser,
  FrameType,
  parseSettings,
  Setting,
  settingsFrame,
  uint31,
} from "../services/rpc/h2_frames.ts";

const PATH = "/monitoring.v1.Monitoring/Connect";

/** A call whose writes are parsed back into frames, as the server would read them. */
function harness() {
  const written: Uint8Array[] = [];
  const messages: Uint8Array[] = [];
  const ends: CallEnd[] = [];
  const call = new H2Call({
    headerBlock: requestHeaderBlock("127.0.0.1:1", PATH),
    write: (b) => written.push(b.slice()),
    onMessage: (m) => messages.push(m),
    onEnd: (e) => ends.push(e),
  });
  const server = new FrameParser(1 << 24);
  let prefaceSeen = false;
  /** The frames written since the last call. */
  const sent = (): Frame[] => {
    const out: Frame[] = [];
    for (let b of written.splice(0)) {
      if (!prefaceSeen) {
        assert.deepEqual([...b.subarray(0, CLIENT_PREFACE.length)], [...CLIENT_PREFACE]);
        b = b.subarray(CLIENT_PREFACE.length);
        prefaceSeen = true;
      }
      for (const f of server.push(b)) out.push({ ...f, payload: f.payload.slice() });
    }
    return out;
  };
  return { call, sent, messages, ends };
}

const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

Deno.test("call opening: preface, SETTINGS (push off, 1 MiB window), connection WINDOW_UPDATE, HEADERS of the gRPC call; then DATA with gRPC's prefix", () => {
  const { call, sent } = harness();
  call.start(0);
  const [settings, update, headers, ...rest] = sent();
  assert.equal(rest.length, 0);
  assert.equal(settings.type, FrameType.SETTINGS);
  assert.deepEqual(parseSettings(settings.payload), [
    [Setting.ENABLE_PUSH, 0],
    [Setting.INITIAL_WINDOW_SIZE, RECEIVE_WINDOW],
  ]);
  assert.equal(update.type, FrameType.WINDOW_UPDATE);
  assert.equal(update.streamId, 0);
  assert.equal(uint31(update.payload), RECEIVE_WINDOW - 65_535);
  assert.equal(headers.type, FrameType.HEADERS);
  assert.equal(headers.flags, Flag.END_HEADERS, "END_HEADERS, no END_STREAM");
  assert.equal(headers.streamId, 1);
  // Decoded as the broker decodes it (hpack.ts).
  assert.deepEqual(new HpackDecoder(4096).decode(headers.payload).slice(0, 6), [
    [":method", "POST"],
    [":scheme", "http"],
    [":authority", "127.0.0.1:1"],
    [":path", PATH],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ]);

  const body = encodeAgentMessage({
    hello: { agent_id: "a", hostname: "h", version: "1", token: "" },
  }).slice();
  assert.equal(call.send(body), true);
  const [data] = sent();
  assert.equal(data.type, FrameType.DATA);
  assert.equal(data.flags, 0);
  assert.equal(data.streamId, 1);
  assert.deepEqual([...data.payload], [...frameMessage(body)]);
  assert.deepEqual(decodeAgentMessage(data.payload.subarray(5)).hello?.agent_id, "a");
});

Deno.test("call: SETTINGS acknowledged and applied, PING answered with its bytes", () => {
  const { call, sent, ends } = harness();
  call.start(0);
  sent();
  assert.equal(call.connected, false);
  call.receive(settingsFrame([[Setting.MAX_CONCURRENT_STREAMS, 100]]));
  assert.equal(call.connected, true);
  const [ack] = sent();
  assert.equal(ack.type, FrameType.SETTINGS);
  assert.equal(ack.flags, Flag.ACK);
  assert.equal(ack.payload.length, 0);
  call.receive(frame(FrameType.SETTINGS, Flag.ACK, 0));
  assert.deepEqual(sent(), [], "a SETTINGS ACK is not answered");
  call.receive(frame(FrameType.PING, 0, 0, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])));
  const [pong] = sent();
  assert.equal(pong.type, FrameType.PING);
  assert.equal(pong.flags, Flag.ACK);
  assert.deepEqual([...pong.payload], [1, 2, 3, 4, 5, 6, 7, 8]);
  // PRIORITY and an unknown frame type are ignored.
  call.receive(frame(FrameType.PRIORITY, 0, 1, new Uint8Array(5)));
  call.receive(frame(0xfa, 0, 0, new Uint8Array(3)));
  assert.deepEqual(ends, []);
});

Deno.test("call: DATA stays within the windows the server grants, split at its frame size, the rest sent on WINDOW_UPDATE", () => {
  const { call, sent } = harness();
  call.start(0);
  sent();
  // A 10-byte stream window.
  call.receive(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 10]]));
  sent();
  call.send(new Uint8Array(20).fill(7));
  const first = sent();
  assert.equal(first.length, 1);
  assert.equal(first[0].payload.length, 10);
  assert.equal(call.queuedBytes, 15);
  call.receive(frame(FrameType.WINDOW_UPDATE, 0, 1, new Uint8Array(u32(100))));
  const second = sent();
  assert.equal(second.length, 1);
  assert.equal(second[0].payload.length, 15);
  assert.deepEqual(
    [...first[0].payload, ...second[0].payload],
    [...frameMessage(new Uint8Array(20).fill(7))],
  );
  // The connection window (65,535, 10 + 15 used) and the 16,384-byte frames.
  call.receive(frame(FrameType.WINDOW_UPDATE, 0, 1, new Uint8Array(u32(1 << 20))));
  call.send(new Uint8Array(70_000));
  const big = sent();
  assert.deepEqual(big.map((f) => f.payload.length), [16_384, 16_384, 16_384, 16_358]);
  assert.equal(call.queuedBytes, 70_005 - (65_535 - 25));
  call.receive(frame(FrameType.WINDOW_UPDATE, 0, 0, new Uint8Array(u32(1 << 20))));
  assert.deepEqual(sent().map((f) => f.payload.length), [4_495]);
  assert.equal(call.queuedBytes, 0);
  // A larger MAX_FRAME_SIZE is used.
  call.receive(settingsFrame([[Setting.MAX_FRAME_SIZE, 65_536]]));
  sent();
  call.send(new Uint8Array(40_000));
  assert.deepEqual(sent().map((f) => f.payload.length), [40_005]);
});

Deno.test("call: messages split over DATA frames and reads are delivered whole; the window granted is given back", () => {
  const { call, sent, messages, ends } = harness();
  call.start(0);
  sent();
  const ack = encodeBrokerMessage({ ack: { seq: 42 } });
  const welcome = encodeBrokerMessage({ welcome: { broker_version: "x", max_batch_samples: 9 } });
  const body = new Uint8Array([...frameMessage(welcome), ...frameMessage(ack)]);
  const wire = new Uint8Array([
    ...frame(FrameType.DATA, 0, 1, body.subarray(0, 3)),
    ...frame(FrameType.DATA, Flag.PADDED, 1, new Uint8Array([2, ...body.subarray(3), 0, 0])),
  ]);
  for (let i = 0; i < wire.length; i += 4) {
    const buffer = wire.slice(i, i + 4);
    call.receive(buffer);
    buffer.fill(0xee); // the owner reuses its read buffer
  }
  assert.deepEqual(messages.map((m) => [...m]), [[...welcome], [...ack]]);
  assert.deepEqual(sent(), [], "no WINDOW_UPDATE for a few bytes");
  // Half the window received: both windows are given back.
  const chunk = frame(FrameType.DATA, 0, 1, new Uint8Array(16_384));
  const frames = Math.ceil(RECEIVE_WINDOW / 2 / 16_384);
  for (let i = 0; i < frames; i++) {
    call.receive(chunk.slice(0, 9));
    call.receive(chunk.slice(9));
  }
  const updates = sent();
  assert.deepEqual(updates.map((f) => [f.type, f.streamId]), [[8, 0], [8, 1]]);
  assert.ok(uint31(updates[0].payload) >= RECEIVE_WINDOW / 2);
  assert.deepEqual(ends, [], `${JSON.stringify(ends)}`);
});

Deno.test("call end: trailers (also across CONTINUATION), RST_STREAM, GOAWAY, a lost connection, protocol errors", () => {
  const endOf = (wire: Uint8Array[], then?: (call: H2Call) => void) => {
    const { call, ends, sent } = harness();
    call.start(0);
    for (const w of wire) call.receive(w);
    then?.(call);
    sent();
    assert.equal(call.send(new Uint8Array(1)), ends.length === 0);
    return ends;
  };
  const headers = frame(FrameType.HEADERS, Flag.END_HEADERS, 1, new Uint8Array([0x88]));
  assert.deepEqual(endOf([headers]), [], "response headers do not end the call");
  assert.deepEqual(
    endOf([
      headers,
      frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, new Uint8Array(4)),
    ]),
    [{ retryable: false, reason: "the server ended the stream (trailers)" }],
  );
  const open = frame(FrameType.HEADERS, Flag.END_STREAM, 1, new Uint8Array(4));
  assert.deepEqual(endOf([open]), [], "not before END_HEADERS");
  assert.equal(
    endOf([open, frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, new Uint8Array(2))]).length,
    1,
  );
  assert.match(
    endOf([open, frame(FrameType.DATA, 0, 1, new Uint8Array(2))])[0].reason,
    /protocol error from the server: received frame type 0 inside a header block/,
  );
  assert.deepEqual(
    endOf([frame(FrameType.RST_STREAM, 0, 1, new Uint8Array(u32(ErrorCode.REFUSED_STREAM)))]),
    [{ retryable: true, reason: "the server refused the stream (RST_STREAM REFUSED_STREAM)" }],
  );
  assert.deepEqual(
    endOf([frame(FrameType.RST_STREAM, 0, 1, new Uint8Array(u32(ErrorCode.CANCEL)))]),
    [{ retryable: false, reason: "the server reset the stream (RST_STREAM code 8)" }],
  );
  assert.deepEqual(
    endOf([frame(FrameType.GOAWAY, 0, 0, new Uint8Array([...u32(0), ...u32(0)]))]),
    [{
      retryable: true,
      reason: "the server sent GOAWAY (code 0) before processing the stream (after a GOAWAY)",
    }],
  );
  const goaway = frame(FrameType.GOAWAY, 0, 0, new Uint8Array([...u32(1), ...u32(0)]));
  assert.deepEqual(endOf([goaway]), [], "a processed stream goes on after GOAWAY");
  assert.deepEqual(endOf([goaway, headers, open, frame(9, 4, 1)]), [{
    retryable: false,
    reason: "the server ended the stream (trailers) (after a GOAWAY)",
  }]);
  assert.deepEqual(
    endOf([frame(FrameType.DATA, Flag.END_STREAM, 1)]),
    [{ retryable: false, reason: "the server ended the stream without trailers" }],
  );
  assert.deepEqual(endOf([], (c) => c.connectionLost("gone")), [{
    retryable: true,
    reason: "gone",
  }]);
  assert.match(
    endOf([frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, new Uint8Array(4))])[0].reason,
    /PUSH_PROMISE although push is disabled/,
  );
  assert.match(
    endOf([frame(FrameType.DATA, 0, 1, new Uint8Array([1, 0, 0, 0, 1, 0]))])[0].reason,
    /gRPC: INTERNAL: received a compressed message/,
  );
  assert.match(
    endOf([frame(FrameType.WINDOW_UPDATE, 0, 0, new Uint8Array(u32(0)))])[0].reason,
    /WINDOW_UPDATE of 0/,
  );
});

Deno.test("call timers: connect timeout without the server's SETTINGS; keep-alive PING, its answer, and no answer", () => {
  const first = harness();
  first.call.start(1000);
  first.call.tick(1000 + 30_000, 30_000);
  assert.deepEqual(first.ends, []);
  first.call.tick(1000 + 30_001, 30_000);
  assert.deepEqual(first.ends, [{
    retryable: true,
    reason: "no HTTP/2 SETTINGS from the server within 30000 ms",
  }]);

  const { call, sent, ends } = harness();
  call.start(0);
  call.receive(settingsFrame([]));
  sent();
  call.tick(KEEPALIVE_MS - 1, 30_000);
  assert.deepEqual(sent(), []);
  call.tick(KEEPALIVE_MS, 30_000);
  const [ping] = sent();
  assert.equal(ping.type, FrameType.PING);
  assert.equal(ping.flags, 0);
  call.receive(frame(FrameType.PING, Flag.ACK, 0, ping.payload));
  call.tick(2 * KEEPALIVE_MS, 30_000);
  assert.equal(sent()[0].type, FrameType.PING);
  call.tick(2 * KEEPALIVE_MS + KEEPALIVE_TIMEOUT_MS + 1, 30_000);
  assert.deepEqual(ends, [{
    retryable: true,
    reason: `keepalive: no PING answer within ${KEEPALIVE_TIMEOUT_MS} ms`,
  }]);
});
