/**
 * The agent's buffered stream across broker outages: a broker restart
 * mid-stream loses no acknowledged sample and delivers buffered ones in
 * order; the buffer bound drops the oldest batches and counts them.
 *
 * The broker stand-in runs in its own process (tests/mini_broker_process.ts)
 * and is killed, both to stop it mid-stream and to tear it down: a graceful
 * gRPC shutdown sends the agent's connection a GOAWAY, which on Deno 2.9.6
 * can crash the process the agent runs in (nghttp2 assertion, exit 134, or
 * exit 139; denoland/deno#36788), i.e. this test process.
 *
 * The op/resource sanitizers are on: the agent's stream client
 * (services/rpc/client.ts, on node:http2) leaves no timer or connection
 * behind when the broker goes away. Everything the tests open is closed in
 * `finally`.
 */
import assert from "node:assert/strict";
import { startAgent } from "../services/agent/mod.ts";
import { setLogLevel } from "../services/common/log.ts";
import type { Store } from "../services/store/types.ts";
import { embeddedStore, freePort, waitFor } from "./agent_support.ts";
import { MiniBrokerProcess } from "./mini_broker_process.ts";

setLogLevel("warn");

const FAST_BACKOFF = { initialMs: 100, maxMs: 500 };

/**
 * Writes `config` as agent `id`'s configuration in `store`, then starts the
 * agent against `broker` with fast reconnects.
 */
async function startConfiguredAgent(
  store: Store,
  id: string,
  config: Record<string, unknown>,
  broker: string,
) {
  await store.put(`/monitor/config/${id}`, JSON.stringify(config));
  return await startAgent({ agentId: id, store, broker, backoff: FAST_BACKOFF });
}

Deno.test({
  name:
    "agent: broker restart mid-stream loses no acknowledged sample; buffered samples arrive in order",
}, async () => {
  const backend = await embeddedStore();
  const port = freePort();
  const address = `127.0.0.1:${port}`;
  let first: MiniBrokerProcess | undefined = await MiniBrokerProcess.start(address);
  let second: MiniBrokerProcess | undefined;
  let agent;
  try {
    agent = await startConfiguredAgent(backend.store, "rs-1", {
      interval: 1,
      metrics: ["cpu"],
      batch_max_samples: 1,
    }, address);
    await waitFor(() => first!.acked.size >= 2, 15_000, "two acknowledged batches");
    // The broker stops acknowledging (publishing stalls), then dies with a batch unacknowledged.
    await first.holdAcks(true);
    const receivedBefore = first.received.length;
    await waitFor(
      () => first!.received.length > receivedBefore,
      10_000,
      "a batch that will never be acknowledged",
    );
    const unacked = first.received.at(-1)!;
    await first.kill();
    const acknowledgedByFirst = new Map(first.acked);
    first = undefined;
    // While it is down, samples pile up in the buffer.
    await waitFor(
      () => (agent!.status().buffer as { batches: number }).batches >= 3,
      15_000,
      "batches waiting in the buffer",
    );
    const degraded = agent.heartbeat();
    assert.equal(degraded.status, "degraded");
    assert.match(degraded.reasons.join("\n"), /broker unreachable/);

    second = await MiniBrokerProcess.start(address);
    const waiting = (agent.status().buffer as { last_seq: number }).last_seq;
    await waitFor(
      () => second!.acked.has(waiting),
      15_000,
      "the buffered batches at the new broker",
    );

    // The unacknowledged batch was sent again, and everything arrived in sequence order.
    assert.ok(second.acked.has(unacked.seq), "the unacknowledged batch is re-sent");
    const order = second.received.map((b) => b.seq);
    assert.deepEqual(order, [...order].sort((a, b) => a - b), "re-sent in order");
    const delivered = new Map([...acknowledgedByFirst, ...second.acked]);
    const seqs = [...delivered.keys()].sort((a, b) => a - b);
    for (let seq = seqs[0]; seq <= seqs.at(-1)!; seq++) {
      assert.ok(delivered.has(seq), `batch ${seq} reached a broker`);
    }
    const timestamps = seqs.map((seq) => delivered.get(seq)!.samples[0].timestamp);
    assert.deepEqual(timestamps, [...timestamps].sort((a, b) => a - b), "samples in time order");
    assert.equal(new Set(timestamps).size, timestamps.length, "no sample twice");
    const status = agent.status();
    assert.equal((status.buffer as { dropped_batches: number }).dropped_batches, 0);
    assert.equal(second.hellos.length, 1);
  } finally {
    await agent?.stop();
    await first?.kill();
    await second?.kill();
    await backend.cleanup();
  }
});

Deno.test({
  name: "agent: beyond the buffer bound the oldest batches are dropped and counted",
}, async () => {
  const backend = await embeddedStore();
  const address = `127.0.0.1:${freePort()}`;
  let broker: MiniBrokerProcess | undefined;
  let agent;
  try {
    agent = await startConfiguredAgent(backend.store, "of-1", {
      interval: 3600,
      metrics: ["memory"],
      buffer: 3,
      batch_max_samples: 1,
    }, address);
    const taken: number[] = [];
    for (let i = 0; i < 6; i++) taken.push((await agent.collectNow()).collected.timestamp);
    const status = (await agent.command("status")).output as Record<string, unknown>;
    const buffer = status.buffer as Record<string, number>;
    assert.equal(buffer.batches, 3);
    assert.equal(buffer.limit, 3);
    assert.equal(buffer.dropped_batches, 3);
    assert.equal(buffer.dropped_samples, 3);

    broker = await MiniBrokerProcess.start(address);
    await waitFor(() => broker!.acked.size === 3, 15_000, "the three buffered batches");
    assert.deepEqual(
      broker.samples().map((s) => s.timestamp),
      taken.slice(3),
      "the newest three arrive, oldest first",
    );
  } finally {
    await agent?.stop();
    await broker?.kill();
    await backend.cleanup();
  }
});

Deno.test({
  name:
    "agent: batches coalesced while disconnected are split to the broker's announced limit; a batch refused three times is dropped and counted",
}, async () => {
  const backend = await embeddedStore();
  const address = `127.0.0.1:${freePort()}`;
  let broker: MiniBrokerProcess | undefined;
  let agent;
  try {
    agent = await startConfiguredAgent(backend.store, "split-1", {
      interval: 3600,
      metrics: ["memory"],
      batch_max_samples: 5,
    }, address);
    const taken: number[] = [];
    for (let i = 0; i < 5; i++) taken.push((await agent.collectNow()).collected.timestamp);
    assert.equal((agent.status().buffer as { batches: number }).batches, 1, "coalesced");

    // The broker takes at most 2 samples per batch, and refuses the first batch it sees.
    broker = await MiniBrokerProcess.start(address, {
      maxBatchSamples: 2,
      refuseFirstBatch: `batch.samples[0].metrics["memory"]: refused by the test broker`,
    });
    await waitFor(
      () => (agent!.status().buffer as { batches: number }).batches === 0,
      20_000,
      "every batch acknowledged or dropped",
    );
    const buffer = agent.status().buffer as Record<string, number>;
    assert.equal(buffer.dropped_batches, 1, "the refused batch was dropped");
    assert.equal(buffer.dropped_samples, 2);
    for (const batch of broker.received) assert.ok(batch.samples.length <= 2);
    const refused = broker.refused;
    assert.equal(refused.size, 1, "one batch refused");
    assert.equal(broker.received.filter((b) => refused.has(b.seq)).length, 3, "tried 3 times");
    assert.deepEqual(broker.samples().map((s) => s.timestamp), taken.slice(2));
  } finally {
    await agent?.stop();
    await broker?.kill();
    await backend.cleanup();
  }
});
