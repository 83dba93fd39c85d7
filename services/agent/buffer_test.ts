import assert from "node:assert/strict";
import { Backoff } from "./backoff.ts";
import { BatchBuffer } from "./buffer.ts";
import { AGENT_COMMANDS, parseCommandArgs } from "./commands.ts";
import { KNOWN_COMMAND_TYPES } from "../common/commands.ts";

const s = (t: number) => ({ timestamp: t, metrics: { cpu: t } });
const alert = (t: number) => ({
  metric: "cpu",
  value: t,
  threshold: 1,
  state: "firing",
  timestamp: t,
});

Deno.test("buffer: batches get increasing seqs and leave only when acknowledged", () => {
  const buffer = new BatchBuffer(10, 1, 100);
  const a = buffer.add([s(1)], []);
  const b = buffer.add([s(2)], [alert(2)]);
  assert.deepEqual([a.seq, b.seq], [100, 101]);
  assert.equal(buffer.ack(999), false);
  assert.equal(buffer.ack(100), true);
  assert.deepEqual(buffer.pending().map((x) => x.seq), [101]);
  const stats = buffer.stats();
  assert.equal(stats.batches, 1);
  assert.equal(stats.alerts, 1);
  assert.equal(stats.acked, 1);
  assert.equal(stats.oldest_seq, 101);
  assert.equal(stats.last_seq, 101);
});

Deno.test("buffer: the oldest batches are dropped and counted beyond the bound", () => {
  const buffer = new BatchBuffer(3, 1, 1);
  for (let t = 1; t <= 5; t++) buffer.add([s(t)], t === 1 ? [alert(1)] : []);
  assert.deepEqual(buffer.pending().map((b) => b.samples[0].timestamp), [3, 4, 5]);
  const stats = buffer.stats();
  assert.equal(stats.dropped_batches, 2);
  assert.equal(stats.dropped_samples, 2);
  assert.equal(stats.dropped_alerts, 1);
  buffer.resize(1, 1);
  assert.deepEqual(buffer.pending().map((b) => b.seq), [5]);
  assert.equal(buffer.stats().dropped_batches, 4);
});

Deno.test("buffer: samples join the newest unsent batch up to the batch size; sent batches are fixed", () => {
  const buffer = new BatchBuffer(10, 2, 1);
  buffer.add([s(1)], []);
  buffer.add([s(2)], [alert(2)]);
  buffer.add([s(3)], []);
  assert.deepEqual(buffer.pending().map((b) => [b.seq, b.samples.length, b.alerts.length]), [
    [1, 2, 1],
    [2, 1, 0],
  ]);
  buffer.seal(2);
  buffer.add([s(4)], []);
  assert.deepEqual(buffer.pending().map((b) => b.seq), [1, 2, 3]);
});

Deno.test("buffer: rechunk splits unsent batches for a broker with a smaller limit, keeping order", () => {
  const buffer = new BatchBuffer(10, 5, 1);
  buffer.add([s(1)], []);
  buffer.seal(1);
  buffer.add([s(2), s(3), s(4)], [alert(9)]);
  buffer.rechunk(2);
  const pending = buffer.pending();
  assert.deepEqual(pending.map((b) => b.seq), [1, 3, 4]);
  assert.deepEqual(pending.map((b) => b.samples.map((x) => x.timestamp)), [[1], [2, 3], [4]]);
  assert.deepEqual(pending.map((b) => b.alerts.length), [0, 1, 0]);
});

Deno.test("buffer: discard drops one refused batch and counts it", () => {
  const buffer = new BatchBuffer(10, 1, 1);
  buffer.add([s(1)], []);
  buffer.add([s(2)], []);
  assert.equal(buffer.discard(1), true);
  assert.deepEqual(buffer.pending().map((b) => b.seq), [2]);
  assert.equal(buffer.stats().dropped_batches, 1);
});

Deno.test("backoff: exponential with equal jitter, capped, reset after a healthy connection", () => {
  const low = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => low.next()), [50, 100, 200, 400, 500, 500]);
  const high = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => high.next()), [100, 200, 400, 800, 1000]);
  assert.equal(high.attempt, 5);
  high.reset();
  assert.equal(high.next(), 100);
  const defaults = new Backoff();
  let last = 0;
  for (let i = 0; i < 20; i++) last = defaults.next();
  assert.ok(last >= 15_000 && last <= 30_000, `capped at 30 s, got ${last}`);
});

Deno.test("commands: arguments are checked per command", () => {
  assert.deepEqual(parseCommandArgs("status", ""), {});
  assert.deepEqual(parseCommandArgs("status", "{}"), {});
  assert.deepEqual(parseCommandArgs("collect", '{"send": false}'), { send: false });
  assert.match(
    parseCommandArgs("status", "[1]") as string,
    /args: expected a JSON object, found a list/,
  );
  assert.match(
    parseCommandArgs("ping", "{x") as string,
    /args: expected a JSON object, found invalid JSON/,
  );
  assert.match(
    parseCommandArgs("status", '{"verbose": true}') as string,
    /args\.verbose: unexpected field; status takes no arguments/,
  );
  assert.match(
    parseCommandArgs("collect", '{"snd": true}') as string,
    /args\.snd: unexpected field; collect takes only send \(did you mean "send"\?\)/,
  );
  assert.match(
    parseCommandArgs("collect", '{"send": "yes"}') as string,
    /args\.send: expected true or false/,
  );
  assert.match(parseCommandArgs("reboot", "") as string, /unknown command "reboot"/);
});

Deno.test("commands: the agent answers exactly the command types the consoles offer", () => {
  assert.deepEqual([...AGENT_COMMANDS].sort(), [...KNOWN_COMMAND_TYPES].sort());
});
