import assert from "node:assert/strict";
import { ServiceOutput } from "./output.ts";

Deno.test("supervisor output, json: service JSON passes through, other lines and its own are objects", () => {
  const lines: string[] = [];
  const output = new ServiceOutput({
    color: false,
    write: (l) => lines.push(l),
    format: "json",
    now: () => 0,
  });
  const serviceLine = JSON.stringify({
    time: "2026-01-01T00:00:00.000Z",
    level: "info",
    service: "broker",
    message: "listening",
    fields: { component: "broker" },
  });
  output.line("broker", "stdout", serviceLine);
  output.line("agent", "stderr", "error: Uncaught \x1b[2J boom");
  output.event("agent", "warn", "exited with code 1");
  assert.equal(lines.length, 3);
  assert.deepEqual(JSON.parse(lines[0]), JSON.parse(serviceLine));
  assert.deepEqual(JSON.parse(lines[1]), {
    time: "1970-01-01T00:00:00.000Z",
    level: "warn",
    service: "agent",
    message: "error: Uncaught \x1b[2J boom",
    fields: { stream: "stderr" },
  });
  assert.ok(!lines[1].includes("\x1b"));
  assert.deepEqual(JSON.parse(lines[2]), {
    time: "1970-01-01T00:00:00.000Z",
    level: "warn",
    service: "supervisor",
    message: "agent exited with code 1",
    fields: { component: "supervisor", about: "agent" },
  });
});

Deno.test("supervisor output, text: its own lines have the services' time and level style", () => {
  const lines: string[] = [];
  const output = new ServiceOutput({ color: false, write: (l) => lines.push(l), now: () => 0 });
  output.say("info", "all services ready");
  output.say("warn", "a\nb");
  assert.deepEqual(lines, [
    "supervisor| 1970-01-01T00:00:00.000Z INFO  supervisor: all services ready",
    "supervisor| 1970-01-01T00:00:00.000Z WARN  supervisor: a",
    "supervisor| 1970-01-01T00:00:00.000Z WARN  supervisor: b",
  ]);
});
