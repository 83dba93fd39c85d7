/**
 * The client side of the HTTP/2 layer without sockets: what it writes
 * (preface, SETTINGS, the request, DATA within the peer's windows, END_STREAM,
 * never GOAWAY) and what it makes of the server's frames (CONTINUATION,
 * trailers, RST_STREAM, protocol errors). The same code against real servers
 * (the broker's and node:http2's) is in client_test.ts.
 */
import assert from "node:assert/strict";
import { H2ClientConnection } from "./h2_client.ts";
import { Flag, frame, FrameType, PREFACE, u32 } from "./h2.ts";
import { encodeHeaders, type HeaderField } from "./hpack.ts";

interface Seen {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

/** Splits what the client wrote into frames (after the preface). */
function framesOf(chunks: Uint8Array[]): Seen[] {
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  assert.deepEqual(all.subarray(0, PREFACE.length), PREFACE);
  const out: Seen[] = [];
  for (at = PREFACE.length; at + 9 <= all.length;) {
    const length = (all[at] << 16) | (all[at + 1] << 8) | all[at + 2];
    out.push({
      type: all[at + 3],
      flags: all[at + 4],
      streamId: new DataView(all.buffer, at + 5, 4).getUint32(0),
      payload: all.slice(at + 9, at + 9 + length),
    });
    at += 9 + length;
  }
  assert.equal(at, all.length);
  return out;
}

function setup() {
  const written: Uint8Array[] = [];
  const events: string[] = [];
  const headers: Array<{ fields: HeaderField[]; endStream: boolean; trailers: boolean }> = [];
  const data: number[] = [];
  const conn = new H2ClientConnection((b) => written.push(b), {
    onSettings: () => events.push("settings"),
    onHeaders: (fields, endStream, trailers) => headers.push({ fields, endStream, trailers }),
    onData: (bytes) => data.push(bytes.length),
    onEnd: () => events.push("end"),
    onReset: (code) => events.push(`reset ${code}`),
    onPingAck: () => events.push("pong"),
    onGoaway: () => events.push("goaway"),
    onError: (reason) => events.push(`error ${reason}`),
  });
  conn.start([[":method", "POST"], [":path", "/a.B/C"]]);
  return { conn, written, events, headers, data };
}

const SETTINGS = frame(FrameType.SETTINGS, 0, 0, new Uint8Array(0));

Deno.test("h2 client: preface, SETTINGS and HEADERS first; DATA waits for the server's window; end() is an empty DATA with END_STREAM; never GOAWAY", () => {
  const { conn, written, events } = setup();
  conn.receive(SETTINGS);
  assert.deepEqual(events, ["settings"]);
  conn.send(new Uint8Array(70_000)); // more than the default window of 65,535
  conn.end();
  conn.flush();
  let frames = framesOf(written);
  assert.deepEqual(frames.slice(0, 3).map((f) => f.type), [
    FrameType.SETTINGS,
    FrameType.WINDOW_UPDATE,
    FrameType.HEADERS,
  ]);
  const sent = () =>
    frames.filter((f) => f.type === FrameType.DATA).reduce((n, f) => n + f.payload.length, 0);
  assert.equal(sent(), 65_535);
  assert.ok(frames.every((f) => !(f.type === FrameType.DATA && f.flags & Flag.END_STREAM)));
  // The window grows: the rest and then END_STREAM go out.
  conn.receive(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(10_000)));
  conn.receive(frame(FrameType.WINDOW_UPDATE, 0, 1, u32(10_000)));
  conn.flush();
  frames = framesOf(written);
  assert.equal(sent(), 70_000);
  const last = frames.at(-1)!;
  assert.equal(last.type, FrameType.DATA);
  assert.equal(last.flags & Flag.END_STREAM, Flag.END_STREAM);
  assert.equal(last.payload.length, 0);
  assert.equal(conn.localEnded, true);
  assert.ok(frames.every((f) => f.type !== FrameType.GOAWAY));
});

Deno.test("h2 client: response headers split into CONTINUATION, body, trailers; pings answered", () => {
  const { conn, written, events, headers, data } = setup();
  conn.receive(SETTINGS);
  const block = encodeHeaders([[":status", "200"], ["content-type", "application/grpc"]]);
  conn.receive(frame(FrameType.HEADERS, 0, 1, block.subarray(0, 5)));
  conn.receive(frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(5)));
  conn.receive(frame(FrameType.DATA, 0, 1, new Uint8Array(7)));
  conn.receive(frame(FrameType.PING, 0, 0, new Uint8Array(8).fill(3)));
  conn.receive(
    frame(
      FrameType.HEADERS,
      Flag.END_HEADERS | Flag.END_STREAM,
      1,
      encodeHeaders([["grpc-status", "0"]]),
    ),
  );
  assert.deepEqual(headers, [
    {
      fields: [[":status", "200"], ["content-type", "application/grpc"]],
      endStream: false,
      trailers: false,
    },
    { fields: [["grpc-status", "0"]], endStream: true, trailers: true },
  ]);
  assert.deepEqual(data, [7]);
  assert.equal(conn.remoteEnded, true);
  conn.flush();
  const pong = framesOf(written).find((f) => f.type === FrameType.PING);
  assert.equal(pong?.flags, Flag.ACK);
  assert.deepEqual(pong?.payload, new Uint8Array(8).fill(3));
  conn.ping();
  conn.flush();
  conn.receive(frame(FrameType.PING, Flag.ACK, 0, new Uint8Array(8)));
  assert.deepEqual(events, ["settings", "pong"]);
});

Deno.test("h2 client: RST_STREAM and GOAWAY reported; a protocol error is reported and nothing more written", () => {
  const reset = setup();
  reset.conn.receive(SETTINGS);
  reset.conn.receive(frame(FrameType.GOAWAY, 0, 0, new Uint8Array(8)));
  reset.conn.receive(frame(FrameType.RST_STREAM, 0, 1, u32(7)));
  assert.deepEqual(reset.events, ["settings", "goaway", "reset 7"]);

  const broken = setup();
  broken.conn.receive(frame(FrameType.DATA, 0, 1, new Uint8Array(1)));
  assert.equal(broken.events.length, 1);
  assert.match(broken.events[0], /^error PROTOCOL_ERROR: expected the server's SETTINGS first/);
  broken.conn.flush();
  assert.deepEqual(broken.written, [], "nothing queued is written after a connection error");

  const late = setup();
  late.conn.receive(SETTINGS);
  late.conn.receive(frame(FrameType.DATA, 0, 1, new Uint8Array(1)));
  assert.match(late.events.at(-1)!, /DATA before the response headers/);
});
