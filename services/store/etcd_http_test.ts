/**
 * Unit tests of the HTTP/JSON etcd client's pure parts, and its module
 * graph: no etcd3, grpc-js or protobufjs (the agent's graph and process on
 * etcd: tests/agent_etcd_process_test.ts). Its behaviour against a real etcd is in
 * tests/store_etcd_test.ts (the contract suite, run for both etcd clients).
 */
import assert from "node:assert/strict";
import {
  EtcdHttpError,
  EtcdLeaseGoneError,
  fromBase64,
  isRecoverable,
  prefixRange,
  toBase64,
} from "./etcd_http.ts";

Deno.test("etcd http: keys and values travel as base64 of UTF-8", () => {
  assert.equal(toBase64("/a/x"), "L2EveA==");
  assert.equal(fromBase64("L2EveA=="), "/a/x");
  assert.equal(fromBase64(toBase64("Grüße ✓")), "Grüße ✓");
  assert.equal(fromBase64(undefined), "", "an absent value is the empty string");
});

Deno.test("etcd http: a prefix's range ends at the next byte string; the empty prefix is every key", () => {
  assert.deepEqual(prefixRange("/a/"), { key: toBase64("/a/"), range_end: toBase64("/a0") });
  assert.deepEqual(prefixRange(""), { key: "AA==", range_end: "AA==" });
  // "a\xff" is not valid UTF-8 text, so check the byte rule on the encoded form of "é" (c3 a9).
  assert.deepEqual(
    Uint8Array.fromBase64(prefixRange("é").range_end),
    new Uint8Array([0xc3, 0xaa]),
  );
});

Deno.test("etcd http: network failures and etcd's UNAVAILABLE are retried; refusals are not", () => {
  assert.equal(isRecoverable(new TypeError("error sending request: connection refused")), true);
  assert.equal(isRecoverable(new EtcdHttpError(14, 503, "etcdserver: no leader")), true);
  assert.equal(
    isRecoverable(new EtcdHttpError(11, 400, "required revision is a future revision")),
    false,
  );
  assert.equal(isRecoverable(new EtcdHttpError(3, 400, "invalid character")), false);
  assert.equal(isRecoverable(new EtcdLeaseGoneError("7")), false);
});

Deno.test("etcd http: the client's module graph holds no etcd3, grpc-js or protobufjs", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL("./etcd_http.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const graph = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    modules: Array<{ specifier: string }>;
  };
  assert.ok(graph.modules.length > 3, "deno info lists the graph");
  assert.deepEqual(
    graph.modules.map((m) => m.specifier).filter((s) =>
      /etcd3|@grpc\/|protobufjs|proto-loader/.test(s)
    ),
    [],
  );
});
