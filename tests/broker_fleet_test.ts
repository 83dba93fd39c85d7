/**
 * Several brokers as one fleet (real broker subprocesses, real etcd, the
 * Kafka mock, agents over real gRPC): agents spread over the brokers by
 * their id; a command reaches an agent on whichever broker holds it, `all`
 * gets one result per agent; every broker's admin API shows the whole fleet;
 * a broker killed with SIGKILL loses no sample (each agent's are counted on
 * the data topic) and commands keep working; a broker at its stream ceiling
 * refuses RESOURCE_EXHAUSTED and the agent lands on another broker.
 *
 * The agents run in this process (the real agent library: pipeline, buffer,
 * broker link with failover), with the op/resource sanitizers on; everything
 * opened is closed in `finally`. Agents stop before the brokers: a broker's graceful shutdown
 * sends its connections a GOAWAY, which on Deno 2.9.6 can abort the process
 * the agents run in (denoland/deno#36788).
 */
import assert from "node:assert/strict";
import { type AgentHandle as Agent, startAgent } from "../services/agent/mod.ts";
import { preferenceOrder } from "../services/agent/broker_choice.ts";
import { brokerPermissionFlags } from "../services/broker/permissions.ts";
import type { AgentInfo, BrokerStats, HealthEntry } from "../services/broker/mod.ts";
import { openBus } from "../services/bus/mod.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import type { Bus } from "../services/bus/types.ts";
import { setLogLevel } from "../services/common/log.ts";
import { DEFAULT_TOPICS, type ResultMessage } from "../services/common/messages.ts";
import { openStore } from "../services/store/mod.ts";
import { storePermissionFlags } from "../services/store/permissions.ts";
import type { Store, StoreSettings } from "../services/store/types.ts";
import type { BusSettings } from "../services/bus/types.ts";
import { storeKeys } from "../services/store/keys.ts";
import { collect, type Collector, delay, tempDir, TestAgent, waitUntil } from "./broker_support.ts";
import { mergePermissionFlags, ServiceProcess } from "./e2e_support.ts";
import { startEtcd } from "./harness/etcd.ts";
import { freePorts } from "./harness/free_port.ts";
import { startKafkaMock } from "./harness/kafka_mock.ts";
import { requireComponents } from "./harness/provision.ts";

setLogLevel("warn");

const FAST_BACKOFF = { initialMs: 100, maxMs: 1000 };

interface FleetBroker {
  address: string;
  admin: string;
  process: ServiceProcess;
}

interface Fleet {
  brokers: FleetBroker[];
  addresses: string[];
  store: Store;
  bus: Bus;
  storeSettings: StoreSettings;
  startAgent(id: string): Promise<Agent>;
  agents: Map<string, Agent>;
  results: Collector;
}

async function adminGet<T>(broker: FleetBroker, path: string): Promise<T> {
  const response = await fetch(`http://${broker.admin}${path}`);
  assert.equal(response.status, 200, `GET ${path} on ${broker.admin}`);
  return await response.json() as T;
}

/** Agent ids, `perBroker` of them preferring each address (rendezvous order of the agent). */
function idsSpreadOver(addresses: string[], perBroker: number, prefix: string): string[] {
  const chosen = new Map(addresses.map((a) => [a, [] as string[]]));
  for (let i = 0; [...chosen.values()].some((l) => l.length < perBroker); i++) {
    const id = `${prefix}-${i}`;
    const list = chosen.get(preferenceOrder(id, addresses)[0])!;
    if (list.length < perBroker) list.push(id);
  }
  return [...chosen.values()].flat();
}

async function withFleet(
  brokerFlags: string[][],
  fn: (fleet: Fleet) => Promise<void>,
): Promise<void> {
  requireComponents(["etcd", "librdkafka.so.1"]);
  const dir = await tempDir("monitor-fleet-");
  const etcd = await startEtcd();
  const kafka = await startKafkaMock({ brokers: 1 });
  const storeSettings: StoreSettings = {
    backend: "etcd",
    endpoints: [etcd.endpoint],
    prefix: "/monitor",
    path: "",
  };
  const busSettings: BusSettings = {
    backend: "kafka",
    brokers: kafka.bootstrap,
    path: "",
    clientId: "fleet-test",
  };
  const ports = freePorts(brokerFlags.length * 2);
  const brokers: FleetBroker[] = [];
  const agents = new Map<string, Agent>();
  let store: Store | undefined;
  let bus: Bus | undefined;
  let results: Collector | undefined;
  try {
    store = await openStore(storeSettings);
    bus = await openBus(busSettings);
    await bus.ensureTopics(Object.values(DEFAULT_TOPICS));
    await store.put(
      storeKeys().config("default"),
      JSON.stringify({ interval: 1, metrics: ["cpu"], plugins: [], heartbeat_ttl: 5 }),
    );
    for (let i = 0; i < brokerFlags.length; i++) {
      const address = `127.0.0.1:${ports[2 * i]}`;
      const admin = `127.0.0.1:${ports[2 * i + 1]}`;
      const process = new ServiceProcess(`broker ${i}`, [
        "--no-prompt",
        ...mergePermissionFlags(
          brokerPermissionFlags({ stateDir: dir, listen: address, admin }),
          storePermissionFlags(storeSettings),
          busPermissionFlags(busSettings),
        ),
        "services/broker/main.ts",
        "--supervised",
        "--listen",
        address,
        "--admin",
        admin,
        "--command-timeout",
        "5",
        "--state-dir",
        dir,
        "--store-backend",
        "etcd",
        "--store-endpoints",
        etcd.endpoint,
        "--bus-backend",
        "kafka",
        "--bus-brokers",
        kafka.bootstrap.join(","),
        ...brokerFlags[i],
      ]);
      brokers.push({ address, admin, process });
    }
    for (const b of brokers) {
      await b.process.waitForLine(/^monitor:ready$/, 60_000, `${b.process.name} ready`);
    }
    results = await collect(bus, DEFAULT_TOPICS.results);
    const addresses = brokers.map((b) => b.address);
    const openedStore = store;
    await fn({
      brokers,
      addresses,
      store: openedStore,
      bus,
      storeSettings,
      agents,
      results,
      async startAgent(id) {
        const agent = await startAgent({
          agentId: id,
          store: openedStore,
          broker: addresses,
          backoff: FAST_BACKOFF,
          healthyMs: 1000,
          failoverSpreadMs: 500,
          flushMs: 10_000,
        });
        agents.set(id, agent);
        return agent;
      },
    });
  } finally {
    for (const agent of agents.values()) await agent.stop().catch(() => {});
    await results?.close().catch(() => {});
    for (const b of brokers) await b.process.stop().catch(() => {});
    await bus?.close().catch(() => {});
    await store?.close().catch(() => {});
    kafka.stop();
    await etcd.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Waits until every broker's admin API lists `ids` with the broker each is on; returns that map. */
async function fleetView(fleet: Fleet, ids: string[], ms = 30_000): Promise<Map<string, string>> {
  let last = "";
  try {
    return await waitUntil(
      async () => {
        const views = await Promise.all(
          fleet.brokers.map((b) => adminGet<{ agents: AgentInfo[] }>(b, "/agents")),
        );
        const maps = views.map((v) => new Map(v.agents.map((a) => [a.agent_id, a.broker])));
        last = JSON.stringify(views.map((v) => v.agents.map((a) => [a.agent_id, a.broker])));
        const first = maps[0];
        if (ids.some((id) => !first.has(id)) || first.size !== ids.length) return undefined;
        for (const m of maps) {
          if ([...first].some(([id, broker]) => m.get(id) !== broker)) return undefined;
        }
        return first;
      },
      ms,
      "every broker showing the whole fleet",
      { intervalMs: 250 },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last views: ${last}`);
  }
}

/** `POST /send` on one broker's admin API (what the consoles use); returns the summary. */
async function adminSend(
  broker: FleetBroker,
  target: string,
): Promise<{ dispatched: string[]; ok: string[]; errors: string[]; timed_out: boolean }> {
  const response = await fetch(`http://${broker.admin}/send`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ target, command_type: "status", timeout_ms: 20_000 }),
  });
  assert.equal(response.status, 200);
  const lines = (await response.text()).trim().split("\n").map((l) => JSON.parse(l));
  const last = lines[lines.length - 1];
  assert.equal(last.event, "summary");
  return last.summary;
}

function statusCommand(commandId: string, target: string) {
  return {
    key: target,
    value: JSON.stringify({ command_id: commandId, target, command_type: "status", timestamp: 1 }),
  };
}

/** Publishes a status command and waits for `count` results; then a moment more for extras. */
async function command(
  fleet: Fleet,
  commandId: string,
  target: string,
  count: number,
): Promise<ResultMessage[]> {
  await fleet.bus.publish(DEFAULT_TOPICS.commands, [statusCommand(commandId, target)]);
  const mine = (v: ResultMessage[]) => v.filter((r) => r.command_id === commandId);
  await fleet.results.waitFor<ResultMessage>(
    (v) => mine(v).length >= count,
    30_000,
    `${count} result(s) of ${commandId}`,
  );
  await delay(1500);
  return mine(fleet.results.values<ResultMessage>());
}

Deno.test({
  name:
    "broker fleet: agents spread over three brokers by id; commands reach one agent on each broker and all; every broker shows the fleet",
}, () =>
  withFleet([[], [], []], async (fleet) => {
    const ids = idsSpreadOver(fleet.addresses, 2, "fl");
    for (const id of ids) await fleet.startAgent(id);
    const view = await fleetView(fleet, ids);
    const byBroker = new Map<string, string[]>();
    const brokerIds = await Promise.all(
      fleet.brokers.map(async (b) => (await adminGet<BrokerStats>(b, "/stats")).broker_id),
    );
    for (const id of ids) {
      // Each agent is on its first choice (and the id in the view is that broker's).
      const preferred = preferenceOrder(id, fleet.addresses)[0];
      const index = fleet.addresses.indexOf(preferred);
      assert.equal(view.get(id), brokerIds[index], `agent ${id} on its first choice`);
      byBroker.set(preferred, [...(byBroker.get(preferred) ?? []), id]);
    }
    assert.equal(byBroker.size, 3, "agents on all three brokers");

    // One agent on each broker: exactly one ok result from it.
    for (const [address, agentIds] of byBroker) {
      const target = agentIds[0];
      const got = await command(fleet, `one-${target}`, target, 1);
      assert.equal(got.length, 1, `one result for ${target} (on ${address})`);
      assert.equal(got[0].agent_id, target);
      assert.equal(got[0].status, "ok", JSON.stringify(got[0]));
    }
    // All: one result per agent, none twice, every one ok.
    const all = await command(fleet, "to-all", "all", ids.length);
    assert.deepEqual(all.map((r) => r.agent_id).sort(), [...ids].sort());
    assert.ok(all.every((r) => r.status === "ok"), JSON.stringify(all));
    // An agent no broker holds: exactly one "not connected" result (from the leader only).
    const ghost = await command(fleet, "to-ghost", "ghost-1", 1);
    assert.equal(ghost.length, 1, JSON.stringify(ghost));
    assert.equal(ghost[0].output, "agent ghost-1 is not connected");

    // The consoles' send through one broker: results of agents on every broker.
    const far = byBroker.get(fleet.addresses[2])![0];
    const viaFirst = await adminSend(fleet.brokers[0], far);
    assert.deepEqual([viaFirst.ok, viaFirst.timed_out], [[far], false]);
    const allViaSecond = await adminSend(fleet.brokers[1], "all");
    assert.deepEqual(allViaSecond.dispatched, [...ids].sort());
    assert.deepEqual([allViaSecond.ok.sort(), allViaSecond.timed_out], [[...ids].sort(), false]);

    // /health and /stats of any broker: the whole fleet, with the broker of each agent.
    const health = await adminGet<{ agents: HealthEntry[] }>(fleet.brokers[1], "/health");
    for (const id of ids) {
      const entry = health.agents.find((h) => h.agent_id === id);
      assert.equal(entry?.connected, true, `health of ${id}`);
      assert.equal(entry?.broker, view.get(id));
    }
    const stats = await adminGet<BrokerStats>(fleet.brokers[2], "/stats");
    assert.deepEqual(
      stats.fleet.map((b) => [b.broker_id, b.connected]).sort(),
      brokerIds.map((b, i) => [b, byBroker.get(fleet.addresses[i])!.length]).sort(),
    );
  }));

Deno.test({
  name:
    "broker fleet: a broker killed with SIGKILL: its agents move to the others, no sample is lost, commands still answered",
}, () =>
  withFleet([[], [], []], async (fleet) => {
    const ids = idsSpreadOver(fleet.addresses, 2, "kf");
    const data = await collect(fleet.bus, DEFAULT_TOPICS.data);
    try {
      for (const id of ids) await fleet.startAgent(id);
      await fleetView(fleet, ids);
      await delay(3000);
      const victim = fleet.brokers[1];
      const moved = ids.filter((id) => preferenceOrder(id, fleet.addresses)[0] === victim.address);
      assert.equal(moved.length, 2);
      victim.process.kill("SIGKILL");
      await victim.process.exited();
      // Every agent of the killed broker reconnects to another one within seconds.
      const started = Date.now();
      await waitUntil(
        () =>
          moved.every((id) => {
            const link = fleet.agents.get(id)!.status().broker as Record<string, unknown>;
            return link.state === "connected" && link.address !== victim.address;
          }),
        20_000,
        "the killed broker's agents connected elsewhere",
        { intervalMs: 100 },
      );
      const failoverMs = Date.now() - started;
      assert.ok(failoverMs < 20_000);
      await delay(3000);

      // Commands: to a moved agent, and to all (one ok result per agent, no "not connected").
      const one = await command(fleet, "after-kill-one", moved[0], 1);
      assert.equal(one.length, 1, JSON.stringify(one));
      assert.equal(one[0].status, "ok", JSON.stringify(one[0]));
      const all = await command(fleet, "after-kill-all", "all", ids.length);
      assert.deepEqual(all.map((r) => r.agent_id).sort(), [...ids].sort(), JSON.stringify(all));
      assert.ok(all.every((r) => r.status === "ok"), JSON.stringify(all));

      // Stop the agents (each flushes its buffer), then count every sample on the data topic.
      const sent = new Map<string, number>();
      for (const id of ids) {
        const agent = fleet.agents.get(id)!;
        await agent.stop();
        fleet.agents.delete(id);
        const samples = agent.status().samples as Record<string, number>;
        sent.set(id, samples.sent);
      }
      await data.waitFor<{ agent_id: string; timestamp: number }>(
        (values) =>
          ids.every((id) =>
            new Set(values.filter((v) => v.agent_id === id).map((v) => v.timestamp)).size >=
              sent.get(id)!
          ),
        30_000,
        "every sample of every agent on the data topic",
      );
      const values = data.values<{ agent_id: string; timestamp: number }>();
      for (const id of ids) {
        const mine = values.filter((v) => v.agent_id === id);
        const distinct = new Set(mine.map((v) => v.timestamp)).size;
        assert.equal(distinct, sent.get(id), `samples of ${id}: sent ${sent.get(id)}`);
        assert.ok(sent.get(id)! >= 5, `agent ${id} sent samples`);
        // Duplicates only from batches unacknowledged when the broker died.
        assert.ok(mine.length - distinct <= 5, `duplicates of ${id}: ${mine.length - distinct}`);
      }
    } finally {
      await data.close();
    }
  }));

Deno.test({
  name:
    "broker fleet: a broker at its stream ceiling refuses RESOURCE_EXHAUSTED and the agent lands on another broker; a second process with a connected agent's id is refused on the other broker too",
}, () =>
  withFleet([["--max-streams", "1"], []], async (fleet) => {
    const [full] = fleet.addresses;
    const ids = idsSpreadOver(fleet.addresses, 2, "cf").filter((id) =>
      preferenceOrder(id, fleet.addresses)[0] === full
    );
    assert.equal(ids.length, 2);
    await fleet.startAgent(ids[0]);
    await fleetView(fleet, [ids[0]]);
    const second = await fleet.startAgent(ids[1]);
    const view = await fleetView(fleet, ids);
    const stats = await Promise.all(fleet.brokers.map((b) => adminGet<BrokerStats>(b, "/stats")));
    assert.equal(view.get(ids[0]), stats[0].broker_id);
    assert.equal(view.get(ids[1]), stats[1].broker_id, "the refused agent is on the other broker");
    assert.equal((second.status().broker as Record<string, unknown>).address, fleet.addresses[1]);
    await fleet.brokers[0].process.waitForLine(
      /maximum of 1 streams \(broker\.max_streams/,
      10_000,
      "the refusal in the full broker's log",
    );

    // Another process claims ids[1] (held by broker 1) on broker 0 (room made by stopping ids[0]):
    // the brokers agree that the older stream stays and refuse the newcomer ALREADY_EXISTS.
    await fleet.agents.get(ids[0])!.stop();
    fleet.agents.delete(ids[0]);
    await fleetView(fleet, [ids[1]]);
    const impostor = await TestAgent.connect(fleet.addresses[0], ids[1], {
      instanceId: "another-process",
    });
    const refused = await impostor.closed(20_000);
    assert.equal(refused?.code, 6, `ALREADY_EXISTS, got ${refused?.code}: ${refused?.details}`);
    assert.match(refused?.details ?? "", /already connected from another process/);
    // The first process keeps its stream on broker 1.
    const after = await fleetView(fleet, [ids[1]]);
    assert.equal(after.get(ids[1]), stats[1].broker_id);
    assert.equal((second.status().broker as Record<string, unknown>).state, "connected");
  }));
