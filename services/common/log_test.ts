import assert from "node:assert/strict";
import {
  formatLogRecord,
  getLogger,
  jsonLine,
  setLogContext,
  setLogFormat,
  setLogSink,
} from "./log.ts";

Deno.test("log: json lines are one object each with time, level, service, agent, message, fields", () => {
  const lines: string[] = [];
  setLogSink((line) => lines.push(line));
  setLogFormat("json");
  setLogContext({ service: "agent", agent: "web-1" });
  try {
    getLogger("agent web-1/pipeline").warn("plugin spike failed\nFORGED", { plugin: "spike" });
    getLogger("bus/kafka").info("up \u2028 \u202e \x1b[2J");
  } finally {
    setLogSink(undefined);
    setLogFormat("text");
    setLogContext({});
  }
  assert.equal(lines.length, 2);
  const first = JSON.parse(lines[0]);
  assert.deepEqual(Object.keys(first), ["time", "level", "service", "agent", "message", "fields"]);
  assert.match(first.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(first.level, "warn");
  assert.equal(first.service, "agent");
  assert.equal(first.agent, "web-1");
  assert.equal(first.message, "plugin spike failed\nFORGED");
  assert.deepEqual(first.fields, { component: "agent web-1/pipeline", plugin: "spike" });
  // No raw line break, separator, bidi override or escape in the line; the value survives.
  // deno-lint-ignore no-control-regex
  for (const line of lines) assert.doesNotMatch(line, /[\n\r\u2028\u202e\x1b]/);
  assert.equal(JSON.parse(lines[1]).message, "up \u2028 \u202e \x1b[2J");
});

Deno.test("log: text lines keep their shape; fields follow the message; json without context", () => {
  const record = { time: 0, level: "info" as const, component: "broker", message: "listening" };
  assert.equal(formatLogRecord(record, "text"), "1970-01-01T00:00:00.000Z INFO  broker: listening");
  assert.equal(
    formatLogRecord({ ...record, fields: { port: 1 } }, "text"),
    '1970-01-01T00:00:00.000Z INFO  broker: listening {"port":1}',
  );
  assert.deepEqual(JSON.parse(formatLogRecord({ ...record, component: "broker/health" }, "json")), {
    time: "1970-01-01T00:00:00.000Z",
    level: "info",
    service: "broker",
    message: "listening",
    fields: { component: "broker/health" },
  });
  assert.equal(jsonLine({ a: "\u2029" }), '{"a":"\\u2029"}');
});
