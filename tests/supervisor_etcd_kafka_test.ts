/**
 * `deno task up` with `store:` pointed at a real etcd and `bus:` at a
 * Kafka-protocol cluster (librdkafka's mock): the only change a user makes
 * to go multi-node. Each process's network access covers exactly the
 * endpoints it uses; data reaches Kafka, configuration and heartbeats etcd.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openBus } from "../services/bus/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { openStore, storeKeys } from "../services/store/mod.ts";
import { collect, tempDir, waitUntil } from "./broker_support.ts";
import { ServiceProcess } from "./e2e_support.ts";
import { startEtcd } from "./harness/etcd.ts";
import { startKafkaMock } from "./harness/kafka_mock.ts";
import { freePorts } from "./harness/free_port.ts";

const WAIT_MS = 120_000;

async function argsOf(pid: number): Promise<string> {
  const ps = await new Deno.Command("ps", { args: ["-o", "args=", "-p", String(pid)] }).output();
  return new TextDecoder().decode(ps.stdout).trim();
}

Deno.test("deno task up on etcd and Kafka: scoped network access, data in Kafka, config and heartbeat in etcd", async () => {
  const dir = await tempDir("sup-etcd-");
  const etcd = await startEtcd();
  const kafka = await startKafkaMock({ brokers: 1 }).catch(async (error) => {
    await etcd.stop();
    throw error;
  });
  const [port, adminPort, httpPort] = freePorts(3);
  const file = join(dir, "monitor.yaml");
  const prefix = "/sup-etcd";
  await Deno.writeTextFile(
    file,
    `state_dir: ${join(dir, "state")}
store: { backend: etcd, endpoints: [${etcd.endpoint}], prefix: ${prefix} }
bus: { backend: kafka, brokers: [${kafka.bootstrap.join(", ")}] }
broker: { listen: 127.0.0.1:${port}, admin: 127.0.0.1:${adminPort} }
analysis: { http: 127.0.0.1:${httpPort} }
agent: { id: etcd-agent }
agents:
  default: { interval: 1, metrics: [cpu], plugins: [] }
`,
  );
  const up = new ServiceProcess("up", ["task", "up", "--config", file], { command: "deno" });
  let store: Awaited<ReturnType<typeof openStore>> | undefined;
  let bus: Awaited<ReturnType<typeof openBus>> | undefined;
  let data: Awaited<ReturnType<typeof collect>> | undefined;
  try {
    await up.waitForLine(
      /supervisor\| .* supervisor: all services ready/,
      WAIT_MS,
      "all services ready",
    );
    const pid = (name: string) =>
      Number(new RegExp(`${name} ready \\(pid (\\d+)\\)`).exec(up.output)![1]);
    const net = async (name: string) => /--allow-net=(\S+)/.exec(await argsOf(pid(name)))?.[1];
    const kafkaList = kafka.bootstrap.join(",");
    assert.equal(
      await net("broker"),
      `127.0.0.1:${port},127.0.0.1:${adminPort},${etcd.endpoint},${kafkaList}`,
    );
    // The analysis: its dashboard's address, the Kafka brokers and etcd (heartbeats and
    // configurations for the dashboard), nothing else.
    assert.equal(await net("analysis"), `127.0.0.1:${httpPort},${kafkaList},${etcd.endpoint}`);
    assert.equal(await net("agent"), `127.0.0.1:${port},${etcd.endpoint}`);
    for (const name of ["broker", "analysis", "agent"]) {
      const args = await argsOf(pid(name));
      assert.ok(!/--allow-(all|ffi)|--allow-(read|write|net|env|sys|run)(\s|$)/.test(args), args);
    }

    const keys = storeKeys(prefix);
    store = await openStore({ backend: "etcd", endpoints: [etcd.endpoint], prefix, path: "" });
    const config = await store.get(keys.config("default"));
    assert.deepEqual(JSON.parse(config!.value), { interval: 1, metrics: ["cpu"], plugins: [] });
    await waitUntil(() => store!.get(keys.heartbeat("etcd-agent")), WAIT_MS, "heartbeat in etcd");
    bus = await openBus({ backend: "kafka", brokers: kafka.bootstrap, path: "", clientId: "t" });
    data = await collect(bus, DEFAULT_TOPICS.data);
    await data.waitFor<{ agent_id: string; metrics: Record<string, number> }>(
      (values) => values.some((v) => v.agent_id === "etcd-agent" && "cpu" in v.metrics),
      WAIT_MS,
      "the agent's data in Kafka",
    );

    up.kill("SIGTERM");
    assert.equal((await up.exited(60_000)).code, 0, up.output.split("\n").slice(-20).join("\n"));
  } finally {
    await data?.close();
    await bus?.close();
    await store?.close();
    await up.stop();
    kafka.stop();
    await etcd.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
