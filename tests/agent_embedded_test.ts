/**
 * The agent against the real embedded Store (SQLite) and a real gRPC broker
 * stand-in: data, alerts, heartbeat, commands, live configuration.
 */
import assert from "node:assert/strict";
import { startAgent } from "../services/agent/mod.ts";
import type { HeartbeatValue } from "../services/agent/mod.ts";
import { setLogLevel } from "../services/common/log.ts";
import { embeddedStore, MiniBroker, output, waitFor } from "./agent_support.ts";

setLogLevel("warn");

const FAST = {
  interval: 1,
  metrics: ["cpu", "memory"],
  plugins: [
    { name: "threshold_alert", config: { memory: 0, cpu: 100, consecutive: 1 } },
    "logger",
  ],
  heartbeat_ttl: 3,
};

async function heartbeat(
  store: { get(key: string): Promise<{ value: string } | undefined> },
  id: string,
): Promise<HeartbeatValue | undefined> {
  const kv = await store.get(`/monitor/heartbeat/${id}`);
  return kv ? JSON.parse(kv.value) : undefined;
}

Deno.test("agent (embedded store): samples and alerts reach the broker; heartbeat on a lease; stop revokes it", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  let agent;
  try {
    await backend.store.put("/monitor/config/emb-1", JSON.stringify(FAST));
    agent = await startAgent({
      agentId: "emb-1",
      hostname: "emb-host",
      store: backend.store,
      broker: broker.address,
    });
    await waitFor(() => broker.samples().length >= 2, 15_000, "two samples at the broker");
    const { instance_id, ...hello } = broker.hellos[0];
    assert.deepEqual(hello, {
      agent_id: "emb-1",
      hostname: "emb-host",
      version: "1.0.0",
      token: "",
    });
    // Chosen at the agent's start (one process per agent id).
    assert.match(
      String(instance_id),
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
    for (const sample of broker.samples()) {
      assert.deepEqual(Object.keys(sample.metrics).sort(), ["cpu", "memory"]);
      assert.ok(sample.metrics.memory > 0 && sample.metrics.memory <= 100);
    }
    const seqs = [...broker.acked.keys()];
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "increasing sequence numbers");
    // memory > 0 breaches the threshold 0 at once: exactly one firing alert.
    const alerts = broker.alerts();
    assert.equal(alerts.length, 1, JSON.stringify(alerts));
    assert.equal(alerts[0].metric, "memory");
    assert.equal(alerts[0].state, "firing");
    assert.equal(alerts[0].threshold, 0);

    const beat = await waitFor(
      async () => {
        const b = await heartbeat(backend.store, "emb-1");
        return b?.status === "ok" ? b : undefined;
      },
      10_000,
      "an ok heartbeat",
    );
    assert.equal(beat.agent_id, "emb-1");
    assert.equal(beat.hostname, "emb-host");
    assert.equal(beat.version, "1.0.0");
    assert.deepEqual(beat.reasons, []);
    assert.equal(beat.config_source, "own");
    assert.ok(beat.config_revision > 0);
    assert.deepEqual(beat.plugins, [
      { name: "threshold_alert", state: "active" },
      { name: "logger", state: "active" },
    ]);
    const kv = await backend.store.get("/monitor/heartbeat/emb-1");
    assert.ok(kv?.lease, "the heartbeat is attached to a lease");

    await agent.stop();
    agent = undefined;
    assert.equal(await backend.store.get("/monitor/heartbeat/emb-1"), undefined);
  } finally {
    await agent?.stop();
    await broker.close();
    await backend.cleanup();
  }
});

Deno.test("agent (embedded store): commands status, ping, collect, plugins, reload, config, metrics; unknown and bad args change nothing", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  let agent;
  try {
    await backend.store.put("/monitor/config/default", JSON.stringify({ ...FAST, interval: 60 }));
    agent = await startAgent({ agentId: "cmd-1", store: backend.store, broker: broker.address });

    const ping = await broker.command("ping");
    assert.equal(ping.status, "ok");
    assert.equal(output(ping).pong, true);
    assert.equal(output(ping).agent_id, "cmd-1");

    const collect = await broker.command("collect");
    assert.equal(collect.status, "ok");
    const collected = output(collect) as {
      collected: { metrics: Record<string, number> };
      sent: { timestamp: number };
      seq: number;
      sent_to_broker: boolean;
    };
    assert.deepEqual(Object.keys(collected.collected.metrics).sort(), ["cpu", "memory"]);
    assert.equal(collected.sent_to_broker, true);
    // ... and it is also sent: the batch with that sample arrives.
    await waitFor(() => broker.acked.get(collected.seq), 10_000, "the collected sample");
    assert.equal(broker.acked.get(collected.seq)!.samples[0].timestamp, collected.sent.timestamp);

    const status = output(await broker.command("status"));
    assert.equal(status.agent_id, "cmd-1");
    assert.equal(status.status, "ok");
    assert.deepEqual(status.problems, []);
    const config = status.config as Record<string, unknown>;
    assert.equal(config.source, "default");
    assert.equal(config.key, "/monitor/config/default");
    assert.equal(config.interval, 60);
    assert.ok(typeof status.uptime === "number");
    assert.equal((status.buffer as { limit: number }).limit, 1000);
    assert.equal((status.broker as { state: string }).state, "connected");
    assert.ok((status.last_sample as { collected: unknown }).collected);
    assert.equal((status.plugins as unknown[]).length, 2);

    const plugins = output(await broker.command("plugins")).plugins as Array<{ name: string }>;
    assert.deepEqual(plugins.map((p) => p.name), ["threshold_alert", "logger"]);
    assert.equal(output(await broker.command("config")).interval, 60);
    assert.ok(output(await broker.command("metrics")).last_sample);

    // reload re-reads the store (a put it may not have seen yet is picked up either way)
    await backend.store.put(
      "/monitor/config/cmd-1",
      JSON.stringify({ ...FAST, interval: 30, metrics: ["cpu"] }),
    );
    const reload = await broker.command("reload");
    assert.equal(reload.status, "ok");
    assert.equal(output(reload).key, "/monitor/config/cmd-1");
    assert.equal((output(reload).config as { interval: number }).interval, 30);

    const before = output(await broker.command("config"));
    const unknown = await broker.command("reboot");
    assert.equal(unknown.status, "error");
    assert.match(
      JSON.parse(unknown.output_json),
      /unknown command "reboot": expected one of status, ping/,
    );
    const badArgs = await broker.command("collect", '{"send": "no", "x": 1}');
    assert.equal(badArgs.status, "error");
    assert.match(JSON.parse(badArgs.output_json), /collect: args\.send: expected true or false/);
    const notObject = await broker.command("status", "[1,2]");
    assert.equal(notObject.status, "error");
    assert.match(JSON.parse(notObject.output_json), /status: args: expected a JSON object/);
    const sentBefore = broker.received.length;
    const extraField = await broker.command("ping", '{"loud": true}');
    assert.match(
      JSON.parse(extraField.output_json),
      /args\.loud: unexpected field; ping takes no arguments/,
    );
    assert.deepEqual(output(await broker.command("config")), before, "nothing changed");
    assert.equal(broker.received.length, sentBefore, "nothing was collected or sent");
  } finally {
    await agent?.stop();
    await broker.close();
    await backend.cleanup();
  }
});

Deno.test("agent (embedded store): live config changes; an invalid config keeps the last good one and shows degraded", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  let agent;
  try {
    // No configuration at all: the built-in defaults (the seed's) apply.
    agent = await startAgent({ agentId: "live-1", store: backend.store, broker: broker.address });
    let config = output(await broker.command("config"));
    assert.equal(config.source, "builtin");
    assert.equal(config.interval, 5);

    // The agent's own key, applied at once.
    const revision = await backend.store.put(
      "/monitor/config/live-1",
      JSON.stringify({ interval: 1, metrics: ["memory"], plugins: ["logger"] }),
    );
    await waitFor(
      async () => (output(await broker.command("config")).revision === revision),
      10_000,
      "the new configuration",
    );
    const from = broker.received.length;
    await waitFor(() => broker.received.length >= from + 2, 10_000, "samples with the new config");
    const latest = broker.received.at(-1)!.samples[0];
    assert.deepEqual(Object.keys(latest.metrics), ["memory"]);
    assert.deepEqual(
      (output(await broker.command("plugins")).plugins as Array<{ name: string }>).map((p) =>
        p.name
      ),
      ["logger"],
    );

    // An invalid one is refused; the last good one stays; status and heartbeat say why.
    const bad = await backend.store.put(
      "/monitor/config/live-1",
      '{"interval": 0, "metrics": ["cpu", "gpu"], "plugins": ["nope"]}',
    );
    const status = await waitFor(
      async () => {
        const s = output(await broker.command("status"));
        return s.status === "degraded" ? s : undefined;
      },
      10_000,
      "a degraded status",
    );
    const problems = (status.problems as string[]).join("\n");
    assert.match(
      problems,
      new RegExp(`invalid config /monitor/config/live-1 \\(revision ${bad}\\)`),
    );
    assert.match(problems, /interval: expected the collection interval in seconds/);
    config = status.config as Record<string, unknown>;
    assert.equal(config.revision, revision, "the last good configuration stays in force");
    assert.equal(config.interval, 1);
    const problem = config.problem as { issues: string[] };
    assert.ok(problem.issues.some((line) => /unknown metric "gpu"/.test(line)));
    assert.ok(problem.issues.some((line) => /unknown plugin "nope"/.test(line)));
    const beat = await waitFor(
      async () => {
        const b = await heartbeat(backend.store, "live-1");
        return b?.status === "degraded" ? b : undefined;
      },
      10_000,
      "a degraded heartbeat",
    );
    assert.match(beat.reasons.join("\n"), /invalid config/);
    assert.equal(beat.config_revision, revision);
    // Bad JSON too.
    await backend.store.put("/monitor/config/live-1", '{"interval": 1,');
    await waitFor(
      async () =>
        /invalid JSON/.test(
          ((output(await broker.command("status")).problems as string[]) ?? []).join(),
        ),
      10_000,
      "the JSON problem",
    );
    const from2 = broker.received.length;
    await waitFor(() => broker.received.length >= from2 + 1, 10_000, "samples keep coming");

    // Deleting the agent's key falls back to the default key.
    await backend.store.put(
      "/monitor/config/default",
      JSON.stringify({ interval: 1, metrics: ["cpu"] }),
    );
    await backend.store.delete("/monitor/config/live-1");
    const healthy = await waitFor(
      async () => {
        const s = output(await broker.command("status"));
        return s.status === "ok" ? s : undefined;
      },
      10_000,
      "an ok status after the fallback",
    );
    config = healthy.config as Record<string, unknown>;
    assert.equal(config.source, "default");
    assert.deepEqual(config.metrics, ["cpu"]);
    assert.deepEqual(config.plugins, []);
  } finally {
    await agent?.stop();
    await broker.close();
    await backend.cleanup();
  }
});

Deno.test("agent (embedded store): a failing plugin is disabled and shown in the heartbeat; samples keep flowing; reload retries it", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  let agent;
  try {
    // The name must be pinned to be accepted; the test's own loader ignores the pin.
    await backend.store.put("/monitor/plugins/flaky", "{}");
    await backend.store.put(
      "/monitor/config/flaky-1",
      JSON.stringify({
        interval: 1,
        metrics: ["memory"],
        plugins: [{ name: "flaky" }, "logger"],
        plugin_max_failures: 2,
      }),
    );
    agent = await startAgent({
      agentId: "flaky-1",
      store: backend.store,
      broker: broker.address,
      // A plugin of the test's own, handed to the pipeline as a URL plugin would be.
      loadUrlPlugin: (spec) =>
        Promise.resolve({
          name: spec.name,
          version: "0.1.0",
          initialize() {},
          run() {
            throw new Error("flaky on purpose");
          },
          finalize() {},
        }),
    });
    const beat = await waitFor(
      async () => {
        const b = await heartbeat(backend.store, "flaky-1");
        return b?.plugins.some((p) => p.state === "disabled") ? b : undefined;
      },
      15_000,
      "the disabled plugin in the heartbeat",
    );
    assert.equal(beat.status, "degraded");
    assert.deepEqual(beat.plugins, [
      { name: "flaky", state: "disabled" },
      { name: "logger", state: "active" },
    ]);
    assert.match(beat.reasons.join("\n"), /plugin flaky disabled: run\(\) threw: flaky on purpose/);
    const from = broker.acked.size;
    await waitFor(() => broker.acked.size >= from + 1, 10_000, "samples despite the plugin");
    assert.ok(broker.samples().at(-1)!.metrics.memory > 0);
    const reload = output(await broker.command("reload"));
    assert.deepEqual(reload.retried_plugins, ["flaky"]);
    const flaky = (output(await broker.command("plugins")).plugins as Array<
      { name: string; failures: number }
    >)[0];
    assert.equal(flaky.name, "flaky");
  } finally {
    await agent?.stop();
    await broker.close();
    await backend.cleanup();
  }
});

Deno.test("agent (embedded store): a new heartbeat_ttl takes a new lease and the heartbeat stays", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  let agent;
  try {
    await backend.store.put(
      "/monitor/config/ttl-1",
      JSON.stringify({ interval: 60, metrics: ["memory"], heartbeat_ttl: 4 }),
    );
    agent = await startAgent({ agentId: "ttl-1", store: backend.store, broker: broker.address });
    const first = await waitFor(
      () => backend.store.get("/monitor/heartbeat/ttl-1"),
      10_000,
      "the first heartbeat",
    );
    const revision = await backend.store.put(
      "/monitor/config/ttl-1",
      JSON.stringify({ interval: 60, metrics: ["memory"], heartbeat_ttl: 6 }),
    );
    const second = await waitFor(
      async () => {
        const kv = await backend.store.get("/monitor/heartbeat/ttl-1");
        return kv && JSON.parse(kv.value).config_revision === revision && kv.lease !== first.lease
          ? kv
          : undefined;
      },
      10_000,
      "the heartbeat on the new lease",
    );
    assert.ok(second.lease);
    assert.notEqual(second.lease, first.lease);
  } finally {
    await agent?.stop();
    await broker.close();
    await backend.cleanup();
  }
});
