/**
 * End-to-end scenarios on the real engines' stand-ins: a real etcd (started
 * by the harness on free loopback ports) and the librdkafka mock cluster.
 */
import { tempDir } from "./broker_support.ts";
import { registerScenarios } from "./e2e_scenarios.ts";
import { startEtcd } from "./harness/etcd.ts";
import { startKafkaMock } from "./harness/kafka_mock.ts";

registerScenarios({
  name: "etcd+kafka",
  waitMs: 60_000,
  async backends() {
    const dir = await tempDir("monitor-e2e-");
    const etcd = await startEtcd();
    const kafka = await startKafkaMock({ brokers: 3 }).catch(async (error) => {
      await etcd.stop();
      throw error;
    });
    const prefix = "/monitor";
    return {
      name: "etcd+kafka",
      stateDir: dir,
      store: { backend: "etcd", endpoints: [etcd.endpoint], prefix, path: "" },
      bus: { backend: "kafka", brokers: kafka.bootstrap, path: "", clientId: "e2e-test" },
      flags: [
        "--store-backend",
        "etcd",
        "--store-endpoints",
        etcd.endpoint,
        "--bus-backend",
        "kafka",
        "--bus-brokers",
        kafka.bootstrap.join(","),
        "--state-dir",
        dir,
      ],
      async cleanup() {
        kafka.stop();
        await etcd.stop();
        await Deno.remove(dir, { recursive: true });
      },
    };
  },
});
