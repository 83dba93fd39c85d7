/**
 * The agent against a real etcd (tests/harness/etcd.ts): the seed's
 * configuration put with `etcdctl` exactly as written, live changes and an
 * invalid config put with `etcdctl`, the heartbeat on an etcd lease. The
 * store is opened the agent's way (agentStoreOptions(): the HTTP gateway client).
 */
import assert from "node:assert/strict";
import { startAgent } from "../services/agent/mod.ts";
import { setLogLevel } from "../services/common/log.ts";
import { agentStoreOptions } from "../services/agent/permissions.ts";
import { openStore } from "../services/store/mod.ts";
import { startEtcd } from "./harness/etcd.ts";
import { MiniBroker, output, waitFor } from "./agent_support.ts";

setLogLevel("warn");

const SEED =
  '{"interval": 5, "metrics": ["cpu", "memory", "disk read", "disk write", "net in", "net out"], "plugins": ["plugins.duplicate_filter.DuplicateFilterPlugin", "plugins.threshold_alert.ThresholdAlertPlugin"], "plugin_configs": {"ThresholdAlertPlugin": {"cpu": 80, "memory": 90, "disk": 95}}}';

Deno.test("agent (etcd): the seed's config put with etcdctl works; live changes; invalid config degrades; heartbeat lease", async () => {
  const etcd = await startEtcd();
  const store = await openStore({
    backend: "etcd",
    endpoints: [etcd.endpoint],
    prefix: "/monitor",
    path: "",
  }, agentStoreOptions());
  const broker = await MiniBroker.start();
  let agent;
  try {
    await etcd.etcdctl("put", "/monitor/config/default", SEED);
    agent = await startAgent({ agentId: "etcd-1", store, broker: broker.address });
    // The seed applies as written (interval 5: ask for a sample now instead of waiting).
    const config = output(await broker.command("config"));
    assert.equal(config.source, "default");
    assert.equal(config.interval, 5);
    assert.deepEqual(
      (config.plugins as Array<{ name: string; config: unknown }>).map((p) => [p.name, p.config]),
      [["duplicate_filter", {}], ["threshold_alert", { cpu: 80, memory: 90, disk: 95 }]],
    );
    const collected = output(await broker.command("collect"));
    await waitFor(() => broker.acked.get(collected.seq as number), 10_000, "the collected sample");
    assert.deepEqual(
      Object.keys(broker.acked.get(collected.seq as number)!.samples[0].metrics).sort(),
      ["cpu", "disk read", "disk write", "memory", "net in", "net out"],
    );

    // The heartbeat is on an etcd lease, readable with etcdctl.
    const beat = JSON.parse(
      await waitFor(
        async () =>
          (await etcd.etcdctl("get", "--print-value-only", "/monitor/heartbeat/etcd-1")).trim(),
        10_000,
        "the heartbeat in etcd",
      ),
    );
    assert.equal(beat.agent_id, "etcd-1");
    assert.equal(beat.status, "ok");
    const leaseLine = await etcd.etcdctl("get", "-w", "json", "/monitor/heartbeat/etcd-1");
    assert.ok(Number(JSON.parse(leaseLine).kvs[0].lease) !== 0, "attached to a lease");
    // The seed sets no heartbeat_ttl: the lease has the default TTL of 10 s.
    const leases = (await etcd.etcdctl("lease", "list")).trim().split("\n").slice(1);
    const lives = await Promise.all(
      leases.map((id) => etcd.etcdctl("lease", "timetolive", "--keys", id.trim())),
    );
    const heartbeatLease = lives.find((text) => text.includes("/monitor/heartbeat/etcd-1"));
    assert.ok(heartbeatLease, `the heartbeat's lease among:\n${lives.join("\n")}`);
    assert.match(heartbeatLease, /granted with TTL\(10s\)/);

    // A change with etcdctl to the agent's own key applies at once.
    await etcd.etcdctl(
      "put",
      "/monitor/config/etcd-1",
      '{"interval": 1, "metrics": ["memory"], "plugins": ["logger"]}',
    );
    await waitFor(
      async () => output(await broker.command("config")).interval === 1,
      10_000,
      "interval 1 from etcd",
    );
    const from = broker.acked.size;
    await waitFor(() => broker.acked.size >= from + 2, 10_000, "samples every second");
    assert.deepEqual(Object.keys(broker.samples().at(-1)!.metrics), ["memory"]);

    // An invalid one: refused, the last good stays, the heartbeat says degraded.
    await etcd.etcdctl("put", "/monitor/config/etcd-1", '{"interval": "fast", "metrics": []}');
    const degraded = await waitFor(
      async () => {
        const text = (await etcd.etcdctl(
          "get",
          "--print-value-only",
          "/monitor/heartbeat/etcd-1",
        )).trim();
        const value = text ? JSON.parse(text) : undefined;
        return value?.status === "degraded" ? value : undefined;
      },
      10_000,
      "a degraded heartbeat",
    );
    assert.match(degraded.reasons.join("\n"), /invalid config \/monitor\/config\/etcd-1/);
    assert.equal(output(await broker.command("config")).interval, 1);

    await agent.stop();
    agent = undefined;
    assert.equal(
      (await etcd.etcdctl("get", "--print-value-only", "/monitor/heartbeat/etcd-1")).trim(),
      "",
      "stop revokes the heartbeat lease",
    );
  } finally {
    await agent?.stop();
    await broker.close();
    await store.close();
    await etcd.stop();
  }
});
