import assert from "node:assert/strict";
import { PLAIN } from "../console/format.ts";
import { agentLine } from "./view.ts";
import type { AgentState } from "./state.ts";

Deno.test("agentLine: names from the bus are escaped (no ANSI sequence, no line break)", () => {
  const now = Date.now();
  const agent: AgentState = {
    agent_id: "web\x1b[2J",
    hostname: "h",
    timestamp: now / 1000,
    received_at: now,
    metrics: { "cpu": 5, "x\nFORGED": 1 },
    stale_metrics: { "old\x1b]0;t\x07": 2 },
    samples: 3,
    firing: {
      "a\rb": {
        agent_id: "web",
        metric: "a\rb",
        value: 2,
        threshold: 1,
        state: "firing",
        timestamp: now / 1000,
      },
    },
  };
  const line = agentLine(agent, now, PLAIN);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(line, /[\x00-\x1f\x7f]/, line);
  assert.ok(line.startsWith("web\\x1b[2J  cpu 5%"), line);
  assert.match(line, /x\\nFORGED 1/);
  assert.match(line, /stale: old\\x1b\]0;t\\x07/);
  assert.match(line, /ALERT a\\rb /);
});
