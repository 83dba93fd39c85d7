/**
 * The analysis application on the real embedded bus: the live view state
 * from data and alerts, invalid messages skipped, stats, the periodic
 * summary, and `send` through a real broker to real gRPC streams.
 */
import assert from "node:assert/strict";
import { openBus } from "../services/bus/mod.ts";
import {
  type Analysis,
  renderView,
  startAnalysis,
  startLiveDisplay,
} from "../services/analysis/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { COLOR, PLAIN, stripAnsi } from "../services/console/format.ts";
import { summaryLine } from "../services/console/commands.ts";
import {
  answerCommands,
  embeddedPath,
  tempDir,
  TestAgent,
  waitUntil,
  within,
} from "./broker_support.ts";
import { withBroker } from "./broker_fixture.ts";
import type { Bus } from "../services/bus/types.ts";

async function withAnalysis(fn: (analysis: Analysis, bus: Bus) => Promise<void>) {
  const dir = await tempDir();
  const bus = await openBus({ backend: "embedded", brokers: [], path: embeddedPath(dir) });
  const analysis = await startAnalysis({ bus, group: "analysis-test" });
  try {
    await fn(analysis, bus);
  } finally {
    await analysis.stop();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const data = (agent: string, timestamp: number, metrics: Record<string, number>) => ({
  key: agent,
  value: JSON.stringify({ agent_id: agent, hostname: `${agent}.host`, timestamp, metrics }),
});

Deno.test("analysis: latest values per agent, alerts firing then resolved, invalid messages skipped", () =>
  withAnalysis(async (analysis, bus) => {
    const now = Date.now() / 1000;
    await bus.publish(DEFAULT_TOPICS.data, [
      data("web-1", now - 10, { cpu: 10, memory: 50 }),
      data("web-1", now, { cpu: 95.5, memory: 51, "disk read": 2048 }),
      data("db-1", now, { cpu: 3 }),
      { key: "x", value: "{broken" },
      {
        key: "x",
        value: JSON.stringify({ agent_id: "x", timestamp: now, metrics: { cpu: "high" } }),
      },
    ]);
    await bus.publish(DEFAULT_TOPICS.alerts, [{
      key: "web-1",
      value: JSON.stringify({
        agent_id: "web-1",
        metric: "cpu",
        value: 95.5,
        threshold: 80,
        state: "firing",
        timestamp: now,
      }),
    }]);
    await waitUntil(
      () => analysis.stats().consumed.alerts === 1 && analysis.stats().invalid === 2,
      10_000,
      "messages consumed",
    );
    const agents = analysis.agents();
    assert.deepEqual(agents.map((a) => a.agent_id), ["db-1", "web-1"]);
    const web = agents[1];
    assert.deepEqual(web.metrics, { cpu: 95.5, memory: 51, "disk read": 2048 });
    assert.equal(web.samples, 2);
    assert.deepEqual(Object.keys(web.firing), ["cpu"]);
    const stats = analysis.stats();
    assert.equal(stats.consumed.data, 3);
    assert.equal(stats.alerts_firing, 1);
    assert.equal(stats.per_agent["web-1"].samples, 2);

    const plain = renderView(analysis.agents(), Date.now(), PLAIN, 200);
    assert.match(plain[0], /2 agents, 1 alert firing/);
    assert.match(
      plain[2],
      /^web-1 {2}cpu 95\.5% {2}mem 51% {2}rd 2\.0 KiB\/s {2}ALERT cpu 95\.5% > 80%/,
    );
    const colored = renderView(analysis.agents(), Date.now(), COLOR, 200);
    assert.ok(colored[2].includes("\u001b[31mALERT cpu"), "the alert is red");
    assert.equal(stripAnsi(colored[2]), plain[2]);

    await bus.publish(DEFAULT_TOPICS.alerts, [{
      key: "web-1",
      value: JSON.stringify({
        agent_id: "web-1",
        metric: "cpu",
        value: 20,
        threshold: 80,
        state: "resolved",
        timestamp: now + 5,
      }),
    }]);
    await waitUntil(() => analysis.stats().alerts_firing === 0, 10_000, "the alert resolved");
  }));

Deno.test("analysis: a metric the duplicate filter left out keeps its value; past the keep-alive window it is shown stale", () =>
  withAnalysis(async (analysis, bus) => {
    const now = Date.now() / 1000;
    const filtered = (agent: string, timestamp: number, metrics: Record<string, number>) => ({
      key: agent,
      value: JSON.stringify({
        agent_id: agent,
        hostname: `${agent}.host`,
        timestamp,
        metrics,
        interval: 1,
        keepalive: 20,
      }),
    });
    await bus.publish(DEFAULT_TOPICS.data, [
      filtered("dup-1", now - 3, { cpu: 100, memory: 40 }),
      // cpu unchanged: the filter left it out.
      filtered("dup-1", now - 2, { memory: 41 }),
      filtered("dup-1", now - 1, { memory: 42 }),
      filtered("old-1", now - 600, { cpu: 5 }),
      filtered("half-1", now - 100, { cpu: 7 }),
      filtered("half-1", now, { memory: 1 }),
    ]);
    await waitUntil(() => analysis.stats().consumed.data === 6, 10_000, "messages consumed");
    const [dup, half, old] = analysis.agents();
    assert.deepEqual(dup.metrics, { cpu: 100, memory: 42 });
    assert.deepEqual(dup.stale_metrics, {});
    assert.deepEqual(half.metrics, { memory: 1 });
    assert.deepEqual(half.stale_metrics, { cpu: 7 });
    assert.deepEqual(old.metrics, {});
    assert.deepEqual(old.stale_metrics, { cpu: 5 });
    const plain = renderView(analysis.agents(), Date.now(), PLAIN, 200);
    assert.match(plain[1], /^dup-1 {2}cpu 100% {2}mem 42% {2}\ds ago$/);
    assert.match(plain[2], /^half-1 {2}mem 1% {2}stale: cpu {2}\ds ago$/);
    assert.match(plain[3], /^old-1 {2}stale, last sample 10m ago$/);
  }));

Deno.test("analysis: off a terminal the view is a periodic compact summary, one line per agent", () =>
  withAnalysis(async (analysis, bus) => {
    const lines: string[] = [];
    const display = startLiveDisplay({
      analysis,
      mode: "summary",
      write: (l) => lines.push(l),
      summaryMs: 60_000,
    });
    try {
      const now = Date.now() / 1000;
      await bus.publish(DEFAULT_TOPICS.data, [
        data("a-1", now, {
          cpu: 1,
          memory: 2,
          "disk read": 0,
          "disk write": 0,
          "net in": 0,
          "net out": 0,
        }),
        data("a-2", now, { cpu: 3 }),
        data("a-1", now + 1, {
          cpu: 4,
          memory: 2,
          "disk read": 0,
          "disk write": 0,
          "net in": 0,
          "net out": 0,
        }),
      ]);
      await waitUntil(() => analysis.stats().consumed.data === 3, 10_000, "data consumed");
      display.refresh();
      assert.equal(lines.length, 3);
      assert.match(
        lines[0],
        /^summary: 2 agent\(s\), 3 sample\(s\) in the last 60 s, 0 alert\(s\) firing$/,
      );
      assert.match(
        lines[1],
        /^ {2}a-1 {2}cpu 4% {2}mem 2% {2}rd 0 B\/s {2}wr 0 B\/s {2}in 0 B\/s {2}out 0 B\/s/,
      );
      assert.match(lines[2], /^ {2}a-2 {2}cpu 3%/);
      // Nothing new: no summary.
      display.refresh();
      assert.equal(lines.length, 3);
    } finally {
      display.stop();
    }
  }));

Deno.test("analysis: send reaches agents through the broker and summarises who answered", () =>
  withBroker({ commandTimeoutMs: 500 }, async ({ broker, bus }) => {
    const analysis = await startAnalysis({
      bus,
      group: "analysis-send-test",
      commandTimeoutMs: 10_000,
    });
    const a = await TestAgent.connect(broker.address, "an-1");
    const b = await TestAgent.connect(broker.address, "an-2");
    answerCommands(a, (c) => ({ status: "ok", output: { type: c.command_type, args: c.args } }));
    try {
      // Both agents send data, so analysis expects both to answer `all`.
      a.batch(1, [{ timestamp: Date.now() / 1000, metrics: { cpu: 1 } }]);
      b.batch(1, [{ timestamp: Date.now() / 1000, metrics: { cpu: 2 } }]);
      await waitUntil(() => analysis.agents().length === 2, 10_000, "data of both agents");
      const seen: string[] = [];
      const all = await within(
        analysis.send("all", "status", undefined, { onResult: (r) => seen.push(r.agent_id) }),
        15_000,
        "send all",
      );
      assert.deepEqual(all.expected, ["an-1", "an-2"]);
      assert.deepEqual(all.ok, ["an-1"]);
      assert.deepEqual(all.errors, ["an-2"]);
      assert.deepEqual(all.missing, []);
      assert.equal(all.timed_out, false);
      assert.deepEqual(seen.sort(), ["an-1", "an-2"]);
      const one = await analysis.send("an-1", "status", { deep: true });
      assert.deepEqual(one.results[0].output, { type: "status", args: { deep: true } });
      const ghost = await analysis.send("ghost", "status");
      assert.deepEqual(ghost.errors, ["ghost"]);
      assert.equal(ghost.results[0].output, "agent ghost is not connected");
      assert.equal(analysis.stats().commands_sent, 3);
      await assert.rejects(analysis.send("all", "no way"), /command_type: expected/);
    } finally {
      a.close();
      b.close();
      await analysis.stop();
    }
  }));

Deno.test("analysis: send all waits until its timeout for an agent that went quiet and names it as not answering", () =>
  withBroker({ commandTimeoutMs: 500 }, async ({ broker, bus }) => {
    const analysis = await startAnalysis({ bus, group: "analysis-timeout-test" });
    const live = await TestAgent.connect(broker.address, "to-1");
    const gone = await TestAgent.connect(broker.address, "to-2");
    answerCommands(live, (c) => ({ status: "ok", output: { type: c.command_type } }));
    try {
      // Both agents are heard from; then to-2 disconnects, so the broker sends `all` to to-1 only.
      live.batch(1, [{ timestamp: Date.now() / 1000, metrics: { cpu: 1 } }]);
      gone.batch(1, [{ timestamp: Date.now() / 1000, metrics: { cpu: 2 } }]);
      await waitUntil(() => analysis.agents().length === 2, 10_000, "data of both agents");
      gone.close();
      await waitUntil(() => broker.agents().length === 1, 10_000, "to-2 to disconnect");
      const summary = await within(
        analysis.send("all", "status", undefined, { timeoutMs: 1500 }),
        15_000,
        "send all",
      );
      assert.deepEqual(summary.expected, ["to-1", "to-2"]);
      assert.deepEqual(summary.ok, ["to-1"]);
      assert.deepEqual(summary.errors, []);
      assert.deepEqual(summary.missing, ["to-2"]);
      assert.equal(summary.timed_out, true);
      assert.equal(
        summaryLine(summary, PLAIN),
        "1 answered; ok: to-1; no answer: to-2; (wait ended by the timeout)",
      );
    } finally {
      live.close();
      gone.close();
      await analysis.stop();
    }
  }));

Deno.test("analysis: send all before any data returns once the connected agents answered, not at the timeout", () =>
  withBroker({ commandTimeoutMs: 500 }, async ({ broker, bus }) => {
    const analysis = await startAnalysis({
      bus,
      group: "analysis-settle-test",
      commandTimeoutMs: 20_000,
    });
    const a = await TestAgent.connect(broker.address, "st-1");
    const b = await TestAgent.connect(broker.address, "st-2");
    answerCommands(a, (c) => ({ status: "ok", output: { type: c.command_type } }));
    answerCommands(b, (c) => ({ status: "ok", output: { type: c.command_type } }));
    try {
      // No data yet: the analysis knows no agent, as right after `deno task analysis` starts.
      assert.equal(analysis.agents().length, 0);
      const started = Date.now();
      const summary = await within(analysis.send("all", "ping"), 15_000, "send all");
      assert.equal(summary.timed_out, false, "ended by the settle time, not the 20 s timeout");
      assert.ok(Date.now() - started < 15_000);
      assert.deepEqual(summary.expected, []);
      assert.deepEqual(summary.ok.sort(), ["st-1", "st-2"]);
    } finally {
      a.close();
      b.close();
      await analysis.stop();
    }
  }));

Deno.test("analysis: send all with the agents known to be up (heartbeats) returns once they answered, not at the timeout", () =>
  withBroker({ commandTimeoutMs: 500 }, async ({ broker, bus }) => {
    let up: string[] | undefined;
    const analysis = await startAnalysis({
      bus,
      group: "analysis-connected-test",
      commandTimeoutMs: 20_000,
      connectedAgents: () => up,
    });
    const live = await TestAgent.connect(broker.address, "cn-1");
    const gone = await TestAgent.connect(broker.address, "cn-2");
    answerCommands(live, (c) => ({ status: "ok", output: { type: c.command_type } }));
    try {
      // Both were heard from; then cn-2 went away (its heartbeat is gone): only cn-1 is up.
      live.batch(1, [{ timestamp: Date.now() / 1000, metrics: { cpu: 1 } }]);
      gone.batch(1, [{ timestamp: Date.now() / 1000, metrics: { cpu: 2 } }]);
      await waitUntil(() => analysis.agents().length === 2, 10_000, "data of both agents");
      gone.close();
      await waitUntil(() => broker.agents().length === 1, 10_000, "cn-2 to disconnect");
      up = ["cn-1"];
      const summary = await within(analysis.send("all", "ping"), 15_000, "send all");
      assert.deepEqual(summary.expected, ["cn-1"]);
      assert.deepEqual(summary.ok, ["cn-1"]);
      assert.deepEqual(summary.missing, []);
      assert.equal(summary.timed_out, false);
    } finally {
      live.close();
      gone.close();
      await analysis.stop();
    }
  }));
