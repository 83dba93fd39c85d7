import assert from "node:assert/strict";
import {
  decodeGrpcMessage,
  frameMessage,
  FrameReader,
  statusOf,
  statusOfHttp,
  statusOfReset,
} from "./framing.ts";
import { RpcStatus } from "./status.ts";

Deno.test("framing: messages split across chunks at every boundary come out whole and in order", () => {
  const a = new Uint8Array([1, 2, 3]);
  const b = new Uint8Array(300).map((_, i) => i % 251);
  const empty = new Uint8Array(0);
  const wire = new Uint8Array([...frameMessage(a), ...frameMessage(empty), ...frameMessage(b)]);
  assert.deepEqual([...frameMessage(a)], [0, 0, 0, 0, 3, 1, 2, 3]);
  for (const size of [1, 2, 4, 5, 6, 7, 64, wire.length]) {
    const reader = new FrameReader(1024);
    const out: number[][] = [];
    for (let at = 0; at < wire.length; at += size) {
      const { messages, error } = reader.push(wire.subarray(at, at + size));
      assert.equal(error, undefined);
      for (const m of messages) out.push([...m]);
    }
    assert.deepEqual(out, [[...a], [], [...b]], `chunks of ${size}`);
    assert.equal(reader.partial, false);
  }
});

Deno.test("framing: a compressed message is refused INTERNAL, one over the limit RESOURCE_EXHAUSTED as soon as its prefix arrives", () => {
  const compressed = new FrameReader(1024).push(new Uint8Array([1, 0, 0, 0, 1, 9]));
  assert.equal(compressed.error?.code, RpcStatus.INTERNAL);
  assert.match(compressed.error?.details ?? "", /compressed message.*identity/);
  const reader = new FrameReader(100);
  const first = reader.push(new Uint8Array([...frameMessage(new Uint8Array([7]))]));
  assert.equal(first.messages.length, 1);
  // Only the prefix of a 1 MiB message: refused before its bytes are buffered.
  const big = reader.push(new Uint8Array([0, 0, 0x10, 0, 0]));
  assert.equal(big.error?.code, RpcStatus.RESOURCE_EXHAUSTED);
  assert.equal(big.error?.details, "Received message larger than max (1048576 vs. 100)");
  // The reader stays stopped.
  assert.deepEqual(reader.push(frameMessage(new Uint8Array([1]))), { messages: [] });
});

Deno.test("framing: status from trailers (percent-decoded), HTTP statuses and resets map as gRPC says", () => {
  assert.equal(statusOf({ ":status": 200 }), undefined);
  assert.equal(statusOf({ "grpc-status": "0" }), null);
  const error = statusOf({ "grpc-status": "6", "grpc-message": "agent%20a1%3A%20caf%C3%A9 100%" });
  assert.equal(error?.code, RpcStatus.ALREADY_EXISTS);
  assert.equal(error?.details, "agent%20a1%3A%20caf%C3%A9 100%", "malformed: kept as sent");
  assert.equal(decodeGrpcMessage("agent%20a1%3A%20caf%C3%A9"), "agent a1: café");
  assert.equal(statusOf({ "grpc-status": "x" })?.code, RpcStatus.UNKNOWN);
  assert.equal(statusOfHttp(503).code, RpcStatus.UNAVAILABLE);
  assert.equal(statusOfHttp(401).code, RpcStatus.UNAUTHENTICATED);
  assert.equal(statusOfHttp(404).code, RpcStatus.UNIMPLEMENTED);
  assert.equal(statusOfHttp(400).code, RpcStatus.INTERNAL);
  assert.equal(statusOfHttp(500).code, RpcStatus.UNKNOWN);
  assert.match(statusOfHttp(503).details, /HTTP status 503/);
  assert.equal(statusOfReset(7).code, RpcStatus.UNAVAILABLE);
  assert.equal(statusOfReset(8).code, RpcStatus.CANCELLED);
  assert.equal(statusOfReset(2).code, RpcStatus.INTERNAL);
});
