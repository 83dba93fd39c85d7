import assert from "node:assert/strict";
import { localAddress, parseBrokerList, replicaAddresses } from "./broker_list.ts";

Deno.test("broker list: one address, a comma-separated string or a list; duplicates dropped", () => {
  assert.deepEqual(parseBrokerList("10.0.0.5:50052"), ["10.0.0.5:50052"]);
  assert.deepEqual(parseBrokerList("a:1, b:2,a:1"), ["a:1", "b:2"]);
  assert.deepEqual(parseBrokerList(["[::1]:50052", "b:2"]), ["[::1]:50052", "b:2"]);
});

Deno.test("broker list: a bad item is named with what was expected", () => {
  assert.equal(
    parseBrokerList("a:1,b"),
    'item 2: expected host:port, e.g. 10.0.0.5:50052, found "b"',
  );
  assert.equal(
    parseBrokerList(50052),
    "expected a broker address host:port or a list of them, e.g. 10.0.0.5:50052,10.0.0.6:50052, found 50052",
  );
  assert.match(String(parseBrokerList([])), /^expected a broker address/);
  assert.match(String(parseBrokerList("a:99999")), /found "a:99999"/);
});

Deno.test("broker replicas: the listen port, then port + 1, ...; port 0 or past 65535 refused", () => {
  assert.deepEqual(replicaAddresses("127.0.0.1:50052", 1), ["127.0.0.1:50052"]);
  assert.deepEqual(replicaAddresses("0.0.0.0:50052", 3), [
    "0.0.0.0:50052",
    "0.0.0.0:50053",
    "0.0.0.0:50054",
  ]);
  assert.throws(() => replicaAddresses("127.0.0.1:0", 2), /fixed port/);
  assert.throws(() => replicaAddresses("127.0.0.1:65535", 2), /65535/);
  assert.equal(localAddress("0.0.0.0:50052"), "127.0.0.1:50052");
  assert.equal(localAddress("10.0.0.5:50052"), "10.0.0.5:50052");
});
