/**
 * Probe server for bench/probe/rpc_probe.ts: a broker stand-in that answers
 * Hello with Welcome and every batch with its ack, on one of the server
 * implementations (argument: `own`, services/rpc/server.ts, or `http2`, a
 * minimal gRPC server on node:http2 for comparison). Prints its port. (The
 * grpc-js server the broker ran before was measured with this probe at the
 * commit before services/rpc/server.ts replaced it.)
 */
import { createServer, type ServerHttp2Stream } from "node:http2";
import { decodeAgentMessage, encodeBrokerMessage } from "../../services/rpc/codec.ts";
import { frameMessage, FrameReader } from "../../services/rpc/framing.ts";

const variant = Deno.args[0];
let messages = 0;

function answer(message: ReturnType<typeof decodeAgentMessage>, send: (b: Uint8Array) => void) {
  messages++;
  if (message.hello) {
    send(encodeBrokerMessage({ welcome: { broker_version: "p", max_batch_samples: 100 } }));
  } else if (message.batch) send(encodeBrokerMessage({ ack: { seq: message.batch.seq } }));
}

if (variant === "own") {
  const mod = await import("../../services/rpc/server.ts");
  const server = await mod.startRpcServer({
    listen: "127.0.0.1:0",
    onStream(stream) {
      stream.onMessage((m) => {
        messages++;
        if (m.hello) stream.send({ welcome: { broker_version: "p", max_batch_samples: 100 } });
        else if (m.batch) stream.send({ ack: { seq: m.batch.seq } });
      });
    },
  });
  console.log(JSON.stringify({ port: server.port }));
} else if (variant === "http2") {
  const server = createServer({ settings: { maxConcurrentStreams: 16 } });
  server.on("stream", (stream: ServerHttp2Stream) => {
    const reader = new FrameReader(4 << 20);
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, {
      waitForTrailers: true,
    });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.on("data", (chunk: Uint8Array) => {
      for (const bytes of reader.push(chunk).messages) {
        answer(decodeAgentMessage(bytes), (b) => stream.write(frameMessage(b)));
      }
    });
    stream.on("end", () => stream.end());
    stream.on("error", () => {});
  });
  server.on("sessionError", () => {});
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  console.log(JSON.stringify({ port: (server.address() as { port: number }).port }));
} else throw new Error(`variant? ${variant}`);

setInterval(() => console.error(`messages ${messages}`), 10_000);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
