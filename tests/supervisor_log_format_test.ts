/**
 * `log_format: json` in monitor.yaml: `deno task up` prints one JSON object
 * per line for the supervisor and every service (time, level, service,
 * agent for the agent, message, fields), and a clean stop logs no death.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ServiceProcess } from "./e2e_support.ts";
import { freePorts } from "./harness/free_port.ts";

Deno.test("deno task up with log_format: json prints one JSON object a line, from every service", async () => {
  const dir = await Deno.makeTempDir({ prefix: "monitor-json-log-" });
  const file = join(dir, "monitor.yaml");
  const [port, admin] = freePorts(2);
  await Deno.writeTextFile(
    file,
    `log_format: json
state_dir: ${join(dir, "state")}
broker:
  listen: 127.0.0.1:${port}
  admin: 127.0.0.1:${admin}
agent:
  id: json-agent
agents:
  default: { interval: 1, metrics: [cpu], plugins: [] }
`,
  );
  const up = new ServiceProcess("up", ["deno", "task", "up", "--config", file], {
    command: "setsid",
  });
  try {
    await up.waitForLine(/"message":"all services ready"/, 120_000, "all services ready");
    await up.waitForLine(/"message":"agent json-agent connected/, 60_000, "the agent connected");
    up.kill("SIGTERM");
    const status = await up.exited(60_000);
    assert.equal(status.code, 0, up.output);
    // deno task's own "Task up ..." line goes to stderr before anything runs; every other line
    // is one JSON log object.
    // deno-lint-ignore no-control-regex
    const lines = up.lines.filter((l) => l.trim() !== "" && !/^(\x1b\[[0-9;]*m)*Task /.test(l));
    const records = lines.map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        throw new Error(`not a JSON line: ${JSON.stringify(line)}\n${up.output}`);
      }
    });
    for (const record of records) {
      assert.deepEqual(
        Object.keys(record).filter((k) => k !== "agent"),
        ["time", "level", "service", "message", "fields"],
        JSON.stringify(record),
      );
      assert.ok(!Number.isNaN(Date.parse(record.time)), record.time);
    }
    const services = new Set(records.map((r) => r.service));
    for (const s of ["supervisor", "broker", "analysis", "agent"]) assert.ok(services.has(s), s);
    const agentLines = records.filter((r) => r.service === "agent");
    assert.ok(agentLines.every((r) => r.agent === "json-agent"), JSON.stringify(agentLines));
    assert.ok(
      records.some((r) => r.service === "supervisor" && r.message === "all services stopped"),
    );
    // A clean stop is not a death.
    assert.ok(!records.some((r) => /is dead|closed by the broker/.test(r.message)), up.output);
  } finally {
    await up.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task up --log-format json: every service is started with it; a bad value names the flag", async () => {
  const dir = await Deno.makeTempDir({ prefix: "monitor-json-flag-" });
  const file = join(dir, "monitor.yaml");
  await Deno.writeTextFile(file, `state_dir: ${join(dir, "state")}\n`);
  try {
    const printed = new ServiceProcess("up --print-commands", [
      "deno",
      "task",
      "up",
      "--config",
      file,
      "--log-format",
      "json",
      "--print-commands",
    ], { command: "setsid" });
    assert.equal((await printed.exited(60_000)).code, 0, printed.output);
    const lines = printed.lines.filter((l) => l.startsWith("deno run"));
    // broker, analysis, agent: each gets --log-format json.
    const services = lines.filter((l) => /services\/(broker|analysis|agent)\/main\.ts/.test(l));
    assert.equal(services.length, 3, printed.output);
    for (const line of services) assert.match(line, / --log-format json( |$)/);

    const bad = new ServiceProcess("up --log-format xml", [
      "deno",
      "task",
      "up",
      "--config",
      file,
      "--log-format",
      "xml",
    ], { command: "setsid" });
    assert.notEqual((await bad.exited(60_000)).code, 0);
    assert.match(bad.output, /--log-format: expected text or json, found "xml"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
