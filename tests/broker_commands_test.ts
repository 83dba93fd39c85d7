/**
 * Broker command routing over real gRPC and the real embedded bus: to one
 * agent, to all, to an agent that is not connected, unanswered commands,
 * invalid commands, and `send` (library and admin API).
 */
import assert from "node:assert/strict";
import { DEFAULT_TOPICS, type ResultMessage } from "../services/common/messages.ts";
import type { SendEvent } from "../services/broker/mod.ts";
import { answerCommands, collect, TestAgent, within } from "./broker_support.ts";
import { withBroker } from "./broker_fixture.ts";

/** A `status` command message for the commands topic, keyed by its target. */
function statusCommand(commandId: string, target: string) {
  return {
    key: target,
    value: JSON.stringify({ command_id: commandId, target, command_type: "status", timestamp: 1 }),
  };
}

const statusAnswer = (agentId: string) => (c: { command_type: string; args: unknown }) => ({
  status: "ok" as const,
  output: { agent: agentId, type: c.command_type, args: c.args },
});

Deno.test("broker commands: routed to the target agent; its result is published with parsed output", () =>
  withBroker({}, async ({ broker, bus }) => {
    const results = await collect(bus, DEFAULT_TOPICS.results);
    const a = await TestAgent.connect(broker.address, "cmd-a");
    const b = await TestAgent.connect(broker.address, "cmd-b");
    answerCommands(a, statusAnswer("cmd-a"));
    answerCommands(b, statusAnswer("cmd-b"));
    try {
      await bus.publish(DEFAULT_TOPICS.commands, [{
        key: "cmd-a",
        value: JSON.stringify({
          command_id: "test1",
          target: "cmd-a",
          command_type: "status",
          timestamp: 1234567890,
          args: { verbose: true },
        }),
      }]);
      const [result] = await results.waitFor<ResultMessage>((v) => v.length >= 1, 10_000, "result");
      assert.equal(result.command_id, "test1");
      assert.equal(result.agent_id, "cmd-a");
      assert.equal(result.status, "ok");
      assert.deepEqual(result.output, { agent: "cmd-a", type: "status", args: { verbose: true } });
      assert.equal(typeof result.timestamp, "number");
      assert.equal(results.messages[0].key, "cmd-a");
      const wire = a.received.find((m) => m.command)?.command;
      assert.equal(wire?.command_type, "status");
      assert.deepEqual(JSON.parse(wire?.args_json ?? ""), { verbose: true });
      assert.equal(b.received.some((m) => m.command), false);
    } finally {
      a.close();
      b.close();
      await results.close();
    }
  }));

Deno.test("broker commands: target all reaches every connected agent, one result each", () =>
  withBroker({}, async ({ broker, bus }) => {
    const results = await collect(bus, DEFAULT_TOPICS.results);
    const agents = await Promise.all(
      ["all-1", "all-2", "all-3"].map((id) => TestAgent.connect(broker.address, id)),
    );
    agents.forEach((agent, i) => answerCommands(agent, statusAnswer(`all-${i + 1}`)));
    try {
      await bus.publish(DEFAULT_TOPICS.commands, [statusCommand("c-all", "all")]);
      const values = await results.waitFor<ResultMessage>(
        (v) => v.length >= 3,
        10_000,
        "three results",
      );
      assert.deepEqual(values.map((r) => r.agent_id).sort(), ["all-1", "all-2", "all-3"]);
      assert.ok(values.every((r) => r.command_id === "c-all" && r.status === "ok"));
    } finally {
      for (const agent of agents) agent.close();
      await results.close();
    }
  }));

Deno.test("broker commands: a target that is not connected gets an error result, never silence", () =>
  withBroker({}, async ({ bus }) => {
    const results = await collect(bus, DEFAULT_TOPICS.results);
    try {
      await bus.publish(DEFAULT_TOPICS.commands, [
        statusCommand("c-ghost", "ghost"),
        statusCommand("c-nobody", "all"),
      ]);
      const values = await results.waitFor<ResultMessage>(
        (v) => v.length >= 2,
        10_000,
        "two error results",
      );
      assert.deepEqual(values[0], {
        ...values[0],
        command_id: "c-ghost",
        agent_id: "ghost",
        status: "error",
        output: "agent ghost is not connected",
      });
      assert.deepEqual(values[1], {
        ...values[1],
        command_id: "c-nobody",
        agent_id: "all",
        status: "error",
        output: "no agents are connected",
      });
    } finally {
      await results.close();
    }
  }));

Deno.test("broker commands: an agent that does not answer in time gets an error result", () =>
  withBroker({ commandTimeoutMs: 300 }, async ({ broker, bus }) => {
    const results = await collect(bus, DEFAULT_TOPICS.results);
    const mute = await TestAgent.connect(broker.address, "mute-1");
    try {
      await bus.publish(DEFAULT_TOPICS.commands, [statusCommand("c-mute", "mute-1")]);
      const [result] = await results.waitFor<ResultMessage>(
        (v) => v.length >= 1,
        10_000,
        "timeout result",
      );
      assert.equal(result.status, "error");
      assert.equal(result.agent_id, "mute-1");
      assert.match(String(result.output), /agent mute-1 did not answer within 0\.3 s/);
      // A late answer is dropped, not published as a second result.
      mute.stream.send({
        result: { command_id: "c-mute", status: "ok", output_json: '"late"', timestamp: 2 },
      });
      await bus.publish(DEFAULT_TOPICS.commands, [statusCommand("c-after", "ghost")]);
      const values = await results.waitFor<ResultMessage>(
        (v) => v.length >= 2,
        10_000,
        "next result",
      );
      assert.deepEqual(values.map((r) => r.command_id), ["c-mute", "c-after"]);
    } finally {
      mute.close();
      await results.close();
    }
  }));

Deno.test("broker commands: invalid commands get an error result when they carry an id; others are logged", () =>
  withBroker({}, async ({ bus }) => {
    const results = await collect(bus, DEFAULT_TOPICS.results);
    try {
      await bus.publish(DEFAULT_TOPICS.commands, [
        { key: "x", value: "not json at all" },
        { key: "x", value: JSON.stringify({ target: "all", command_type: "status" }) },
        {
          key: "x",
          value: JSON.stringify({
            command_id: "bad-type",
            target: "web-1",
            command_type: "rm -rf /",
          }),
        },
        {
          key: "x",
          value: JSON.stringify({
            command_id: "bad-args",
            target: "web-1",
            command_type: "status",
            args: [1],
          }),
        },
        {
          key: "x",
          value: JSON.stringify({
            command_id: "bad-target",
            target: "no spaces",
            command_type: "status",
          }),
        },
      ]);
      const values = await results.waitFor<ResultMessage>(
        (v) => v.length >= 3,
        10_000,
        "three error results",
      );
      assert.deepEqual(values.map((r) => [r.command_id, r.agent_id, r.status]), [
        ["bad-type", "web-1", "error"],
        ["bad-args", "web-1", "error"],
        ["bad-target", "x", "error"],
      ]);
      assert.match(
        String(values[0].output),
        /invalid command: command_type: expected a command name/,
      );
      assert.match(String(values[1].output), /args: expected a JSON object/);
      assert.match(String(values[2].output), /target: agent id "no spaces" is not valid/);
    } finally {
      await results.close();
    }
  }));

Deno.test("broker send: publishes a seed-format command and returns every result with a summary", () =>
  withBroker({ commandTimeoutMs: 500 }, async ({ broker, bus }) => {
    const commands = await collect(bus, DEFAULT_TOPICS.commands);
    const a = await TestAgent.connect(broker.address, "send-a");
    const mute = await TestAgent.connect(broker.address, "send-mute");
    answerCommands(a, statusAnswer("send-a"));
    try {
      const events: SendEvent[] = [];
      const summary = await within(
        broker.send({ target: "all", command_type: "status" }, (e) => events.push(e)),
        10_000,
        "send to finish",
      );
      assert.deepEqual(summary.dispatched?.sort(), ["send-a", "send-mute"]);
      assert.deepEqual(summary.ok, ["send-a"]);
      assert.deepEqual(summary.errors, ["send-mute"]);
      assert.deepEqual(summary.missing, []);
      assert.equal(summary.timed_out, false);
      assert.deepEqual(events.map((e) => e.event), [
        "published",
        "dispatched",
        "result",
        "result",
        "summary",
      ]);
      const [published] = await commands.waitFor(
        (v) => v.length >= 1,
        5000,
        "the published command",
      );
      assert.deepEqual(Object.keys(published).sort(), [
        "command_id",
        "command_type",
        "target",
        "timestamp",
      ]);
      assert.equal(published.target, "all");

      const one = await broker.send({ target: "send-a", command_type: "status", args: { x: 1 } });
      assert.deepEqual(one.ok, ["send-a"]);
      assert.deepEqual((one.results[0].output as { args: unknown }).args, { x: 1 });

      const ghost = await broker.send({ target: "ghost-9", command_type: "status" });
      assert.deepEqual(ghost.errors, ["ghost-9"]);
      assert.equal(ghost.results[0].output, "agent ghost-9 is not connected");
      await assert.rejects(
        broker.send({ target: "all", command_type: "bad type" }),
        /command_type: expected/,
      );
    } finally {
      a.close();
      mute.close();
      await commands.close();
    }
  }));

Deno.test("broker commands: stopping the broker gives waiting commands an error result and ends sends in progress", () =>
  withBroker({ commandTimeoutMs: 60_000 }, async ({ broker, bus, adminUrl }) => {
    const results = await collect(bus, DEFAULT_TOPICS.results);
    const mute = await TestAgent.connect(broker.address, "stop-mute");
    try {
      const response = await fetch(`${adminUrl}/send`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ target: "stop-mute", command_type: "status" }),
      });
      const body = response.text();
      await mute.waitFor((m) => m.command !== undefined, "the command on the agent's stream");
      await within(broker.stop("maintenance"), 10_000, "the broker to stop");
      const lines = (await within(body, 10_000, "the send answer")).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      const summary = lines[lines.length - 1].summary;
      assert.deepEqual(summary.errors, ["stop-mute"]);
      assert.equal(summary.timed_out, false);
      const [result] = await results.waitFor<ResultMessage>(
        (v) => v.length >= 1,
        10_000,
        "error result",
      );
      assert.equal(result.output, "the broker stopped before the agent answered");
    } finally {
      mute.close();
      await results.close();
    }
  }));

Deno.test("broker commands: a slow commands-group join does not hold up start-up; commands waiting in the group are routed once joined", () => {
  let release: (() => void) | undefined;
  return withBroker({
    commandsJoinWaitMs: 100,
    async beforeStart(_store, bus) {
      // The group exists already (a previous broker committed its offsets) ...
      const previous = await bus.subscribe({
        topics: [DEFAULT_TOPICS.commands],
        group: "broker",
        handler() {},
      });
      await previous.close();
      // ... and joining it now is slow (the previous member's session has not expired).
      release = bus.holdSubscribe("broker");
    },
  }, async ({ broker, bus }) => {
    const results = await collect(bus, DEFAULT_TOPICS.results);
    const agent = await TestAgent.connect(broker.address, "join-1");
    answerCommands(agent, () => ({ status: "ok", output: "joined" }));
    try {
      // Streams are served while the group join is pending.
      agent.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      await agent.waitFor((m) => m.ack?.seq === 1, "ack while joining");
      await bus.publish(DEFAULT_TOPICS.commands, [statusCommand("c-join", "join-1")]);
      release!();
      const [result] = await results.waitFor<ResultMessage>(
        (v) => v.length >= 1,
        10_000,
        "the result",
      );
      assert.deepEqual([result.command_id, result.agent_id, result.output], [
        "c-join",
        "join-1",
        "joined",
      ]);
    } finally {
      release?.();
      agent.close();
      await results.close();
    }
  });
});
