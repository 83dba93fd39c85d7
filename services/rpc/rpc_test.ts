import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import {
  type AgentMessage,
  type BrokerMessage,
  openAgentStream,
  RpcError,
  RpcStatus,
  type ServerStream,
  startRpcServer,
} from "./mod.ts";
import { monitoringService } from "./proto.ts";

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

Deno.test("rpc: hello, batch and ack round trip over loopback with all fields decoded", async () => {
  const received: AgentMessage[] = [];
  let serverSide: ServerStream | undefined;
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      serverSide = stream;
      stream.onMessage((message) => {
        received.push(message);
        if (message.hello) {
          stream.send({ welcome: { broker_version: "t", max_batch_samples: 10 } });
        }
        if (message.batch) stream.send({ ack: { seq: message.batch.seq } });
      });
    },
  });
  const client = openAgentStream({ address: server.address });
  try {
    await client.ready();
    const fromBroker: BrokerMessage[] = [];
    const gotAck = within<void>(5000, "ack", (done) => {
      client.onMessage((m) => {
        fromBroker.push(m);
        if (m.ack) done();
      });
    });
    client.send({
      hello: { agent_id: "a1", hostname: "h", version: "1", token: "", instance_id: "i-1" },
    });
    client.send({
      batch: {
        seq: 7,
        samples: [{ timestamp: 1.5, metrics: { "cpu": 12.5, "disk read": 1024 } }],
        alerts: [{ metric: "cpu", value: 95, threshold: 80, state: "firing", timestamp: 2 }],
      },
    });
    await gotAck;
    assert.deepEqual(fromBroker, [
      { welcome: { broker_version: "t", max_batch_samples: 10 } },
      { ack: { seq: 7 } },
    ]);
    assert.equal(received.length, 2);
    assert.deepEqual(received[0], {
      hello: { agent_id: "a1", hostname: "h", version: "1", token: "", instance_id: "i-1" },
    });
    assert.deepEqual(received[1].batch?.samples[0].metrics, { "cpu": 12.5, "disk read": 1024 });
    assert.equal(received[1].batch?.alerts[0].state, "firing");
    assert.match(serverSide?.peer ?? "", /127\.0\.0\.1/);
  } finally {
    client.close();
    await server.close(1000);
  }
});

Deno.test("rpc: a stream failed by the broker reaches the agent with its status; others unaffected", async () => {
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      stream.onMessage((message) => {
        if (message.hello?.agent_id === "bad") {
          stream.fail(RpcStatus.INVALID_ARGUMENT, "hello.agent_id: bad on purpose");
        } else if (message.hello) {
          stream.send({ welcome: { broker_version: "t", max_batch_samples: 1 } });
        }
      });
    },
  });
  const bad = openAgentStream({ address: server.address });
  const good = openAgentStream({ address: server.address });
  try {
    const badClosed = within<RpcError | undefined>(5000, "bad close", (done) => bad.onClose(done));
    const goodWelcome = within<void>(
      5000,
      "welcome",
      (done) => good.onMessage((m) => m.welcome && done()),
    );
    bad.send({ hello: { agent_id: "bad", hostname: "h", version: "1", token: "" } });
    const error = await badClosed;
    assert.ok(error instanceof RpcError);
    assert.equal(error.code, RpcStatus.INVALID_ARGUMENT);
    assert.match(error.details, /hello\.agent_id/);
    good.send({ hello: { agent_id: "good", hostname: "h", version: "1", token: "" } });
    await goodWelcome;
    assert.equal(good.closed, false);
  } finally {
    bad.close();
    good.close();
    await server.close(1000);
  }
});

Deno.test("rpc: an oversized message is refused with RESOURCE_EXHAUSTED", async () => {
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    maxMessageBytes: 1024,
    onStream(stream) {
      stream.onMessage(() => {});
    },
  });
  const client = openAgentStream({ address: server.address });
  try {
    const closed = within<RpcError | undefined>(5000, "close", (done) => client.onClose(done));
    const metrics: Record<string, number> = {};
    for (let i = 0; i < 200; i++) metrics[`metric-${i}`] = i;
    client.send({ batch: { seq: 1, samples: [{ timestamp: 1, metrics }], alerts: [] } });
    const error = await closed;
    assert.ok(error instanceof RpcError);
    assert.equal(error.code, RpcStatus.RESOURCE_EXHAUSTED);
  } finally {
    client.close();
    await server.close(1000);
  }
});

/** Sends `bytes` as they are on a new Connect stream of `raw`; resolves with its final status. */
function sendRawBytes(raw: grpc.Client, bytes: number[]): Promise<grpc.StatusObject> {
  const call = raw.makeBidiStreamRequest(
    "/monitoring.v1.Monitoring/Connect",
    (b: Buffer) => b,
    (b: Buffer) => b,
  );
  const status = within<grpc.StatusObject>(5000, "status of the raw stream", (done) => {
    call.on("status", done);
    call.on("error", () => {});
    call.on("data", () => {});
  });
  call.write(Buffer.from(bytes));
  return status;
}

Deno.test("rpc: bytes that are not an AgentMessage end only that stream with INVALID_ARGUMENT saying what was expected", async () => {
  const received: AgentMessage[] = [];
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      stream.onMessage((message) => {
        received.push(message);
        if (message.hello) stream.send({ welcome: { broker_version: "t", max_batch_samples: 1 } });
      });
    },
  });
  // A raw client that sends bytes as they are: field 1 (hello) claiming 255 bytes, then nothing.
  const raw = new grpc.Client(server.address, grpc.credentials.createInsecure());
  const good = openAgentStream({ address: server.address });
  try {
    const { code, details } = await sendRawBytes(raw, [0x0a, 0xff, 0x01]);
    assert.equal(code, RpcStatus.INVALID_ARGUMENT);
    assert.match(
      details,
      /^expected a monitoring\.v1\.AgentMessage \(protobuf\), found 3 bytes that do not decode: /,
    );
    const welcome = within<void>(
      5000,
      "welcome",
      (done) => good.onMessage((m) => m.welcome && done()),
    );
    good.send({ hello: { agent_id: "good", hostname: "h", version: "1", token: "" } });
    await welcome;
    assert.equal(good.closed, false);
    // The undecodable message never reached the broker's handler.
    assert.deepEqual(received.map((m) => Object.keys(m)), [["hello"]]);
  } finally {
    good.close();
    raw.close();
    await server.close(1000);
  }
});

Deno.test("rpc: with an onInvalid listener, undecodable bytes go to it (the owner decides how the stream ends)", async () => {
  const invalid: string[] = [];
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      stream.onInvalid((details) => {
        invalid.push(details);
        stream.fail(RpcStatus.INVALID_ARGUMENT, `counted: ${details}`);
      });
    },
  });
  const raw = new grpc.Client(server.address, grpc.credentials.createInsecure());
  try {
    const { code, details } = await sendRawBytes(raw, [0x0a, 0xff, 0x01]);
    assert.equal(code, RpcStatus.INVALID_ARGUMENT);
    assert.match(details, /^counted: expected a monitoring\.v1\.AgentMessage \(protobuf\)/);
    assert.equal(invalid.length, 1);
    assert.match(invalid[0], /found 3 bytes that do not decode/);
  } finally {
    raw.close();
    await server.close(1000);
  }
});

Deno.test("rpc: one connection gets at most maxStreamsPerConnection streams at once; more wait for a free one", async () => {
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    maxStreamsPerConnection: 2,
    onStream(stream) {
      stream.onMessage((m) => {
        if (m.hello) stream.send({ welcome: { broker_version: "t", max_batch_samples: 1 } });
      });
    },
  });
  // Four streams on ONE connection (a plain grpc-js client shares it); agents use one each.
  const raw = new grpc.Client(server.address, grpc.credentials.createInsecure());
  const method = monitoringService().service.Connect;
  const calls: grpc.ClientDuplexStream<unknown, unknown>[] = [];
  const welcomes: Promise<void>[] = [];
  let cancelled = 0;
  /** Per stream: how many streams had been cancelled when its welcome arrived. */
  const cancelledBeforeWelcome: number[] = [];
  const openCall = (i: number) => {
    const call = raw.makeBidiStreamRequest(
      "/monitoring.v1.Monitoring/Connect",
      method.requestSerialize as (value: unknown) => Buffer,
      method.responseDeserialize,
    );
    call.on("error", () => {});
    welcomes[i] = within<void>(10_000, `welcome of stream ${i}`, (done) =>
      call.on("data", () => {
        cancelledBeforeWelcome[i] ??= cancelled;
        done();
      }));
    call.write({ hello: { agent_id: `s-${i}`, hostname: "h", version: "1", token: "" } });
    calls[i] = call;
  };
  const cancel = (i: number) => {
    cancelled++;
    calls[i].cancel();
  };
  try {
    openCall(0);
    await welcomes[0]; // the connection and its settings are up
    for (const i of [1, 2, 3]) openCall(i);
    await welcomes[1];
    cancel(0); // frees a place for stream 2
    await welcomes[2];
    cancel(1); // and for stream 3
    await welcomes[3];
    // Streams 2 and 3 were only served once a place was free.
    assert.deepEqual(cancelledBeforeWelcome, [0, 0, 1, 2]);
  } finally {
    for (const call of calls) call.cancel();
    raw.close();
    await server.close(1000);
  }
});

Deno.test("rpc: connecting to a closed port fails with UNAVAILABLE naming the address", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const client = openAgentStream({ address: `127.0.0.1:${port}`, connectTimeoutMs: 500 });
  try {
    await assert.rejects(client.ready(), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, RpcStatus.UNAVAILABLE);
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
  } finally {
    client.close();
  }
});

Deno.test("rpc: a stream closed while its connection is being set up leaves no timer or connection behind", async () => {
  // grpc-js 1.14 starts a channel closed at the wrong moment connecting again (its
  // resolver's result arrives on an immediate; waitForReady asks a closing channel to
  // connect), and a channel caught connecting keeps backoff timers: both were left
  // running after an agent stopped early (sanitizers on here).
  const server = await startRpcServer({ listen: "127.0.0.1:0", onStream() {} });
  try {
    for (const wait of ["none", "immediate", "1ms", "10ms"] as const) {
      const client = openAgentStream({ address: server.address, connectTimeoutMs: 5000 });
      const ready = client.ready();
      ready.catch(() => {});
      if (wait === "immediate") await new Promise((resolve) => setImmediate(resolve));
      if (wait === "1ms") await new Promise((resolve) => setTimeout(resolve, 1));
      if (wait === "10ms") await new Promise((resolve) => setTimeout(resolve, 10));
      client.close();
      assert.equal(client.closed, true);
      // Either it had connected already, or ready() says why it never will.
      await ready.then(
        () => {},
        (error: unknown) => {
          assert.ok(error instanceof RpcError, String(error));
          assert.equal(error.code, RpcStatus.UNAVAILABLE);
          assert.match(error.message, /closed before it connected/);
        },
      );
      await client.released();
    }
  } finally {
    await server.close(500);
  }
});
