/**
 * The Bus contract suite on the kafka backend, against librdkafka's mock
 * cluster (3 brokers, started per test through FFI), plus Kafka-specific
 * tests: an independent client (kcat) reads what kafkajs wrote, topic
 * creation against a cluster that refuses CreateTopics, settings validation.
 */
import assert from "node:assert/strict";
import { busContract } from "./harness/bus_contract.ts";
import { type Bus, busPermissionFlags, type BusSettings, openBus } from "../services/bus/mod.ts";
import { type KafkaMock, startKafkaMock } from "./harness/kafka_mock.ts";

/** Short group timings so rebalances after a crash finish quickly in tests. */
const GROUP_TIMING = {
  sessionTimeoutMs: 6000,
  heartbeatIntervalMs: 500,
  rebalanceTimeoutMs: 10000,
  maxWaitMs: 200,
};

function settingsFor(mock: KafkaMock): BusSettings {
  return {
    backend: "kafka",
    brokers: mock.bootstrap,
    path: "",
    clientId: "bus-test",
    group: GROUP_TIMING,
  };
}

/** A loopback port with nothing listening on it. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

busContract("kafka", async () => {
  const mock = await startKafkaMock({ brokers: 3 });
  const settings = settingsFor(mock);
  const buses: Bus[] = [];
  try {
    const openAnother = async () => {
      const bus = await openBus(settings);
      buses.push(bus);
      return bus;
    };
    const bus = await openAnother();
    return {
      bus,
      settings,
      openAnother,
      faults: {
        brokerCount: mock.brokerCount,
        brokerDown: (id) => mock.brokerDown(id),
        brokerUp: (id) => mock.brokerUp(id),
        leadAll: (topic, id) => {
          for (let p = 0; p < mock.defaultPartitions; p++) mock.setLeader(topic, p, id);
        },
      },
      cleanup: async () => {
        try {
          await Promise.all(buses.map((b) => b.close()));
        } finally {
          mock.stop();
        }
      },
    };
  } catch (error) {
    mock.stop();
    throw error;
  }
}, {
  brokerFaults: true,
  childPermissions: busPermissionFlags,
  unreachable: () => {
    const port = closedPort();
    return Promise.resolve({
      settings: {
        backend: "kafka",
        brokers: [`127.0.0.1:${port}`],
        path: "",
        connectTimeoutMs: 1500,
      },
      endpoint: `127.0.0.1:${port}`,
      cleanup: () => Promise.resolve(),
    });
  },
});

async function withMock(fn: (mock: KafkaMock, bus: Bus) => Promise<void>): Promise<void> {
  const mock = await startKafkaMock({ brokers: 3 });
  try {
    const bus = await openBus(settingsFor(mock));
    try {
      await fn(mock, bus);
    } finally {
      await bus.close();
    }
  } finally {
    mock.stop();
  }
}

Deno.test("kafka bus: kcat, an independent client, reads what the bus published", () =>
  withMock(async (mock, bus) => {
    const topic = `kcat-${crypto.randomUUID()}`;
    await bus.ensureTopics([topic]);
    const sent = Array.from({ length: 12 }, (_, i) => ({
      key: `agent-${i % 3}`,
      value: JSON.stringify({ agent_id: `agent-${i % 3}`, seq: i }),
    }));
    await bus.publish(topic, sent);
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command("kcat", {
        args: ["-b", mock.bootstrap.join(","), "-C", "-t", topic, "-o", "beginning", "-e", "-q"]
          .concat(["-f", "%k\\t%s\\n", "-m", "20"]),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch (error) {
      throw new Error(
        `kcat is needed for this test; install it with: apt-get install -y kcat (${error})`,
      );
    }
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, `kcat failed: ${stderr}`);
    const lines = new TextDecoder().decode(output.stdout).split("\n").filter((l) => l !== "");
    assert.deepEqual(lines.sort(), sent.map((m) => `${m.key}\t${m.value}`).sort());
    // Per key, kcat sees the publish order too (one key, one partition).
    for (const key of ["agent-0", "agent-1", "agent-2"]) {
      const seqs = new TextDecoder().decode(output.stdout).split("\n")
        .filter((l) => l.startsWith(`${key}\t`))
        .map((l) => (JSON.parse(l.slice(key.length + 1)) as { seq: number }).seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    }
  }));

Deno.test("kafka bus: ensureTopics works against a cluster that refuses CreateTopics", () =>
  withMock(async (_mock, bus) => {
    const topics = [`ensure-a-${crypto.randomUUID()}`, `ensure-b-${crypto.randomUUID()}`];
    await bus.ensureTopics(topics);
    await bus.ensureTopics(topics);
    for (const topic of topics) await bus.publish(topic, [{ key: "k", value: topic }]);
    const got: string[] = [];
    const sub = await bus.subscribe({
      topics,
      group: `g-${crypto.randomUUID()}`,
      fromBeginning: true,
      handler: (m) => {
        got.push(m.value);
      },
    });
    try {
      const deadline = Date.now() + 60000;
      while (got.length < 2) {
        if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(got)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(got.sort(), [...topics].sort());
    } finally {
      await sub.close();
    }
  }));

Deno.test("kafka bus: invalid broker lists are rejected naming the entry", async () => {
  await assert.rejects(
    openBus({ backend: "kafka", brokers: ["localhost"], path: "" }),
    /bus\.brokers\[0\]: expected host:port/,
  );
  await assert.rejects(
    openBus({ backend: "kafka", brokers: [], path: "" }),
    /bus\.brokers: expected a non-empty list/,
  );
  await assert.rejects(
    openBus({ backend: "kafka", brokers: ["127.0.0.1:99999"], path: "" }),
    /port 1-65535/,
  );
});

Deno.test("kafka: a process that publishes and consumes prints no kafkajs TimeoutNegativeWarning", async () => {
  const mock = await startKafkaMock({ brokers: 1 });
  try {
    const settings = settingsFor(mock);
    const out = await new Deno.Command("deno", {
      args: [
        "run",
        "--no-prompt",
        ...busPermissionFlags(settings),
        "tests/harness/bus_contract_child.ts",
        "publish",
        JSON.stringify(settings),
        "quiet-topic",
        "q",
        "5",
        "5",
      ],
      cwd: new URL("..", import.meta.url),
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.match(stdout, /published/);
    assert.doesNotMatch(stderr, /TimeoutNegativeWarning|negative number/);
  } finally {
    mock.stop();
  }
});
