/**
 * The Kafka mock cluster (tests/harness/kafka_mock.ts) as a process of its
 * own, for tests that need it somewhere else than in the test process, e.g.
 * inside a network namespace. Prints `kafka-mock:<bootstrap>` once it
 * listens; stops on SIGTERM, SIGINT or the end of stdin. Not product code.
 *
 * `deno run --allow-ffi --allow-read tests/harness/kafka_mock_main.ts [--brokers N]`
 *
 * @module
 */
import { startKafkaMock } from "./kafka_mock.ts";

const at = Deno.args.indexOf("--brokers");
const brokers = at >= 0 ? Number(Deno.args[at + 1]) : 1;
const mock = await startKafkaMock({ brokers });
let stopped = false;
const stop = () => {
  if (stopped) return;
  stopped = true;
  mock.stop();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
console.log(`kafka-mock:${mock.bootstrap.join(",")}`);
for await (const _ of Deno.stdin.readable) { /* wait for the end of stdin */ }
stop();
