/**
 * Values from outside never forge a log line or reach the terminal as control
 * sequences: raw bytes published with kcat (an independent client) to the
 * commands topic of the Kafka mock, read by a real broker subprocess, and the
 * supervisor's prefixing of a child's output.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { brokerPermissionFlags } from "../services/broker/permissions.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import { storePermissionFlags } from "../services/store/permissions.ts";
import { ServiceOutput } from "../services/supervisor/output.ts";
import { tempDir } from "./broker_support.ts";
import { mergePermissionFlags, ServiceProcess } from "./e2e_support.ts";
import { freePorts } from "./harness/free_port.ts";
import { startKafkaMock } from "./harness/kafka_mock.ts";
import { requireComponents } from "./harness/provision.ts";

Deno.test("broker: raw bytes from kcat on monitoring-commands are logged escaped (no forged line, no ANSI escape)", async () => {
  const { kcat } = requireComponents(["kcat", "librdkafka.so.1"]);
  const dir = await tempDir("monitor-escape-");
  const kafka = await startKafkaMock({ brokers: 1 });
  let broker: ServiceProcess | undefined;
  try {
    const [port, adminPort] = freePorts(2);
    const listen = `127.0.0.1:${port}`;
    const admin = `127.0.0.1:${adminPort}`;
    const store = {
      backend: "embedded" as const,
      endpoints: [],
      prefix: "/monitor",
      path: join(dir, "monitor.db"),
    };
    const bus = { backend: "kafka" as const, brokers: kafka.bootstrap, path: "" };
    broker = new ServiceProcess("broker", [
      "--no-prompt",
      ...mergePermissionFlags(
        brokerPermissionFlags({ stateDir: dir, listen, admin }),
        storePermissionFlags(store),
        busPermissionFlags(bus),
      ),
      "services/broker/main.ts",
      "--supervised",
      ...["--listen", listen, "--admin", admin, "--state-dir", dir],
      ...["--bus-backend", "kafka", "--bus-brokers", kafka.bootstrap.join(",")],
    ]);
    await broker.waitForLine(/^monitor:ready$/, 60_000, "monitor:ready");
    // kcat sends each file as one message: the newline and the escape stay inside it.
    const forged = join(dir, "forged");
    const clear = join(dir, "clear");
    await Deno.writeTextFile(forged, "x\nFORGED-LINE");
    await Deno.writeTextFile(clear, "\x1b[2J");
    const sent = await new Deno.Command(kcat, {
      args: ["-P", "-b", kafka.bootstrap.join(","), "-t", "monitoring-commands", forged, clear],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(sent.code, 0, `kcat failed: ${new TextDecoder().decode(sent.stderr)}`);
    await broker.waitForLine(/refused a command.*x\\nFORGED-LINE/, 30_000, "the forged refusal");
    await broker.waitForLine(/refused a command.*\\x1b\[2J/, 30_000, "the escape refusal");
    assert.equal(broker.lines.filter((l) => l.startsWith("FORGED-LINE")).length, 0, broker.output);
    assert.ok(!broker.raw.includes("\x1b"), "no escape character reached the output");
  } finally {
    await broker?.stop().catch(() => {});
    kafka.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervisor output: a child's line is printed escaped after its name", () => {
  const written: string[] = [];
  const output = new ServiceOutput({
    color: false,
    write: (line) => written.push(line),
    now: () => 0,
  });
  output.line("agent", "stdout", "plugin said \x1b[2J\rFORGED");
  output.say("warn", "agent \x1b]0;title\x07 exited");
  assert.deepEqual(written, [
    "agent     | plugin said \\x1b[2J\\rFORGED",
    "supervisor| 1970-01-01T00:00:00.000Z WARN  supervisor: agent \\x1b]0;title\\x07 exited",
  ]);
});
