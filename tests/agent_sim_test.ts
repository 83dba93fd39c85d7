/**
 * The benchmark's agent simulator (bench/agent_sim.ts, a subprocess with its
 * own HTTP/2 client on Deno.connect, bench/h2_call.ts) against real brokers
 * (real gRPC server, embedded bus and store): every agent gets its Welcome,
 * batches are acknowledged and counted (and arrive on the data topic), a
 * command is answered, and an agent refused at a broker's stream ceiling
 * lands on the next broker of its order.
 */
import assert from "node:assert/strict";
import { startAgentSim } from "../bench/sim_client.ts";
import { preferenceOrder } from "../services/agent/broker_choice.ts";
import { startBroker } from "../services/broker/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { setLogLevel } from "../services/common/log.ts";
import { withBroker } from "./broker_fixture.ts";
import { collect } from "./broker_support.ts";

setLogLevel("error");

Deno.test("agent simulator on its own HTTP/2 client: Welcome, acks counted, a command answered, a refusal at the stream ceiling lands on the other broker", () =>
  withBroker({ maxStreams: 1 }, async (a) => {
    // The second broker shares the first one's bus and store, as brokers of one fleet do.
    const b = await startBroker({
      listen: "127.0.0.1:0",
      admin: "127.0.0.1:0",
      bus: a.bus,
      store: await a.openAnotherStore(),
    });
    const sim = startAgentSim();
    const data = await collect(a.bus, DEFAULT_TOPICS.data);
    try {
      const addresses = [a.broker.address, b.address];
      const count = 6;
      // The brokers' ports are random, so which ids prefer A changes from run to run: take the
      // first id prefix whose agents put at least two on A first (some are refused there).
      const idsOf = (prefix: string) => Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
      const prefersA = (id: string) => preferenceOrder(id, addresses)[0] === addresses[0];
      const prefix = Array.from({ length: 100 }, (_, k) => `simtest${k}`)
        .find((p) => idsOf(p).filter(prefersA).length >= 2);
      assert.ok(prefix, `no id prefix puts two of ${count} agents on broker A first`);
      const ids = idsOf(prefix);
      const preferA = ids.filter(prefersA);

      const connected = await sim.request(
        { op: "connect", addresses, count, prefix },
        30_000,
      );
      assert.equal(connected.agents, count);
      assert.equal(connected.failed, 0, "every agent got its Welcome");
      // A carries one stream (broker.max_streams 1): the others that prefer it were refused
      // RESOURCE_EXHAUSTED before their Welcome and moved on to B.
      assert.equal(connected.movedOn, preferA.length - 1);
      assert.equal(a.broker.stats().connected, 1);
      const onB = b.agents().filter((x) => x.broker === b.brokerId).map((x) => x.agent_id);
      assert.equal(onB.length, count - 1, `agents on B: ${onB}`);

      const rate = await sim.request({ op: "rate", ms: 2500, perSecond: 1 }, 60_000);
      assert.ok(Number(rate.sent) >= count * 2, `sent ${rate.sent}`);
      assert.equal(rate.acked, rate.sent, "every batch acknowledged");
      assert.equal(rate.drained, true);
      const simIds = new Set(ids);
      await data.waitFor<{ agent_id: string }>(
        (values) => values.filter((v) => simIds.has(v.agent_id)).length >= Number(rate.sent),
        10_000,
        "every acknowledged sample on the data topic",
      );

      const throughput = await sim.request(
        { op: "throughput", ms: 500, samples: 10, window: 2 },
        60_000,
      );
      assert.ok(Number(throughput.batches) > 0 && throughput.drained === true);
      assert.equal(Number(throughput.samples), Number(throughput.batches) * 10);

      const target = onB[0];
      const summary = await b.send({ target, command_type: "ping" });
      assert.deepEqual(summary.ok, [target], JSON.stringify(summary));
      assert.deepEqual(summary.results[0].output, { pong: true, agent_id: target });
      const stats = await sim.request({ op: "stats" }, 10_000);
      assert.equal(stats.live, count);
      assert.equal(stats.commandsAnswered, 1);
    } finally {
      await sim.close();
      await data.close();
      await b.stop();
    }
  }));
