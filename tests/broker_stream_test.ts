/**
 * Broker stream handling over real gRPC with the real embedded bus:
 * publishing and acknowledging, validation, duplicate ids, tokens, publish
 * failures and graceful shutdown.
 */
import assert from "node:assert/strict";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { RpcStatus } from "../services/rpc/mod.ts";
import { collect, delay, TestAgent, waitUntil, within } from "./broker_support.ts";
import { withBroker } from "./broker_fixture.ts";

Deno.test("broker: each sample is published with the contract fields, alerts too, then acknowledged", () =>
  withBroker({}, async ({ broker, bus }) => {
    const data = await collect(bus, DEFAULT_TOPICS.data);
    const alerts = await collect(bus, DEFAULT_TOPICS.alerts);
    const agent = await TestAgent.connect(broker.address, "web-1");
    try {
      agent.batch(1, [
        { timestamp: 1700000000.5, metrics: { cpu: 12.5, memory: 40.1, "disk read": 1024 } },
        { timestamp: 1700000005, metrics: { cpu: 13 } },
      ], [{ metric: "cpu", value: 95, threshold: 80, state: "firing", timestamp: 1700000005 }]);
      await agent.waitFor((m) => m.ack?.seq === 1, "ack 1");
      const values = await data.waitFor((v) => v.length >= 2, 10_000, "two data messages");
      assert.deepEqual(values, [
        {
          agent_id: "web-1",
          hostname: "web-1.host",
          timestamp: 1700000000.5,
          metrics: { cpu: 12.5, memory: 40.1, "disk read": 1024 },
        },
        { agent_id: "web-1", hostname: "web-1.host", timestamp: 1700000005, metrics: { cpu: 13 } },
      ]);
      assert.deepEqual(data.messages.map((m) => m.key), ["web-1", "web-1"]);
      const alertValues = await alerts.waitFor((v) => v.length >= 1, 10_000, "the alert");
      assert.deepEqual(alertValues, [{
        agent_id: "web-1",
        metric: "cpu",
        value: 95,
        threshold: 80,
        state: "firing",
        timestamp: 1700000005,
      }]);
      const welcome = agent.received.find((m) => m.welcome)?.welcome;
      assert.ok(welcome && welcome.max_batch_samples > 0);
      const stats = broker.stats();
      assert.equal(stats.total.samples, 2);
      assert.equal(stats.total.alerts, 1);
      assert.equal(stats.agents["web-1"].batches, 1);
      assert.equal(broker.agents()[0].agent_id, "web-1");
      // Samples from 2023 are long past the keep-alive window: no current values.
      assert.deepEqual(broker.agents()[0].latest, {});
    } finally {
      agent.close();
      await data.close();
      await alerts.close();
    }
  }));

Deno.test("broker: no ack while the bus holds the publish; the ack follows acceptance", () =>
  withBroker({}, async ({ broker, bus }) => {
    const agent = await TestAgent.connect(broker.address, "slow-1");
    const data = await collect(bus, DEFAULT_TOPICS.data);
    try {
      const release = bus.hold();
      agent.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      await waitUntil(
        () => bus.attempts.some((a) => a.topic === DEFAULT_TOPICS.data),
        5000,
        "publish attempt",
      );
      // The broker is waiting for the bus: give a wrong ack every chance to show up.
      await delay(300);
      assert.deepEqual(agent.acks(), []);
      assert.equal(data.messages.length, 0);
      release();
      await agent.waitFor((m) => m.ack?.seq === 1, "ack after release");
      await data.waitFor((v) => v.length === 1, 10_000, "the published sample");
    } finally {
      agent.close();
      await data.close();
    }
  }));

Deno.test("broker: a failed publish is not acknowledged; the stream ends UNAVAILABLE and the re-sent batch is acknowledged", () =>
  withBroker({}, async ({ broker, bus }) => {
    const agent = await TestAgent.connect(broker.address, "flaky-1");
    let again: TestAgent | undefined;
    try {
      bus.failNext(1);
      agent.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      const error = await agent.closed();
      assert.equal(error?.code, RpcStatus.UNAVAILABLE);
      assert.match(error?.details ?? "", /could not publish batch 1/);
      assert.deepEqual(agent.acks(), []);
      assert.equal(broker.stats().total.publish_failures, 1);
      again = await TestAgent.connect(broker.address, "flaky-1");
      again.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      await again.waitFor((m) => m.ack?.seq === 1, "ack of the re-sent batch");
    } finally {
      agent.close();
      again?.close();
    }
  }));

Deno.test("broker: malformed messages end only that stream with INVALID_ARGUMENT naming the field", () =>
  withBroker({ limits: { maxBatchSamples: 3 } }, async ({ broker }) => {
    const good = await TestAgent.connect(broker.address, "good-1");
    const cases: Array<
      { name: string; act: (a: TestAgent) => void; field: RegExp; hello?: boolean }
    > = [
      {
        name: "batch before hello",
        hello: false,
        act: (a) => a.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]),
        field: /expected hello as the first message/,
      },
      {
        name: "bad agent id",
        hello: false,
        act: (a) =>
          a.stream.send({ hello: { agent_id: "bad id!", hostname: "h", version: "1", token: "" } }),
        field: /hello\.agent_id/,
      },
      {
        name: "NaN metric value",
        act: (a) => a.batch(1, [{ timestamp: 1, metrics: { cpu: NaN } }]),
        field: /batch\.samples\[0\]\.metrics\["cpu"\]: expected a finite number/,
      },
      {
        name: "negative raw counter",
        act: (a) =>
          a.batch(1, [{ timestamp: 1, metrics: { cpu: 1 }, counters: { "disk read": -5 } }]),
        field: /batch\.samples\[0\]\.counters\["disk read"\]: expected a finite number >= 0/,
      },
      {
        name: "negative keep-alive",
        act: (a) => a.batch(1, [{ timestamp: 1, metrics: { cpu: 1 }, keepalive: -1 }]),
        field: /batch\.samples\[0\]\.keepalive: expected seconds/,
      },
      {
        name: "infinite timestamp",
        act: (a) => a.batch(1, [{ timestamp: Infinity, metrics: { cpu: 1 } }]),
        field: /batch\.samples\[0\]\.timestamp/,
      },
      {
        name: "too many samples",
        act: (a) =>
          a.batch(1, Array.from({ length: 4 }, (_, i) => ({ timestamp: i, metrics: { cpu: i } }))),
        field: /batch\.samples: expected at most 3 samples per batch, found 4/,
      },
      {
        name: "overlong metric name",
        act: (a) => a.batch(1, [{ timestamp: 1, metrics: { ["x".repeat(200)]: 1 } }]),
        field: /batch\.samples\[0\]\.metrics: expected a metric name of at most 128 characters/,
      },
      {
        name: "bad alert state",
        act: (a) =>
          a.batch(1, [], [{
            metric: "cpu",
            value: 1,
            threshold: 2,
            state: "burning",
            timestamp: 1,
          }]),
        field: /batch\.alerts\[0\]\.state: expected "firing" or "resolved"/,
      },
      {
        name: "second hello",
        act: (a) =>
          a.stream.send({ hello: { agent_id: "x-1", hostname: "h", version: "1", token: "" } }),
        field: /hello: expected only once per stream/,
      },
      {
        name: "result with output that is not JSON",
        act: (a) =>
          a.stream.send({
            result: { command_id: "c", status: "ok", output_json: "{nope", timestamp: 1 },
          }),
        field: /result\.output_json: expected JSON text/,
      },
    ];
    try {
      let seq = 0;
      for (const c of cases) {
        const bad = c.hello === false
          ? new TestAgent(broker.address)
          : await TestAgent.connect(broker.address, `bad-${cases.indexOf(c)}`);
        try {
          if (c.hello === false) await bad.stream.ready();
          c.act(bad);
          const error = await bad.closed();
          assert.equal(error?.code, RpcStatus.INVALID_ARGUMENT, c.name);
          assert.match(error?.details ?? "", c.field, c.name);
        } finally {
          bad.close();
        }
        // The other agent's stream carries on.
        seq++;
        good.batch(seq, [{ timestamp: seq, metrics: { cpu: seq } }]);
        await good.waitFor((m) => m.ack?.seq === seq, `good agent's ack ${seq} after ${c.name}`);
      }
      assert.equal(good.ended, false);
      assert.ok(broker.stats().total.invalid_messages >= cases.length - 1);
    } finally {
      good.close();
    }
  }));

Deno.test("broker: an oversized message gets RESOURCE_EXHAUSTED and other agents continue", () =>
  withBroker({ maxMessageBytes: 4096 }, async ({ broker }) => {
    const good = await TestAgent.connect(broker.address, "good-2");
    const big = await TestAgent.connect(broker.address, "big-1", { maxMessageBytes: 1 << 20 });
    try {
      const metrics: Record<string, number> = {};
      for (let i = 0; i < 500; i++) metrics[`metric-${i}`] = i;
      big.batch(1, [{ timestamp: 1, metrics }]);
      const error = await big.closed();
      assert.equal(error?.code, RpcStatus.RESOURCE_EXHAUSTED);
      assert.match(error?.details ?? "", /message larger than max \(\d+ vs\.? 4096\)/);
      good.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      await good.waitFor((m) => m.ack?.seq === 1, "good agent's ack");
    } finally {
      good.close();
      big.close();
    }
  }));

Deno.test("broker: a second connection with the same id wins; the older gets Close with a reason", () =>
  withBroker({}, async ({ broker }) => {
    const older = await TestAgent.connect(broker.address, "dup-1");
    const newer = await TestAgent.connect(broker.address, "dup-1");
    try {
      const close = await older.waitFor((m) => m.close !== undefined, "Close on the older stream");
      assert.match(close.close!.reason, /replaced by a newer connection for agent dup-1/);
      await older.closed();
      newer.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      await newer.waitFor((m) => m.ack?.seq === 1, "ack on the newer stream");
      assert.equal(newer.ended, false);
      const agents = broker.agents();
      assert.equal(agents.length, 1);
      assert.equal(agents[0].agent_id, "dup-1");
    } finally {
      older.close();
      newer.close();
    }
  }));

Deno.test("broker: a batch re-sent on the same stream is acknowledged again without publishing twice", () =>
  withBroker({}, async ({ broker, bus }) => {
    const agent = await TestAgent.connect(broker.address, "dedup-1");
    const data = await collect(bus, DEFAULT_TOPICS.data);
    try {
      agent.batch(5, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      await agent.waitFor((m) => m.ack?.seq === 5, "first ack");
      agent.batch(5, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      agent.batch(6, [{ timestamp: 2, metrics: { cpu: 2 } }]);
      await agent.waitFor((m) => m.ack?.seq === 6, "ack 6");
      assert.deepEqual(agent.acks(), [5, 5, 6]);
      await data.waitFor((v) => v.length === 2, 10_000, "two samples");
      await delay(200);
      assert.equal(data.messages.length, 2);
      assert.equal(broker.stats().total.duplicates, 1);
    } finally {
      agent.close();
      await data.close();
    }
  }));

Deno.test("broker: with a token set, a wrong or missing token is refused UNAUTHENTICATED", () =>
  withBroker({ token: "s3cret" }, async ({ broker }) => {
    const wrong = await TestAgent.connect(broker.address, "tok-1", {
      token: "nope",
      waitWelcome: false,
    });
    const none = await TestAgent.connect(broker.address, "tok-2", { waitWelcome: false });
    const right = await TestAgent.connect(broker.address, "tok-3", { token: "s3cret" });
    try {
      const e1 = await wrong.closed();
      const e2 = await none.closed();
      assert.equal(e1?.code, RpcStatus.UNAUTHENTICATED);
      assert.match(e1?.details ?? "", /hello\.token: the token is not valid/);
      assert.equal(e2?.code, RpcStatus.UNAUTHENTICATED);
      assert.match(e2?.details ?? "", /a token is required/);
      assert.deepEqual(broker.agents().map((a) => a.agent_id), ["tok-3"]);
    } finally {
      wrong.close();
      none.close();
      right.close();
    }
  }));

Deno.test("broker: graceful stop publishes and acknowledges in-flight batches, then sends Close", () =>
  withBroker({}, async ({ broker, bus }) => {
    const agent = await TestAgent.connect(broker.address, "stop-1");
    const data = await collect(bus, DEFAULT_TOPICS.data);
    try {
      const release = bus.hold();
      agent.batch(1, [{ timestamp: 1, metrics: { cpu: 1 } }]);
      await waitUntil(() => bus.attempts.length > 0, 5000, "publish attempt");
      const stopping = broker.stop("maintenance");
      await delay(100);
      assert.deepEqual(agent.acks(), []);
      release();
      await within(stopping, 10_000, "the broker to stop");
      await agent.closed();
      const order = agent.received.filter((m) => m.ack || m.close);
      assert.deepEqual(order, [{ ack: { seq: 1 } }, { close: { reason: "maintenance" } }]);
      await data.waitFor((v) => v.length === 1, 10_000, "the in-flight sample on the bus");
    } finally {
      agent.close();
      await data.close();
    }
  }));

Deno.test("broker: the optional sink appends every published sample as a JSON line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "monitor-sink-" });
  const sinkPath = `${dir}/out/result.txt`;
  try {
    await withBroker({ sinkPath }, async ({ broker }) => {
      const agent = await TestAgent.connect(broker.address, "sink-1");
      try {
        agent.batch(1, [
          { timestamp: 1, metrics: { cpu: 1 } },
          { timestamp: 2, metrics: { cpu: 2, "net in": 5 } },
        ]);
        await agent.waitFor((m) => m.ack?.seq === 1, "ack");
      } finally {
        agent.close();
      }
    });
    const lines = (await Deno.readTextFile(sinkPath)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines, [
      { agent_id: "sink-1", hostname: "sink-1.host", timestamp: 1, metrics: { cpu: 1 } },
      {
        agent_id: "sink-1",
        hostname: "sink-1.host",
        timestamp: 2,
        metrics: { cpu: 2, "net in": 5 },
      },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
