/**
 * The agent's client (client.ts on h2_client.ts, over Deno.connect) against
 * the broker's real server (server.ts) and a bare node:http2 server, through a TCP proxy that records the bytes the broker
 * receives so that the HTTP/2 frames the client sends can be checked
 * (client.ts: it never sends GOAWAY).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createServer, type ServerHttp2Stream } from "node:http2";
import {
  type BrokerMessage,
  openAgentStream,
  RpcError,
  RpcStatus,
  type ServerStream,
  startRpcServer,
} from "./mod.ts";
import { CONNECT_PATH } from "./codec.ts";

/** Resolves with the value `fn` waits for, or rejects after `ms`. */
function within<T>(ms: number, what: string, fn: (done: (v: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    fn((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

const HTTP2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** One HTTP/2 frame header. */
interface FrameHeader {
  type: number;
  flags: number;
  streamId: number;
  length: number;
}

const GOAWAY = 0x7;
const DATA = 0x0;
const END_STREAM = 0x1;

/** The frame headers of what a client sent: the connection preface, then frames. */
function clientFrames(bytes: Uint8Array): FrameHeader[] {
  const preface = new TextDecoder().decode(bytes.subarray(0, HTTP2_PREFACE.length));
  assert.equal(preface, HTTP2_PREFACE, "the client starts with the HTTP/2 preface");
  const frames: FrameHeader[] = [];
  let at = HTTP2_PREFACE.length;
  while (at + 9 <= bytes.length) {
    const length = (bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2];
    const streamId = new DataView(bytes.buffer, bytes.byteOffset + at + 5, 4).getUint32(0) &
      0x7fffffff;
    frames.push({ type: bytes[at + 3], flags: bytes[at + 4], streamId, length });
    at += 9 + length;
  }
  assert.equal(at, bytes.length, "the bytes end on a frame boundary");
  return frames;
}

/**
 * A TCP proxy to `target` for one connection at a time, recording the bytes
 * from the client. `stall()` stops forwarding in both directions (a peer that
 * went silent without closing).
 */
class RecordingProxy {
  readonly #listener: Deno.Listener;
  readonly #target: string;
  readonly #conns: Deno.Conn[] = [];
  readonly #pumps: Promise<void>[] = [];
  #stalled = false;
  /** Bytes received from the client, per connection. */
  readonly received: Uint8Array[][] = [];
  /** Resolves per connection once the client side ended. */
  readonly clientEnded: Promise<void>[] = [];
  #accepting: Promise<void>;

  constructor(target: string) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  get address(): string {
    return `127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
  }

  stall() {
    this.#stalled = true;
  }

  /** The client's bytes of connection `i`, joined. */
  bytes(i = 0): Uint8Array {
    const chunks = this.received[i] ?? [];
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  async #accept() {
    for await (const client of this.#listener) {
      const [host, port] = [
        this.#target.slice(0, this.#target.lastIndexOf(":")),
        this.#target.slice(this.#target.lastIndexOf(":") + 1),
      ];
      const server = await Deno.connect({ hostname: host, port: Number(port) });
      this.#conns.push(client, server);
      const chunks: Uint8Array[] = [];
      this.received.push(chunks);
      const up = this.#pump(client, server, chunks);
      this.clientEnded.push(up);
      this.#pumps.push(up, this.#pump(server, client));
    }
  }

  /** Copies `from` to `to` until `from` ends; then closes `to`'s write side. */
  async #pump(from: Deno.Conn, to: Deno.Conn, record?: Uint8Array[]) {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        if (this.#stalled) continue;
        const chunk = buf.slice(0, n);
        record?.push(chunk);
        let written = 0;
        while (written < n) written += await to.write(chunk.subarray(written));
      }
    } catch { /* the other side reset */ }
    try {
      await to.closeWrite();
    } catch { /* already closed */ }
  }

  async close() {
    this.#listener.close();
    await this.#accepting.catch(() => {});
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    await Promise.all(this.#pumps);
  }
}

/** A server answering Hello with Welcome; `onStream` sees each stream after that. */
function welcomingServer(onStream: (stream: ServerStream) => void = () => {}) {
  return startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      stream.onMessage((m) => {
        if (m.hello) stream.send({ welcome: { broker_version: "t", max_batch_samples: 1 } });
      });
      onStream(stream);
    },
  });
}

const HELLO = { hello: { agent_id: "a1", hostname: "h", version: "1", token: "" } };

Deno.test("client: an error before any message (trailers-only response) reaches onClose with its status and decoded details", async () => {
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      stream.fail(RpcStatus.UNAUTHENTICATED, "token 100% wrong: naïve agent\nsecond line");
    },
  });
  const client = openAgentStream({ address: server.address });
  try {
    const error = await within<RpcError | undefined>(5000, "close", (done) => client.onClose(done));
    assert.ok(error instanceof RpcError);
    assert.equal(error.code, RpcStatus.UNAUTHENTICATED);
    assert.equal(error.details, "token 100% wrong: naïve agent\nsecond line");
    assert.equal(client.closed, true);
    assert.equal(client.send(HELLO), false);
    await client.released();
  } finally {
    client.close();
    await server.close(1000);
  }
});

Deno.test("client: messages come in order before the status in the trailers; a clean end is no error", async () => {
  let n = 0;
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      const which = n++;
      stream.onMessage(() => {
        for (let seq = 1; seq <= 3; seq++) stream.send({ ack: { seq } });
        if (which === 0) stream.fail(RpcStatus.ALREADY_EXISTS, "agent a1 is already connected");
        else stream.end();
      });
    },
  });
  try {
    for (const expected of [RpcStatus.ALREADY_EXISTS, undefined]) {
      const client = openAgentStream({ address: server.address });
      const got: BrokerMessage[] = [];
      client.onMessage((m) => got.push(m));
      const closed = within<RpcError | undefined>(5000, "close", (done) => client.onClose(done));
      await client.ready();
      client.send(HELLO);
      const error = await closed;
      assert.deepEqual(got, [{ ack: { seq: 1 } }, { ack: { seq: 2 } }, { ack: { seq: 3 } }]);
      assert.equal(error?.code, expected);
      if (error) assert.equal(error.details, "agent a1 is already connected");
      await client.released();
    }
  } finally {
    await server.close(1000);
  }
});

Deno.test("client: a message over maxMessageBytes is refused both ways with RESOURCE_EXHAUSTED; the broker never gets a sent one", async () => {
  const received: string[] = [];
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      stream.onMessage((m) => {
        received.push(Object.keys(m)[0]);
        if (m.hello?.agent_id === "wants-big") {
          stream.send({ welcome: { broker_version: "x".repeat(500), max_batch_samples: 1 } });
        }
      });
    },
  });
  try {
    const reading = openAgentStream({ address: server.address, maxMessageBytes: 100 });
    const readError = within<RpcError | undefined>(5000, "close", (d) => reading.onClose(d));
    reading.send({ hello: { ...HELLO.hello, agent_id: "wants-big" } });
    const error = await readError;
    assert.equal(error?.code, RpcStatus.RESOURCE_EXHAUSTED);
    assert.match(error?.details ?? "", /^Received message larger than max \(50\d vs\. 100\)$/);
    await reading.released();

    const sending = openAgentStream({ address: server.address, maxMessageBytes: 100 });
    await sending.ready();
    const sendError = within<RpcError | undefined>(5000, "close", (d) => sending.onClose(d));
    const metrics: Record<string, number> = {};
    for (let i = 0; i < 20; i++) metrics[`metric-${i}`] = i;
    assert.equal(
      sending.send({ batch: { seq: 1, samples: [{ timestamp: 1, metrics }], alerts: [] } }),
      false,
    );
    const refused = await sendError;
    assert.equal(refused?.code, RpcStatus.RESOURCE_EXHAUSTED);
    assert.match(refused?.details ?? "", /^Sent message larger than max \(\d+ vs\. 100\)$/);
    await sending.released();
    assert.deepEqual(received, ["hello"]);
  } finally {
    await server.close(1000);
  }
});

Deno.test("client: keep-alive pings notice a broker that went silent (UNAVAILABLE within the period plus 5 s)", async () => {
  const server = await welcomingServer();
  const proxy = new RecordingProxy(server.address);
  const client = openAgentStream({ address: proxy.address, keepaliveMs: 200 });
  try {
    const welcome = within<void>(5000, "welcome", (d) => client.onMessage((m) => m.welcome && d()));
    client.send(HELLO);
    await welcome;
    // Pings are answered while the link works.
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.equal(client.closed, false);
    const started = Date.now();
    proxy.stall();
    const error = await within<RpcError | undefined>(8000, "close", (d) => client.onClose(d));
    const took = Date.now() - started;
    assert.equal(error?.code, RpcStatus.UNAVAILABLE);
    assert.match(error?.details ?? "", /keepalive: .* did not answer a ping within 5000 ms/);
    assert.ok(took >= 5000 && took < 7000, `noticed after ${took} ms`);
    await client.released();
  } finally {
    client.close();
    await proxy.close();
    await server.close(500);
  }
});

/** The frames a client sent on connection `i` once its side of the proxy ended. */
async function framesSent(proxy: RecordingProxy, i: number): Promise<FrameHeader[]> {
  await within<void>(5000, "the client's end of the connection", (d) => {
    proxy.clientEnded[i].then(d);
  });
  return clientFrames(proxy.bytes(i));
}

Deno.test("client: sends no GOAWAY on close(), when the broker ends the stream, or after refusing a message (a grpc-js client does)", async () => {
  const streams: ServerStream[] = [];
  const server = await welcomingServer((stream) => streams.push(stream));
  const proxy = new RecordingProxy(server.address);
  try {
    const welcomed = async (maxMessageBytes?: number) => {
      const client = openAgentStream({ address: proxy.address, maxMessageBytes });
      const welcome = within<void>(
        5000,
        "welcome",
        (d) => client.onMessage((m) => m.welcome && d()),
      );
      client.send(HELLO);
      await welcome;
      return client;
    };
    // 0: the agent closes.
    const first = await welcomed();
    first.close();
    await first.released();
    const closing = await framesSent(proxy, 0);
    assert.deepEqual(closing.filter((f) => f.type === GOAWAY), []);
    assert.ok(
      closing.some((f) => f.type === DATA && f.streamId === 1 && (f.flags & END_STREAM) !== 0),
      "the request stream ends with END_STREAM",
    );
    // 1: the broker ends the stream.
    const second = await welcomed();
    const ended = within<RpcError | undefined>(5000, "close", (d) => second.onClose(d));
    streams[1].end();
    assert.equal(await ended, undefined);
    await second.released();
    assert.deepEqual((await framesSent(proxy, 1)).filter((f) => f.type === GOAWAY), []);
    // 2: the agent refuses to send an oversized message.
    const third = await welcomed(64);
    third.send({ hello: { ...HELLO.hello, hostname: "h".repeat(100) } });
    await third.released();
    assert.deepEqual((await framesSent(proxy, 2)).filter((f) => f.type === GOAWAY), []);
    // 3: the control: grpc-js's client closing its channel sends GOAWAY, and the reader sees it.
    const raw = new grpc.Client(proxy.address, grpc.credentials.createInsecure());
    const call = raw.makeBidiStreamRequest(CONNECT_PATH, (b: Buffer) => b, (b: Buffer) => b);
    call.on("error", () => {});
    const data = within<void>(5000, "grpc-js welcome", (d) => call.on("data", () => d()));
    call.write(Buffer.from([0x0a, 0x04, 0x0a, 0x02, 0x67, 0x31])); // hello { agent_id: "g1" }
    await data.catch(() => {});
    call.cancel();
    raw.close();
    assert.ok(
      (await framesSent(proxy, 3)).some((f) => f.type === GOAWAY),
      "grpc-js's client sends GOAWAY on close",
    );
  } finally {
    await proxy.close();
    await server.close(1000);
  }
});

Deno.test("client: the agent's module graph holds no gRPC library (etcd3's own, loaded only with the etcd store, aside) and no node:http2", async () => {
  const main = new URL("../agent/main.ts", import.meta.url);
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", main.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const graph = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    modules: Array<{
      specifier: string;
      dependencies?: Array<{ code?: { specifier: string }; isDynamic?: boolean }>;
    }>;
  };
  const modules = new Map(graph.modules.map((m) => [m.specifier, m]));
  const etcdStore = new URL("../store/etcd.ts", import.meta.url).href;
  const reached = new Set<string>();
  const walk = (specifier: string) => {
    if (reached.has(specifier) || specifier === etcdStore) return;
    reached.add(specifier);
    for (const dep of modules.get(specifier)?.dependencies ?? []) {
      if (dep.code) walk(dep.code.specifier);
    }
  };
  walk(main.href);
  assert.ok(
    reached.has(new URL("./client.ts", import.meta.url).href),
    "the walk reaches client.ts",
  );
  assert.ok(
    reached.has(new URL("./h2_client.ts", import.meta.url).href),
    "the walk reaches h2_client.ts",
  );
  assert.deepEqual(
    [...reached].filter((s) => /@grpc\/|rpc\/server\.ts|^node:http2$/.test(s)),
    [],
  );
});

Deno.test("client: against a bare HTTP/2 server: an HTTP status maps to its gRPC status, a compressed message is refused INTERNAL, an end without grpc-status is UNKNOWN", async () => {
  const seen: Array<Record<string, unknown>> = [];
  const server = createServer();
  server.on("stream", (stream: ServerHttp2Stream, headers: Record<string, unknown>) => {
    seen.push(headers);
    stream.on("error", () => {});
    const which = String(headers.authorization ?? "");
    if (which === "Bearer http503") {
      stream.respond({ ":status": 503 }, { endStream: true });
    } else if (which === "Bearer compressed") {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.write(new Uint8Array([1, 0, 0, 0, 2, 0x12, 0]));
    } else {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.end(new Uint8Array([0, 0, 0, 0, 2, 0x12, 0])); // ack {}, then no trailers
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    const outcome = async (token: string) => {
      const client = openAgentStream({ address, token });
      const got: BrokerMessage[] = [];
      client.onMessage((m) => got.push(m));
      const error = await within<RpcError | undefined>(5000, token, (d) => client.onClose(d));
      await client.released();
      return { error, got };
    };
    const unavailable = await outcome("http503");
    assert.equal(unavailable.error?.code, RpcStatus.UNAVAILABLE);
    assert.match(unavailable.error?.details ?? "", /HTTP status 503/);
    const compressed = await outcome("compressed");
    assert.equal(compressed.error?.code, RpcStatus.INTERNAL);
    assert.match(compressed.error?.details ?? "", /compressed message/);
    assert.deepEqual(compressed.got, []);
    const noStatus = await outcome("no-status");
    assert.deepEqual(noStatus.got, [{ ack: { seq: 0 } }]);
    assert.equal(noStatus.error?.code, RpcStatus.UNKNOWN);
    assert.match(noStatus.error?.details ?? "", /without a grpc-status/);
    // What the client asks for.
    assert.equal(seen[0][":method"], "POST");
    assert.equal(seen[0][":path"], CONNECT_PATH);
    assert.equal(seen[0]["content-type"], "application/grpc");
    assert.equal(seen[0]["te"], "trailers");
    assert.equal(seen[0]["grpc-accept-encoding"], "identity");
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
