/**
 * One agent id, two processes: a reconnect of the same agent process
 * (same hello.instance_id) replaces its older stream; another process
 * claiming a connected id is refused with ALREADY_EXISTS and a clear message
 * on both sides, and the connected one keeps its stream (nothing flaps).
 * A real broker, real gRPC, real agents on the real embedded store.
 */
import assert from "node:assert/strict";
import { type AgentHandle, startAgent } from "../services/agent/mod.ts";
import { setLogSink } from "../services/common/log.ts";
import { RpcStatus } from "../services/rpc/status.ts";
import { delay, TestAgent, waitUntil } from "./broker_support.ts";
import { withBroker } from "./broker_fixture.ts";

function captureLogs(): { lines: string[]; restore(): void } {
  const lines: string[] = [];
  setLogSink((line) => lines.push(line));
  return { lines, restore: () => setLogSink(undefined) };
}

Deno.test("broker: the same instance reconnecting replaces its stream; another instance with the id is refused", async () => {
  const logs = captureLogs();
  try {
    await withBroker({}, async ({ broker }) => {
      const first = await TestAgent.connect(broker.address, "inst-1", { instanceId: "aaa" });
      const again = await TestAgent.connect(broker.address, "inst-1", { instanceId: "aaa" });
      const others: TestAgent[] = [];
      try {
        const close = await first.waitFor(
          (m) => m.close !== undefined,
          "Close on the older stream",
        );
        assert.match(close.close!.reason, /replaced by a newer connection for agent inst-1/);
        for (let i = 0; i < 2; i++) {
          const other = await TestAgent.connect(broker.address, "inst-1", {
            instanceId: "bbb",
            waitWelcome: false,
          });
          others.push(other);
          const error = await other.closed();
          assert.equal(error?.code, RpcStatus.ALREADY_EXISTS);
          assert.match(
            error!.details,
            /^hello\.agent_id: agent inst-1 is already connected from another process \(127\.0\.0\.1:\d+, host inst-1\.host, since \S+\); give each agent its own id \(--id, or agent\.id in monitor\.yaml\)$/,
          );
          assert.ok(!other.received.some((m) => m.welcome), "no Welcome for the second process");
        }
        // The connected process was not disturbed.
        again.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]);
        await again.waitFor((m) => m.ack?.seq === 1, "ack on the connected stream");
        assert.equal(again.ended, false);
        assert.deepEqual(broker.agents().map((a) => a.agent_id), ["inst-1"]);
        // Said once in the broker's log, however often that process retries.
        const refusals = logs.lines.filter((l) => /WARN .*refused agent inst-1 /.test(l));
        assert.equal(refusals.length, 1, logs.lines.join("\n"));
        assert.match(
          refusals[0],
          /refused agent inst-1 from 127\.0\.0\.1:\d+ \(host inst-1\.host, instance bbb\): agent inst-1 is already connected from another process \(127\.0\.0\.1:\d+, host inst-1\.host, instance aaa, since \S+\); two agents use the same id$/,
        );
      } finally {
        first.close();
        again.close();
        for (const other of others) other.close();
      }
    });
  } finally {
    logs.restore();
  }
});

Deno.test("agents: two agents started with one id do not replace each other; the second says why it waits", async () => {
  const logs = captureLogs();
  const agents: AgentHandle[] = [];
  try {
    await withBroker({}, async ({ broker, store, openAnotherStore }) => {
      try {
        const common = {
          agentId: "twin",
          broker: broker.address,
          backoff: { initialMs: 100, maxMs: 400 },
          failoverSpreadMs: 0,
          applyLogLevel: false,
        };
        const connected = (agent: AgentHandle) =>
          (agent.status().broker as { state: string }).state === "connected";
        agents.push(await startAgent({ ...common, hostname: "first.host", store }));
        await waitUntil(() => connected(agents[0]), 10_000, "the first agent connected");
        agents.push(
          await startAgent({ ...common, hostname: "second.host", store: await openAnotherStore() }),
        );
        await waitUntil(
          () =>
            logs.lines.some((l) =>
              /ERROR .*refused this agent: .*already connected from another process/.test(l)
            ),
          10_000,
          "the second agent's error",
        );
        // Several retries of the second one later: the first still holds its one stream.
        await delay(2000);
        assert.ok(connected(agents[0]), "the first agent stays connected");
        assert.ok(!connected(agents[1]), "the second agent is not connected");
        const connects = logs.lines.filter((l) =>
          /INFO .*broker: agent twin connected from/.test(l)
        );
        assert.equal(connects.length, 1, logs.lines.join("\n"));
        assert.ok(!logs.lines.some((l) => /replac/.test(l)), logs.lines.join("\n"));
        const errors = logs.lines.filter((l) => /ERROR .*twin.*refused this agent/.test(l));
        assert.equal(errors.length, 1, "said once, not at every retry");
        assert.match(
          errors[0],
          /another agent process uses the id twin; this one \(instance [0-9a-f-]{36}\) waits, retrying with backoff/,
        );
        assert.deepEqual(broker.agents().map((a) => a.hostname), ["first.host"]);
        // When the first one stops, the second takes over.
        await agents.shift()!.stop();
        await waitUntil(() => connected(agents[0]), 10_000, "the second agent connected");
      } finally {
        for (const agent of agents) await agent.stop();
      }
    });
  } finally {
    logs.restore();
  }
});
