import assert from "node:assert/strict";
import { encodeHeaders, HpackDecoder, HpackError, huffmanDecode } from "./hpack.ts";

const hex = (text: string) => Uint8Array.from(text.match(/../g)!.map((b) => parseInt(b, 16)));

Deno.test("hpack: decodes RFC 7541 C.4 (requests with Huffman, dynamic table across blocks)", () => {
  // Encoded by the Python `hpack` 4.2.0 encoder; the first block is RFC 7541 C.4.1 byte for byte.
  const decoder = new HpackDecoder();
  assert.deepEqual(decoder.decode(hex("828684418cf1e3c2e5f23a6ba0ab90f4ff")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ]);
  assert.equal(decoder.tableLength, 1);
  assert.deepEqual(decoder.decode(hex("828684be5886a8eb10649cbf")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  assert.deepEqual(
    decoder.decode(hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")),
    [
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ],
  );
  assert.equal(decoder.tableLength, 3);
});

Deno.test("hpack: a table size update to 256 evicts as RFC 7541 C.6 does", () => {
  const decoder = new HpackDecoder();
  const date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
  const location = "https://www.example.com";
  assert.deepEqual(
    decoder.decode(
      hex(
        "3fe101488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
      ),
    ),
    [[":status", "302"], ["cache-control", "private"], ["date", date1], ["location", location]],
  );
  assert.equal(decoder.tableLength, 4);
  assert.deepEqual(decoder.decode(hex("4883640effc1c0bf")), [
    [":status", "307"],
    ["cache-control", "private"],
    ["date", date1],
    ["location", location],
  ]);
  // 256 bytes hold four of these entries: adding ":status: 307" evicted ":status: 302".
  assert.equal(decoder.tableLength, 4);
  const third = decoder.decode(
    hex(
      "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
    ),
  );
  assert.deepEqual(third.map(([name]) => name), [
    ":status",
    "cache-control",
    "date",
    "location",
    "content-encoding",
    "set-cookie",
  ]);
  assert.equal(third[5][1], "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1");
  assert.equal(decoder.tableLength, 3);
});

Deno.test("hpack: every printable ASCII character survives Huffman decoding", () => {
  const all = String.fromCharCode(...Array.from({ length: 95 }, (_, i) => 32 + i));
  const decoded = new HpackDecoder().decode(
    hex(
      "4084f2b0e8a3dd53f8fe7febff2afc7fafebfbf9ff7f4b2ec002265a6dc75e7ee7dfffc83feffcffd4376f5fc187163c997367d1a756bd9b776fe1c797e73fdffdffff0ffe7ff917ffd1c6490b2cd39ba75a29a8f5f6b109b7bf8f3ebdfffeff9ffefff7",
    ),
  );
  assert.deepEqual(decoded, [["x-all", all]]);
});

Deno.test("hpack: malformed blocks are refused with what was wrong", () => {
  const decoder = () => new HpackDecoder();
  assert.throws(() => decoder().decode(hex("80")), /index 0 is not a table entry/);
  assert.throws(() => decoder().decode(hex("be")), /index 62 is past the table/);
  assert.throws(() => decoder().decode(hex("4005")), /runs past the end/);
  assert.throws(() => decoder().decode(hex("3fe21f")), /exceeds the announced 4096/);
  assert.throws(() => decoder().decode(hex("823fe101")), /after a header field/);
  assert.throws(() => decoder().decode(hex("ff")), /ends inside an integer/);
  // Padding longer than 7 bits (a whole 0xff byte after the last symbol).
  assert.throws(() => huffmanDecode(hex("1fff")), /padding/);
  assert.throws(
    () => decoder().decode(encodeHeaders([["x-big", "v".repeat(100)]]), 64),
    (error) => error instanceof HpackError && /larger than 64 bytes/.test(error.message),
  );
});

Deno.test("hpack: what the encoder writes decodes to the same fields, long values included", () => {
  const fields: Array<[string, string]> = [
    [":status", "200"],
    [":status", "415"],
    ["content-type", "application/grpc"],
    ["grpc-status", "8"],
    ["grpc-message", "x".repeat(300)],
    ["retry-after", "5"],
  ];
  const decoder = new HpackDecoder();
  assert.deepEqual(decoder.decode(encodeHeaders(fields)), fields);
  assert.equal(decoder.tableLength, 0);
});
