/**
 * The broker's gRPC server (server.ts, on h2.ts) with a stock @grpc/grpc-js
 * client and with the agent's node:http2 client (client.ts): round trips,
 * metadata, statuses in trailers, message limits both ways, unknown
 * methods, TLS, keep-alive, shutdown, and that the server never writes a
 * GOAWAY frame (read from the wire through a TCP proxy).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { connect as http2Connect } from "node:http2";
import {
  type AgentMessage,
  type BrokerMessage,
  openAgentStream,
  RpcError,
  RpcStatus,
  type ServerStream,
  startRpcServer,
} from "./mod.ts";
import { encodeGrpcMessage, type RpcServerOptions } from "./server.ts";
import { CONNECT_PATH, decodeBrokerMessage, encodeAgentMessage } from "./codec.ts";
import { makeTestPki } from "../../tests/harness/certs.ts";

function within<T>(ms: number, what: string, fn: (done: (v: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    fn((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

const HELLO: AgentMessage = { hello: { agent_id: "a1", hostname: "h1", version: "1", token: "" } };

/** A server that answers Hello with Welcome and each batch with its ack; `streams` as they open. */
async function ackingServer(extra: Partial<RpcServerOptions> = {}) {
  const streams: ServerStream[] = [];
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    ...extra,
    onStream(stream) {
      streams.push(stream);
      stream.onMessage((m) => {
        if (m.hello) stream.send({ welcome: { broker_version: "t", max_batch_samples: 10 } });
        if (m.batch) stream.send({ ack: { seq: m.batch.seq } });
      });
    },
  });
  return { server, streams };
}

/** A stock grpc-js client's Connect call. */
function grpcCall(address: string, metadata?: Record<string, string>, options: {
  credentials?: grpc.ChannelCredentials;
  channel?: grpc.ChannelOptions;
  path?: string;
} = {}) {
  const client = new grpc.Client(
    address,
    options.credentials ?? grpc.credentials.createInsecure(),
    options.channel,
  );
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata ?? {})) md.set(k, v);
  const call = client.makeBidiStreamRequest<AgentMessage, BrokerMessage>(
    options.path ?? CONNECT_PATH,
    (m) => Buffer.from(encodeAgentMessage(m)),
    (b: Buffer) => decodeBrokerMessage(b),
    md,
  );
  const received: BrokerMessage[] = [];
  call.on("data", (m: BrokerMessage) => received.push(m));
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  call.on("error", () => {});
  return { client, call, received, status };
}

/**
 * A TCP proxy recording what the server sends, per connection; `stall()`
 * stops forwarding both ways (a peer gone silent without closing).
 */
class TapProxy {
  readonly #listener: Deno.Listener;
  readonly #conns: Deno.Conn[] = [];
  readonly #pumps: Promise<void>[] = [];
  #stalled = false;
  readonly fromServer: Uint8Array[][] = [];
  readonly serverEnded: Promise<void>[] = [];
  #accepting: Promise<void>;

  constructor(target: string) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    const [host, port] = [
      target.slice(0, target.lastIndexOf(":")),
      Number(target.slice(target.lastIndexOf(":") + 1)),
    ];
    this.#accepting = (async () => {
      for await (const client of listener) {
        const server = await Deno.connect({ hostname: host, port });
        this.#conns.push(client, server);
        const record: Uint8Array[] = [];
        this.fromServer.push(record);
        const pump = async (from: Deno.Conn, to: Deno.Conn, tap?: Uint8Array[]) => {
          const buffer = new Uint8Array(65536);
          try {
            for (;;) {
              const n = await from.read(buffer);
              if (n === null) break;
              if (this.#stalled) continue;
              tap?.push(buffer.slice(0, n));
              await to.write(buffer.subarray(0, n));
            }
          } catch { /* closed */ }
          try {
            await to.closeWrite();
          } catch { /* closed */ }
        };
        this.#pumps.push(pump(client, server));
        const fromServer = pump(server, client, record);
        this.#pumps.push(fromServer);
        this.serverEnded.push(fromServer);
      }
    })().catch(() => {});
  }

  get address(): string {
    return `127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
  }

  stall() {
    this.#stalled = true;
  }

  /** Frame types the server sent on connection `i` (after its end). */
  async frameTypes(i: number): Promise<number[]> {
    await within<void>(5000, "the server's end of the connection", (d) => {
      this.serverEnded[i].then(d);
    });
    const bytes = new Uint8Array(this.fromServer[i].flatMap((c) => [...c]));
    const types: number[] = [];
    let at = 0;
    while (at + 9 <= bytes.length) {
      types.push(bytes[at + 3]);
      at += 9 + ((bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2]);
    }
    assert.equal(at, bytes.length, "the server's bytes end on a frame boundary");
    return types;
  }

  async close() {
    this.#listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await Promise.all(this.#pumps);
    await this.#accepting;
  }
}

const GOAWAY = 0x7;

Deno.test("server + grpc-js client: hello/batch/ack, token metadata (both keys), statuses with UTF-8 details in trailers", async () => {
  const { server, streams } = await ackingServer();
  try {
    const a = grpcCall(server.address, { authorization: "Bearer  s3cret " });
    a.call.write(HELLO);
    a.call.write({
      batch: { seq: 7, samples: [{ timestamp: 1, metrics: { cpu: 0.5 } }], alerts: [] },
    });
    await within<void>(5000, "ack", (d) => {
      const timer = setInterval(() => a.received.length === 2 && (clearInterval(timer), d()), 5);
    });
    assert.deepEqual(a.received, [
      { welcome: { broker_version: "t", max_batch_samples: 10 } },
      { ack: { seq: 7 } },
    ]);
    assert.equal(streams[0].token, "s3cret");
    assert.match(streams[0].peer, /^127\.0\.0\.1:\d+$/);
    assert.equal(streams[0].authenticatedPeer, false);
    streams[0].end();
    const ok = await a.status;
    assert.equal(ok.code, grpc.status.OK);
    a.client.close();

    const b = grpcCall(server.address, { "x-monitor-token": "alt" });
    b.call.write(HELLO);
    await within<void>(5000, "stream", (d) => {
      const timer = setInterval(() => streams.length === 2 && (clearInterval(timer), d()), 5);
    });
    assert.equal(streams[1].token, "alt");
    const details = "hello.agent_id: “a1” is taken – retry in 5 s (100% sure)";
    streams[1].fail(RpcStatus.ALREADY_EXISTS, details);
    const failed = await b.status;
    assert.equal(failed.code, grpc.status.ALREADY_EXISTS);
    assert.equal(failed.details, details);
    b.client.close();
    assert.equal(encodeGrpcMessage("a%b\n"), "a%25b%0A");
  } finally {
    await server.close(1000);
  }
});

Deno.test("server + grpc-js client: a trailers-only refusal (stream ceiling) carries RESOURCE_EXHAUSTED and the retry hint; unknown methods are UNIMPLEMENTED", async () => {
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      stream.fail(
        RpcStatus.RESOURCE_EXHAUSTED,
        "this broker carries its maximum of 1 agent streams (broker.max_streams); connect to another broker, or retry this one in 5 s",
      );
    },
  });
  try {
    const refused = grpcCall(server.address);
    const status = await refused.status;
    assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(status.details, /retry this one in 5 s/);
    refused.client.close();
    const agent = openAgentStream({ address: server.address });
    const error = await within<RpcError | undefined>(5000, "refusal", (d) => agent.onClose(d));
    assert.equal(error?.code, RpcStatus.RESOURCE_EXHAUSTED);
    assert.match(error?.details ?? "", /connect to another broker/);
    await agent.released();
    const other = grpcCall(server.address, undefined, { path: "/monitoring.v1.Monitoring/Other" });
    const unimplemented = await other.status;
    assert.equal(unimplemented.code, grpc.status.UNIMPLEMENTED);
    assert.match(
      unimplemented.details,
      /does not implement the method \/monitoring\.v1\.Monitoring\/Other/,
    );
    other.client.close();
  } finally {
    await server.close(1000);
  }
});

Deno.test("server + grpc-js client: messages over the limit both ways end the stream RESOURCE_EXHAUSTED", async () => {
  const streams: ServerStream[] = [];
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    maxMessageBytes: 64,
    onStream: (stream) => streams.push(stream),
  });
  try {
    const big = grpcCall(server.address, undefined, {
      channel: { "grpc.max_send_message_length": 1 << 20 },
    });
    big.call.write({ hello: { ...HELLO.hello!, hostname: "h".repeat(200) } });
    const status = await big.status;
    assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(status.details, /Received message larger than max \(\d+ vs\. 64\)/);
    big.client.close();

    const small = grpcCall(server.address);
    small.call.write(HELLO);
    await within<void>(5000, "stream", (d) => {
      const timer = setInterval(() => streams.length === 2 && (clearInterval(timer), d()), 5);
    });
    assert.equal(
      streams[1].send({
        command: { command_id: "c", command_type: "x".repeat(100), args_json: "", timestamp: 0 },
      }),
      false,
    );
    const sent = await small.status;
    assert.equal(sent.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(sent.details, /Sent message larger than max \(\d+ vs\. 64\)/);
    small.client.close();
  } finally {
    await server.close(1000);
  }
});

Deno.test("server: a grpc-js client cancelling its call and closing its channel (GOAWAY) ends the stream; the server serves on", async () => {
  const { server, streams } = await ackingServer();
  try {
    const a = grpcCall(server.address);
    a.call.write(HELLO);
    await within<void>(5000, "welcome", (d) => {
      const timer = setInterval(() => a.received.length === 1 && (clearInterval(timer), d()), 5);
    });
    const closed = within<Error | undefined>(
      5000,
      "server-side close",
      (d) => streams[0].onClose(d),
    );
    a.call.cancel();
    a.client.close();
    // Deno's node:http2 client cancels with an empty END_STREAM DATA frame, then RST_STREAM:
    // the stream ends cleanly (as a half-close) or CANCELLED, whichever the server reads first.
    const error = await closed;
    assert.ok(
      error === undefined || (error instanceof RpcError && error.code === RpcStatus.CANCELLED),
      String(error),
    );
    assert.ok(streams[0].closed);
    const agent = openAgentStream({ address: server.address });
    const welcome = within<void>(
      5000,
      "agent welcome",
      (d) => agent.onMessage((m) => m.welcome && d()),
    );
    agent.send(HELLO);
    await welcome;
    agent.close();
    await agent.released();
  } finally {
    await server.close(1000);
  }
});

Deno.test("server: never writes GOAWAY: not when a stream ends or fails, the agent closes, bytes are not HTTP/2, or the server shuts down with streams open", async () => {
  const { server, streams } = await ackingServer();
  const proxy = new TapProxy(server.address);
  try {
    const welcomed = async () => {
      const agent = openAgentStream({ address: proxy.address });
      const welcome = within<void>(
        5000,
        "welcome",
        (d) => agent.onMessage((m) => m.welcome && d()),
      );
      agent.send(HELLO);
      await welcome;
      return agent;
    };
    // 0: the broker ends the stream; 1: it fails it; 2: the agent closes.
    const first = await welcomed();
    streams[0].end();
    await first.released();
    const second = await welcomed();
    streams[1].fail(RpcStatus.INVALID_ARGUMENT, "no");
    await second.released();
    const third = await welcomed();
    third.close();
    await third.released();
    // 3: not HTTP/2 at all.
    const raw = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(proxy.address.split(":")[1]),
    });
    await raw.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const buffer = new Uint8Array(1024);
    while ((await raw.read(buffer)) !== null) { /* until the server closes */ }
    raw.close();
    // 4: the server shuts down under an open stream: UNAVAILABLE, then the connection closes.
    const fourth = await welcomed();
    const shutdown = within<RpcError | undefined>(5000, "shutdown", (d) => fourth.onClose(d));
    await server.close(200);
    const error = await shutdown;
    assert.equal(error?.code, RpcStatus.UNAVAILABLE);
    assert.match(error?.details ?? "", /broker shutting down/);
    await fourth.released();
    for (let i = 0; i < 5; i++) {
      const types = await proxy.frameTypes(i);
      assert.ok(!types.includes(GOAWAY), `connection ${i}: frames ${types.join(",")}`);
    }
    assert.ok((await proxy.frameTypes(0)).includes(0x1), "the server sent HEADERS");
  } finally {
    await proxy.close();
    await server.close(100);
  }
});

Deno.test("server: keep-alive closes a connection whose peer stopped answering; a live idle agent stays", async () => {
  const { server, streams } = await ackingServer({ keepaliveMs: 300, keepaliveTimeoutMs: 300 });
  const proxy = new TapProxy(server.address);
  try {
    const welcomed = async (address: string) => {
      const agent = openAgentStream({ address, keepaliveMs: 60_000 });
      const welcome = within<void>(
        5000,
        "welcome",
        (d) => agent.onMessage((m) => m.welcome && d()),
      );
      agent.send(HELLO);
      await welcome;
      return agent;
    };
    // streams[0] is the live agent's, streams[1] the one behind the proxy.
    const live = await welcomed(server.address);
    const silent = await welcomed(proxy.address);
    proxy.stall();
    const started = performance.now();
    const dropped = await within<Error | undefined>(
      5000,
      "the stalled connection closed",
      (d) => streams[1].onClose(d),
    );
    assert.ok(dropped instanceof RpcError, String(dropped));
    assert.ok(performance.now() - started < 3000);
    assert.equal(streams[0].closed, false, "the agent that answers pings keeps its stream");
    live.close();
    silent.close();
    await Promise.all([live.released(), silent.released()]);
  } finally {
    await proxy.close();
    await server.close(500);
  }
});

Deno.test("server over TLS: a grpc-js client and the agent's client (ALPN h2); mTLS names the peer and refuses a connection without a certificate", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pki = await makeTestPki(dir);
    const read = (path: string) => Deno.readTextFileSync(path);
    const reports: string[] = [];
    const { server, streams } = await ackingServer({
      tls: {
        cert: read(pki.broker.cert),
        key: read(pki.broker.key),
        ca: read(pki.ca),
        requireClientCert: true,
      },
      onTlsError: (_peer, reason) => reports.push(reason),
    });
    try {
      const credentials = grpc.credentials.createSsl(
        Buffer.from(read(pki.ca)),
        Buffer.from(read(pki.agent.key)),
        Buffer.from(read(pki.agent.cert)),
      );
      // By name: Deno's node:tls refuses an IP address as the servername grpc-js sets.
      const g = grpcCall(`localhost:${server.port}`, undefined, { credentials });
      g.call.write(HELLO);
      await within<void>(10_000, "welcome over TLS", (d) => {
        const timer = setInterval(() => g.received.length === 1 && (clearInterval(timer), d()), 5);
      });
      assert.equal(streams[0].authenticatedPeer, true);
      assert.equal(streams[0].peerName, "agent-1");
      g.call.end();
      assert.equal((await g.status).code, grpc.status.OK);
      g.client.close();

      const agent = openAgentStream({
        address: server.address,
        tls: { ca: read(pki.ca), cert: read(pki.agent.cert), key: read(pki.agent.key) },
      });
      const welcome = within<void>(
        10_000,
        "agent welcome",
        (d) => agent.onMessage((m) => m.welcome && d()),
      );
      agent.send(HELLO);
      await welcome;
      agent.close();
      await agent.released();

      const anonymous = openAgentStream({ address: server.address, tls: { ca: read(pki.ca) } });
      anonymous.send(HELLO);
      const refused = await within<RpcError | undefined>(
        10_000,
        "refusal",
        (d) => anonymous.onClose(d),
      );
      assert.equal(refused?.code, RpcStatus.UNAUTHENTICATED);
      assert.match(
        refused?.details ?? "",
        /client certificate refused: no client certificate was presented/,
      );
      await anonymous.released();
      assert.ok(reports.some((r) => /no client certificate/.test(r)), reports.join("\n"));
    } finally {
      await server.close(1000);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: a request that is not gRPC gets an HTTP status (415 for another content type)", async () => {
  const { server } = await ackingServer();
  const session = http2Connect(`http://${server.address}`);
  try {
    const status = await within<number>(5000, "response", (d) => {
      const req = session.request({
        ":method": "POST",
        ":path": CONNECT_PATH,
        "content-type": "text/plain",
      });
      req.on("response", (headers) => d(Number(headers[":status"])));
      req.on("error", () => {});
      req.end();
    });
    assert.equal(status, 415);
  } finally {
    // Closing the client session sends GOAWAY to the broker's own server, which handles it.
    await new Promise<void>((resolve) => session.close(() => resolve()));
    await server.close(1000);
  }
});

Deno.test("server: the broker's module graph holds no gRPC library and no node:http2 (etcd3's own, loaded only with the etcd store, aside)", async () => {
  const main = new URL("../broker/main.ts", import.meta.url);
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", main.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const graph = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    modules: Array<{ specifier: string; dependencies?: Array<{ code?: { specifier: string } }> }>;
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
  assert.ok(reached.has(new URL("./h2.ts", import.meta.url).href), "the walk reaches h2.ts");
  assert.ok(reached.has("node:net"), "node builtins are in the graph");
  assert.deepEqual(
    [...reached].filter((s) => /@grpc\/|^node:http2$|rpc\/client\.ts$/.test(s)),
    [],
  );
});

Deno.test("server: a request without a body ends OK at once; close() does not wait for a TLS handshake that never finishes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pki = await makeTestPki(dir);
    const read = (path: string) => Deno.readTextFileSync(path);
    const { server, streams } = await ackingServer({
      tls: { cert: read(pki.broker.cert), key: read(pki.broker.key) },
      onTlsError: () => {},
    });
    const session = http2Connect(`https://localhost:${server.port}`, { ca: read(pki.ca) });
    try {
      const status = await within<string>(10_000, "trailers-only response", (d) => {
        const req = session.request(
          { ":method": "POST", ":path": CONNECT_PATH, "content-type": "application/grpc" },
          { endStream: true },
        );
        req.on("response", (headers) => d(String(headers["grpc-status"])));
        req.on("error", () => {});
        req.resume();
      });
      assert.equal(status, "0");
      assert.equal(streams.length, 1);
      assert.equal(streams[0].closed, true);
    } finally {
      // The client's GOAWAY on close reaches the broker's own server, which handles it.
      await new Promise<void>((resolve) => session.close(() => resolve()));
    }
    // A TCP connection that never starts its TLS handshake.
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    try {
      await within<void>(5000, "close() despite the pending handshake", (d) => {
        server.close(200).then(d);
      });
    } finally {
      silent.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
