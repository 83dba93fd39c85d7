import assert from "node:assert/strict";
import { BrokerChoice, preferenceOrder } from "./broker_choice.ts";

const BROKERS = ["10.0.0.1:50052", "10.0.0.2:50052", "10.0.0.3:50052", "10.0.0.4:50052"];
const ids = Array.from({ length: 4000 }, (_, i) => `agent-${i}`);

Deno.test("broker choice: the same order for an id whatever the list order; every broker in it", () => {
  for (const id of ids.slice(0, 50)) {
    const order = preferenceOrder(id, BROKERS);
    assert.deepEqual(order, preferenceOrder(id, [...BROKERS].reverse()));
    assert.deepEqual([...order].sort(), [...BROKERS].sort());
  }
});

Deno.test("broker choice: agents spread evenly; adding a broker moves only the agents that now prefer it", () => {
  const first = (list: string[]) => new Map(ids.map((id) => [id, preferenceOrder(id, list)[0]]));
  const before = first(BROKERS);
  const counts = new Map<string, number>();
  for (const b of before.values()) counts.set(b, (counts.get(b) ?? 0) + 1);
  for (const broker of BROKERS) {
    const share = (counts.get(broker) ?? 0) / ids.length;
    assert.ok(share > 0.2 && share < 0.3, `${broker}: ${share}`);
  }
  const added = "10.0.0.5:50052";
  const after = first([...BROKERS, added]);
  let moved = 0;
  for (const id of ids) {
    if (after.get(id) !== before.get(id)) {
      moved++;
      assert.equal(after.get(id), added, `${id} moved to ${after.get(id)}, not the new broker`);
    }
  }
  assert.ok(moved / ids.length > 0.15 && moved / ids.length < 0.25, `moved ${moved}`);
});

Deno.test("broker choice: the agents of a lost broker spread over the others", () => {
  const lost = BROKERS[0];
  const next = new Map<string, number>();
  for (const id of ids) {
    const order = preferenceOrder(id, BROKERS);
    if (order[0] === lost) next.set(order[1], (next.get(order[1]) ?? 0) + 1);
  }
  assert.equal(next.size, 3);
  for (const n of next.values()) assert.ok(n > 200, `${[...next]}`);
});

Deno.test("broker choice: failures walk the order; a whole round of failures asks for backoff", () => {
  const choice = new BrokerChoice("web-1", BROKERS.slice(0, 3));
  const order = [...choice.order];
  assert.equal(choice.current, order[0]);
  assert.equal(choice.preferred, true);
  assert.equal(choice.failed(), false);
  assert.equal(choice.current, order[1]);
  choice.succeeded();
  assert.equal(choice.failed(), false);
  assert.equal(choice.current, order[2]);
  assert.equal(choice.failed(), false);
  assert.equal(choice.failed(), true, "three failures in a row: a whole round");
  assert.equal(choice.current, order[1]);
  const single = new BrokerChoice("web-1", ["a:1"]);
  assert.equal(single.failed(), true);
  assert.equal(single.current, "a:1");
  assert.throws(() => new BrokerChoice("x", []), /at least one/);
});
