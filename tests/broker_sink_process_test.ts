/**
 * `broker.sink` in monitor.yaml, end to end: the broker started with the
 * supervisor's exact command line (scoped permissions that include the sink's
 * directory) appends every acknowledged sample to the file as a JSON line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parsePlan, serviceCommand } from "../services/supervisor/mod.ts";
import { freePorts } from "./harness/free_port.ts";
import { tempDir, TestAgent } from "./broker_support.ts";
import { ServiceProcess } from "./e2e_support.ts";

Deno.test("broker.sink: the supervised broker process appends each sample to the file, with write access only there and the state dir", async () => {
  const dir = await tempDir("monitor-sink-process-");
  const [port, adminPort] = freePorts(2);
  const file = join(dir, "monitor.yaml");
  const yaml = [
    "state_dir: state",
    "broker:",
    `  listen: 127.0.0.1:${port}`,
    `  admin: 127.0.0.1:${adminPort}`,
    "  sink: out/samples.jsonl",
    "",
  ].join("\n");
  await Deno.writeTextFile(file, yaml);
  const command = serviceCommand("broker", parsePlan(yaml, file).deployment);
  const write = command.args.find((a) => a.startsWith("--allow-write="));
  assert.deepEqual(write?.slice("--allow-write=".length).split(",").sort(), [
    join(dir, "out"),
    join(dir, "state"),
  ]);
  const broker = new ServiceProcess("broker with a sink", command.args.slice(1), {
    cwd: command.cwd,
  });
  let agent: TestAgent | undefined;
  try {
    await broker.waitForLine(/^monitor:ready$/, 30_000, "monitor:ready");
    agent = await TestAgent.connect(`127.0.0.1:${port}`, "sink-p1");
    agent.batch(1, [
      { timestamp: 10, metrics: { cpu: 1.5 } },
      { timestamp: 11, metrics: { cpu: 2.5, "net in": 7 } },
    ]);
    await agent.waitFor((m) => m.ack?.seq === 1, "ack of the batch");
    agent.close();
    const status = await broker.stop();
    assert.equal(status.code, 0, broker.output);
    const lines = (await Deno.readTextFile(join(dir, "out", "samples.jsonl"))).trim().split("\n");
    assert.deepEqual(lines.map((l) => JSON.parse(l)), [
      { agent_id: "sink-p1", hostname: "sink-p1.host", timestamp: 10, metrics: { cpu: 1.5 } },
      {
        agent_id: "sink-p1",
        hostname: "sink-p1.host",
        timestamp: 11,
        metrics: { cpu: 2.5, "net in": 7 },
      },
    ]);
  } finally {
    agent?.close();
    await broker.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
