import assert from "node:assert/strict";
import { MAX_OUTPUT_LINES, resultLine } from "./commands.ts";
import { PLAIN } from "./format.ts";

const result = (output: unknown) => ({
  command_id: "c1",
  agent_id: "web-1",
  status: "ok" as const,
  output,
  timestamp: 1,
});

Deno.test("console: a short result stays on one line; a long one is pretty-printed and indented", () => {
  assert.equal(resultLine(result({ uptime: 12 }), PLAIN), 'web-1  ok  {"uptime":12}');
  assert.equal(resultLine(result("pong"), PLAIN), "web-1  ok  pong");
  assert.equal(resultLine(result(null), PLAIN), "web-1  ok");

  const status = {
    agent_id: "web-1",
    hostname: "web-1.example",
    uptime_s: 1234,
    config: { interval: 5, metrics: ["cpu", "memory", "disk read"], plugins: [] },
  };
  const lines = resultLine(result(status), PLAIN).split("\n");
  assert.equal(lines[0], "web-1  ok");
  assert.deepEqual(
    lines.slice(1),
    JSON.stringify(status, null, 2).split("\n").map((l) => `  ${l}`),
  );
  // The printed block is the output itself, as JSON.
  assert.deepEqual(JSON.parse(lines.slice(1).join("\n")), status);

  // Multi-line text keeps its lines; a huge output is cut with a count of what is left.
  assert.equal(resultLine(result("a\nb"), PLAIN), "web-1  ok\n  a\n  b");
  const big = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, i]));
  const cut = resultLine(result(big), PLAIN).split("\n");
  assert.equal(cut.length, 1 + MAX_OUTPUT_LINES);
  assert.match(cut.at(-1)!, /^ {2}… \d+ more lines$/);
});

Deno.test("console: a result's output cannot forge lines or reach the terminal raw", () => {
  const text = resultLine(result({ note: "x\nFORGED\x1b[2J".repeat(10) }), PLAIN);
  assert.ok(!text.includes("\x1b"));
  assert.ok(text.split("\n").slice(1).every((line) => line.startsWith("  ")));
  const plain = resultLine(result("a\nFORGED-LINE\x1b[2J"), PLAIN);
  assert.equal(plain, "web-1  ok\n  a\n  FORGED-LINE\\x1b[2J");
});
