import assert from "node:assert/strict";
import { ErrorCode, Flag, FrameType, H2Connection, type H2Stream, RECEIVE_WINDOW } from "./h2.ts";
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function frame(type: number, flags: number, streamId: number, payload: Uint8Array | number[]) {
  const body = payload instanceof Uint8Array ? payload : Uint8Array.from(payload);
  const out = new Uint8Array(9 + body.length);
  out[0] = body.length >>> 16;
  out[1] = (body.length >>> 8) & 0xff;
  out[2] = body.length & 0xff;
  out[3] = type;
  out[4] = flags;
  new DataView(out.buffer).setUint32(5, streamId);
  out.set(body, 9);
  return out;
}

const u32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};

interface Parsed {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

function parse(bytes: Uint8Array): Parsed[] {
  const out: Parsed[] = [];
  let at = 0;
  while (at < bytes.length) {
    const length = (bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2];
    out.push({
      type: bytes[at + 3],
      flags: bytes[at + 4],
      streamId: new DataView(bytes.buffer, bytes.byteOffset + at + 5, 4).getUint32(0),
      payload: bytes.slice(at + 9, at + 9 + length),
    });
    at += 9 + length;
  }
  return out;
}

const REQUEST: HeaderField[] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/monitoring.v1.Monitoring/Connect"],
  [":authority", "broker"],
  ["content-type", "application/grpc"],
];

/** A connection fed by hand; `written()` returns the frames it wrote since the last call. */
function harness(maxConcurrentStreams = 16) {
  const chunks: Uint8Array[] = [];
  const streams: Array<
    { stream: H2Stream; headers: HeaderField[]; data: number[]; ended: boolean; aborted?: string }
  > = [];
  const errors: string[] = [];
  let transportClosed = false;
  const conn = new H2Connection({
    write: (bytes) => chunks.push(bytes),
    close: () => transportClosed = true,
  }, {
    onStream(stream, headers) {
      const entry = {
        stream,
        headers,
        data: [] as number[],
        ended: false,
        aborted: undefined as string | undefined,
      };
      streams.push(entry);
      stream.events = {
        onData: (bytes) => entry.data.push(...bytes),
        onEnd: () => entry.ended = true,
        onAbort: (reason) => entry.aborted = reason,
      };
    },
    onError: (reason) => errors.push(reason),
  }, { maxConcurrentStreams });
  conn.start();
  const flush = () => new Promise<void>((resolve) => queueMicrotask(resolve));
  const written = async () => {
    await flush();
    const frames = chunks.flatMap(parse);
    chunks.length = 0;
    return frames;
  };
  const send = (...frames: Uint8Array[]) => {
    for (const f of frames) conn.receive(f, performance.now());
  };
  send(PREFACE, frame(FrameType.SETTINGS, 0, 0, []));
  return { conn, streams, errors, written, send, closed: () => transportClosed };
}

Deno.test("h2: SETTINGS (streams, 1 MiB window) and a connection window update go out first; SETTINGS and PING are acknowledged", async () => {
  const h = await harness(7);
  const frames = await h.written();
  assert.equal(frames[0].type, FrameType.SETTINGS);
  const view = new DataView(frames[0].payload.buffer);
  const settings = new Map<number, number>();
  for (let at = 0; at < frames[0].payload.length; at += 6) {
    settings.set(view.getUint16(at), view.getUint32(at + 2));
  }
  assert.equal(settings.get(0x3), 7);
  assert.equal(settings.get(0x4), RECEIVE_WINDOW);
  assert.equal(frames[1].type, FrameType.WINDOW_UPDATE);
  assert.equal(new DataView(frames[1].payload.buffer).getUint32(0), RECEIVE_WINDOW - 65_535);
  assert.ok(frames.some((f) => f.type === FrameType.SETTINGS && f.flags === Flag.ACK));
  h.send(frame(FrameType.PING, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]));
  const [pong] = await h.written();
  assert.equal(pong.type, FrameType.PING);
  assert.equal(pong.flags, Flag.ACK);
  assert.deepEqual([...pong.payload], [1, 2, 3, 4, 5, 6, 7, 8]);
});

Deno.test("h2: headers split over CONTINUATION with padding and priority, body data, trailers-only and regular ends", async () => {
  const h = await harness();
  await h.written();
  const block = encodeHeaders(REQUEST);
  const padded = new Uint8Array([3, 0, 0, 0, 0, 16, ...block.subarray(0, 10), 0, 0, 0]);
  h.send(
    frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, 1, padded),
    frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(10)),
    frame(FrameType.DATA, Flag.PADDED, 1, [2, 9, 8, 0, 0]),
  );
  assert.equal(h.streams.length, 1);
  assert.deepEqual(h.streams[0].headers, REQUEST);
  assert.deepEqual(h.streams[0].data, [9, 8]);
  // The server answers and ends while the peer has not: trailers, and no RST_STREAM after them.
  h.streams[0].stream.respond([[":status", "200"]]);
  h.streams[0].stream.write(new Uint8Array([1, 2, 3]));
  h.streams[0].stream.end([["grpc-status", "0"]]);
  const frames = await h.written();
  assert.deepEqual(frames.map((f) => [f.type, f.flags, f.streamId]), [
    [FrameType.HEADERS, Flag.END_HEADERS, 1],
    [FrameType.DATA, 0, 1],
    [FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1],
  ]);
  assert.deepEqual(new HpackDecoder().decode(frames[2].payload), [["grpc-status", "0"]]);
  // DATA for the ended stream is dropped without an error; a new stream works.
  h.send(frame(FrameType.DATA, 0, 1, [1]));
  h.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, encodeHeaders(REQUEST)));
  assert.equal(h.streams.length, 2);
  h.streams[1].stream.end([[":status", "200"], ["grpc-status", "12"]]);
  const second = await h.written();
  assert.deepEqual(second.map((f) => [f.type, f.flags]), [[
    FrameType.HEADERS,
    Flag.END_HEADERS | Flag.END_STREAM,
  ]]);
  assert.deepEqual(h.errors, []);
});

Deno.test("h2: streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused REFUSED_STREAM; a peer reset aborts its stream", async () => {
  const h = await harness(2);
  await h.written();
  for (const id of [1, 3, 5]) {
    h.send(frame(FrameType.HEADERS, Flag.END_HEADERS, id, encodeHeaders(REQUEST)));
  }
  assert.equal(h.streams.length, 2);
  const [refused] = await h.written();
  assert.deepEqual([refused.type, refused.streamId], [FrameType.RST_STREAM, 5]);
  assert.equal(new DataView(refused.payload.buffer).getUint32(0), ErrorCode.REFUSED_STREAM);
  h.send(frame(FrameType.RST_STREAM, 0, 1, u32(ErrorCode.CANCEL)));
  assert.match(h.streams[0].aborted ?? "", /RST_STREAM code 8/);
  assert.equal(h.conn.streamCount, 1);
  h.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 7, encodeHeaders(REQUEST)));
  assert.equal(h.streams.length, 3);
});

Deno.test("h2: sending waits for the peer's stream window and resumes on WINDOW_UPDATE; trailers keep their place", async () => {
  const h = await harness();
  // The peer announces a 10-byte stream window.
  h.send(frame(FrameType.SETTINGS, 0, 0, [0, 4, 0, 0, 0, 10]));
  h.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, encodeHeaders(REQUEST)));
  await h.written();
  const stream = h.streams[0].stream;
  stream.respond([[":status", "200"]]);
  stream.write(new Uint8Array(25).fill(7));
  stream.end([["grpc-status", "0"]]);
  const first = await h.written();
  const dataBytes = (frames: Parsed[]) =>
    frames.filter((f) => f.type === FrameType.DATA).reduce((n, f) => n + f.payload.length, 0);
  assert.equal(dataBytes(first), 10);
  assert.ok(!first.some((f) => f.type === FrameType.HEADERS && f.flags & Flag.END_STREAM));
  h.send(frame(FrameType.WINDOW_UPDATE, 0, 1, u32(10)));
  assert.equal(dataBytes(await h.written()), 10);
  h.send(frame(FrameType.WINDOW_UPDATE, 0, 1, u32(100)));
  const last = await h.written();
  assert.equal(dataBytes(last), 5);
  assert.ok(last.some((f) => f.type === FrameType.HEADERS && f.flags & Flag.END_STREAM));
});

Deno.test("h2: received data is acknowledged only after half the window was used", async () => {
  const h = await harness();
  h.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, encodeHeaders(REQUEST)));
  await h.written();
  const chunk = new Uint8Array(16_000);
  let updates: Parsed[] = [];
  let sent = 0;
  while (sent < RECEIVE_WINDOW / 2) {
    h.send(frame(FrameType.DATA, 0, 1, chunk));
    sent += chunk.length;
    updates = updates.concat((await h.written()).filter((f) => f.type === FrameType.WINDOW_UPDATE));
    if (sent < RECEIVE_WINDOW / 2) assert.equal(updates.length, 0, `no update after ${sent} bytes`);
  }
  assert.deepEqual(updates.map((f) => f.streamId).sort(), [0, 1]);
  assert.equal(h.streams[0].data.length, sent);
});

Deno.test("h2: a protocol error closes the transport without GOAWAY and aborts the open streams", async () => {
  const h = await harness();
  h.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, encodeHeaders(REQUEST)));
  await h.written();
  h.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 2, encodeHeaders(REQUEST))); // even id
  assert.match(h.errors[0], /PROTOCOL_ERROR/);
  assert.ok(h.closed());
  assert.match(h.streams[0].aborted ?? "", /PROTOCOL_ERROR/);
  assert.ok(!(await h.written()).some((f) => f.type === FrameType.GOAWAY));

  const http1 = await harness();
  await http1.written();
  const fresh = new H2Connection({ write() {}, close() {} }, {
    onStream() {},
    onError: (reason) => http1.errors.push(reason),
  });
  fresh.receive(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  assert.match(http1.errors[0], /found an HTTP\/1 request/);
});

Deno.test("h2: a GOAWAY from the peer keeps its open streams; new ones are refused", async () => {
  const h = await harness();
  h.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, encodeHeaders(REQUEST)));
  h.send(frame(FrameType.GOAWAY, 0, 0, [...u32(1), ...u32(0)]));
  await h.written();
  h.streams[0].stream.write(new Uint8Array([1]));
  assert.deepEqual((await h.written()).map((f) => f.type), [FrameType.DATA]);
  h.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 3, encodeHeaders(REQUEST)));
  assert.equal(h.streams.length, 1);
  assert.deepEqual(h.errors, []);
});

Deno.test("h2: keep-alive pings a silent connection and closes it when the ping stays unanswered", async () => {
  const h = await harness();
  await h.written();
  // Whole milliseconds, so that sums of the clock stay exact.
  const t0 = Math.ceil(h.conn.lastReceivedAt) + 1;
  h.conn.keepalive(t0 + 29_000, 30_000, 5_000);
  assert.deepEqual(await h.written(), []);
  h.conn.keepalive(t0 + 30_000, 30_000, 5_000);
  const [ping] = await h.written();
  assert.deepEqual([ping.type, ping.flags], [FrameType.PING, 0]);
  // Answered: the next ping comes after another silent period.
  h.conn.receive(frame(FrameType.PING, Flag.ACK, 0, ping.payload), t0 + 30_010);
  h.conn.keepalive(t0 + 40_000, 30_000, 5_000);
  assert.deepEqual(await h.written(), []);
  h.conn.keepalive(t0 + 60_010, 30_000, 5_000);
  assert.equal((await h.written())[0].type, FrameType.PING);
  h.conn.keepalive(t0 + 65_010, 30_000, 5_000);
  assert.match(h.errors[0], /did not answer a ping within 5000 ms/);
  assert.ok(h.closed());
});
