/**
 * The agent as a real subprocess (`deno run services/agent/main.ts` with the
 * scoped permissions of services/agent/permissions.ts plus the store's):
 * a configuration change in the store is applied by the same process, and
 * SIGTERM stops it gracefully (heartbeat revoked).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { agentPermissions } from "../services/agent/permissions.ts";
import { setLogLevel } from "../services/common/log.ts";
import { storePermissions } from "../services/store/mod.ts";
import type { Store } from "../services/store/types.ts";
import { delay, embeddedStore, MiniBroker, output, waitFor } from "./agent_support.ts";

setLogLevel("warn");

const MAIN = fileURLToPath(new URL("../services/agent/main.ts", import.meta.url));

/** Collects a child's output lines. */
function lines(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  return stream.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({
      write(chunk) {
        into.push(...chunk.split("\n").filter((l) => l !== ""));
      },
    }),
  );
}

/** Spawns `deno <args>`, its stdout and stderr lines collected into `stdout` and `stderr`. */
function spawnDeno(
  args: string[],
  stdout: string[],
  stderr: string[] = stdout,
): { child: Deno.ChildProcess; pumps: Promise<unknown> } {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { child, pumps: Promise.all([lines(child.stdout, stdout), lines(child.stderr, stderr)]) };
}

/** Kills `child` when it still runs (SIGKILL) and waits for it and its output. */
async function reap(
  child: Deno.ChildProcess | undefined,
  pumps: Promise<unknown> | undefined,
): Promise<void> {
  if (child) {
    try {
      child.kill("SIGKILL");
    } catch { /* already ended */ }
    await child.status;
  }
  await pumps;
  await delay(0);
}

/**
 * `deno run` and the agent's own scoped permissions plus those of the embedded
 * store at `storePath`; the script and its flags follow.
 */
function runWithAgentPermissions(broker: string, storePath: string): string[] {
  const agent = agentPermissions({ broker });
  const store = storePermissions({
    backend: "embedded",
    endpoints: [],
    prefix: "/monitor",
    path: storePath,
  });
  const join = (list: string[]) => [...new Set(list)].join(",");
  return [
    "run",
    "--no-prompt",
    `--allow-read=${join([...agent.read, ...store.read])}`,
    `--allow-write=${join([...agent.write, ...store.write])}`,
    `--allow-net=${join([...agent.net, ...store.net])}`,
    `--allow-env=${join([...agent.env, ...store.env])}`,
    `--allow-sys=${join(agent.sys)}`,
    `--allow-run=${join(agent.run)}`,
  ];
}

async function heartbeatOf(store: Store, id: string) {
  const kv = await store.get(`/monitor/heartbeat/${id}`);
  return kv ? JSON.parse(kv.value) : undefined;
}

Deno.test("agent process: a config change in the store is applied by the same process; SIGTERM stops it gracefully", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  const stdout: string[] = [];
  const stderr: string[] = [];
  let child: Deno.ChildProcess | undefined;
  let pumps: Promise<unknown> | undefined;
  try {
    await backend.store.put(
      "/monitor/config/proc-1",
      JSON.stringify({ interval: 1, metrics: ["cpu"], heartbeat_ttl: 3 }),
    );
    const args = [
      ...runWithAgentPermissions(broker.address, backend.path),
      MAIN,
      "--supervised",
      "--broker",
      broker.address,
      "--id",
      "proc-1",
      "--store-backend",
      "embedded",
      "--state-dir",
      backend.dir,
      "--log-level",
      "info",
    ];
    ({ child, pumps } = spawnDeno(args, stdout, stderr));
    const pid = child.pid;
    await waitFor(() => stdout.includes("monitor:ready"), 30_000, "monitor:ready").catch(
      (error) => {
        throw new Error(
          `${error.message}\nstdout:\n${stdout.join("\n")}\nstderr:\n${stderr.join("\n")}`,
        );
      },
    );
    await waitFor(() => broker.samples().length >= 2, 15_000, "cpu samples");
    assert.deepEqual(Object.keys(broker.samples().at(-1)!.metrics), ["cpu"]);
    const before = await waitFor(() => heartbeatOf(backend.store, "proc-1"), 10_000, "heartbeat");
    assert.equal(before.pid, pid, "the heartbeat names the process");

    // Change interval, metrics and plugins in the store.
    const revision = await backend.store.put(
      "/monitor/config/proc-1",
      JSON.stringify({ interval: 2, metrics: ["memory"], plugins: ["logger"], heartbeat_ttl: 3 }),
    );
    const after = await waitFor(
      async () => {
        const beat = await heartbeatOf(backend.store, "proc-1");
        return beat?.config_revision === revision ? beat : undefined;
      },
      15_000,
      "the heartbeat of the new configuration",
    );
    assert.equal(after.pid, pid, "same process");
    assert.deepEqual(after.plugins, [{ name: "logger", state: "active" }]);
    const from = broker.acked.size;
    await waitFor(() => broker.acked.size >= from + 3, 20_000, "samples under the new config");
    const recent = broker.samples().slice(-2);
    for (const sample of recent) assert.deepEqual(Object.keys(sample.metrics), ["memory"]);
    assert.ok(
      recent[1].timestamp - recent[0].timestamp >= 1.9,
      `samples follow the new 2 s interval (${recent[0].timestamp} -> ${recent[1].timestamp})`,
    );
    const status = output(await broker.command("status"));
    assert.equal(status.pid, pid);
    assert.equal((status.config as { interval: number }).interval, 2);
    assert.equal(broker.hellos.length, 1, "the stream was never re-opened");
    assert.ok(
      stderr.concat(stdout).some((l) => /configuration from \/monitor\/config\/proc-1/.test(l)),
    );

    // SIGTERM: graceful stop, heartbeat revoked.
    child.kill("SIGTERM");
    const result = await child.status;
    child = undefined;
    assert.equal(result.code, 0, stderr.join("\n"));
    await pumps;
    pumps = undefined;
    assert.equal(await backend.store.get("/monitor/heartbeat/proc-1"), undefined);
    assert.ok(stdout.concat(stderr).some((l) => /agent proc-1 stopped/.test(l)));
  } finally {
    await reap(child, pumps);
    await broker.close();
    await backend.cleanup();
  }
});

/** Runs the agent CLI to completion with the given arguments (all permissions it needs). */
async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const agent = agentPermissions({ broker: "127.0.0.1:1" });
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      // The agent reads no file of its own (no proto file: services/rpc/codec.ts).
      ...(agent.read.length ? [`--allow-read=${agent.read.join(",")}`] : []),
      `--allow-env=${agent.env.join(",")}`,
      `--allow-sys=${agent.sys.join(",")}`,
      MAIN,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test("agent CLI: --help shows the flags and the multi-host example; bad flags name the flag", async () => {
  const help = await runCli(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  for (
    const flag of [
      "--broker",
      "--id",
      "--store-backend",
      "--store-endpoints",
      "--token",
      "--tls-ca",
    ]
  ) {
    assert.ok(help.stdout.includes(flag), `help mentions ${flag}`);
  }
  assert.match(
    help.stdout,
    /deno task agent --broker SERVER:50052 --id my-agent --store-backend etcd --store-endpoints SERVER:2379/,
  );
  const badBroker = await runCli(["--broker", "nowhere"]);
  assert.equal(badBroker.code, 1);
  assert.match(
    badBroker.stderr,
    /agent: error: --broker: expected host:port(, e\.g\. [^,]+)?, found "nowhere"/,
  );
  const badId = await runCli(["--id", "no spaces"]);
  assert.equal(badId.code, 1);
  assert.match(badId.stderr, /agent: error: --id: agent id "no spaces" is not valid/);
  const badBackend = await runCli(["--store-backend", "redis"]);
  assert.equal(badBackend.code, 1);
  assert.match(badBackend.stderr, /--store-backend: expected "embedded" or "etcd"/);
});

Deno.test("agent CLI: --config monitor.yaml supplies the id, the broker address and the store", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  const stdout: string[] = [];
  const stderr: string[] = [];
  let child: Deno.ChildProcess | undefined;
  let pumps: Promise<unknown> | undefined;
  try {
    const yaml = `${backend.dir}/monitor.yaml`;
    await Deno.writeTextFile(
      yaml,
      [
        `state_dir: ${backend.dir}`,
        "store:",
        "  backend: embedded",
        "broker:",
        `  listen: ${broker.address}`,
        "agent:",
        "  id: yaml-1",
        "",
      ].join("\n"),
    );
    const agent = agentPermissions({ broker: broker.address, configFile: yaml });
    const store = storePermissions({
      backend: "embedded",
      endpoints: [],
      prefix: "/monitor",
      path: backend.path,
    });
    const join = (list: string[]) => [...new Set(list)].join(",");
    ({ child, pumps } = spawnDeno(
      [
        "run",
        "--no-prompt",
        `--allow-read=${join([...agent.read, ...store.read])}`,
        `--allow-write=${join(store.write)}`,
        `--allow-net=${join(agent.net)}`,
        `--allow-env=${join(agent.env)}`,
        `--allow-sys=${join(agent.sys)}`,
        MAIN,
        "--config",
        yaml,
        "--supervised",
      ],
      stdout,
      stderr,
    ));
    await waitFor(() => broker.hellos.length > 0, 30_000, "the agent's hello").catch((error) => {
      throw new Error(`${error.message}\n${stdout.join("\n")}\n${stderr.join("\n")}`);
    });
    assert.equal(broker.hellos[0].agent_id, "yaml-1");
    await waitFor(() => heartbeatOf(backend.store, "yaml-1"), 10_000, "the heartbeat of yaml-1");
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    child = undefined;
  } finally {
    await reap(child, pumps);
    await broker.close();
    await backend.cleanup();
  }
});

Deno.test("agent CLI: without --id the agent is named after its host", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  const output: string[] = [];
  let child: Deno.ChildProcess | undefined;
  let pumps: Promise<unknown> | undefined;
  const host = Deno.hostname();
  try {
    await backend.store.put(
      "/monitor/config/default",
      JSON.stringify({ interval: 1, metrics: ["memory"] }),
    );
    ({ child, pumps } = spawnDeno([
      ...runWithAgentPermissions(broker.address, backend.path),
      MAIN,
      "--supervised",
      "--broker",
      broker.address,
      "--store-backend",
      "embedded",
      "--state-dir",
      backend.dir,
    ], output));
    const beat = await waitFor(() => heartbeatOf(backend.store, host), 30_000, "the heartbeat")
      .catch((error) => {
        throw new Error(`${error.message}\n${output.join("\n")}`);
      });
    assert.equal(beat.agent_id, host);
    assert.equal(beat.hostname, host);
    await waitFor(() => broker.hellos.length >= 1, 15_000, "the hello");
    assert.equal(broker.hellos[0].agent_id, host);
    child.kill("SIGTERM");
    const result = await child.status;
    child = undefined;
    assert.equal(result.code, 0, output.join("\n"));
  } finally {
    await reap(child, pumps);
    await broker.close();
    await backend.cleanup();
  }
});

Deno.test("agent --test: one collection through the configured pipeline, printed as it would be sent; nothing sent or written", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  try {
    // Seed format; threshold_alert set so that memory fires on the first sample.
    await backend.store.put(
      "/monitor/config/t-1",
      JSON.stringify({
        interval: 5,
        metrics: ["memory", "net in"],
        plugins: ["plugins.threshold_alert.ThresholdAlertPlugin"],
        plugin_configs: { ThresholdAlertPlugin: { memory: 0, consecutive: 1 } },
      }),
    );
    const args = [
      ...runWithAgentPermissions(broker.address, backend.path),
      MAIN,
      "--test",
      "--broker",
      broker.address,
      "--id",
      "t-1",
      "--store-backend",
      "embedded",
      "--state-dir",
      backend.dir,
    ];
    const out = await new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    // stdout: JSON documents only (the data message, then the alert), for jq.
    const documents = stdout.trim().split(/\n(?=\{)/).map((text) => JSON.parse(text));
    assert.equal(documents.length, 2, stdout);
    const [data, alert] = documents;
    assert.equal(data.agent_id, "t-1");
    assert.equal(typeof data.hostname, "string");
    assert.deepEqual(Object.keys(data.metrics).sort(), ["memory", "net in"]);
    assert.ok(data.metrics.memory > 0);
    assert.equal(alert.agent_id, "t-1");
    assert.equal(alert.metric, "memory");
    assert.equal(alert.state, "firing");
    assert.equal(alert.threshold, 0);
    assert.match(stderr, /collected: \{"timestamp":/);
    assert.match(
      stderr,
      /after the pipeline \(threshold_alert\): the sample above; nothing was sent/,
    );
    // Nothing reached the broker, no heartbeat was written.
    assert.equal(broker.hellos.length, 0);
    assert.equal(await backend.store.get("/monitor/heartbeat/t-1"), undefined);
  } finally {
    await broker.close();
    await backend.cleanup();
  }
});

Deno.test("agent --once: sends one batch, waits for the broker's acknowledgement, exits", async () => {
  const backend = await embeddedStore();
  const broker = await MiniBroker.start();
  try {
    await backend.store.put(
      "/monitor/config/o-1",
      JSON.stringify({ interval: 60, metrics: ["cpu"], plugins: [] }),
    );
    const args = [
      ...runWithAgentPermissions(broker.address, backend.path),
      MAIN,
      "--once",
      "--broker",
      broker.address,
      "--id",
      "o-1",
      "--store-backend",
      "embedded",
      "--state-dir",
      backend.dir,
    ];
    const started = Date.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.ok(Date.now() - started < 30_000, "exits without waiting for the 60 s interval");
    assert.equal(broker.samples().length, 1);
    assert.deepEqual(Object.keys(broker.samples()[0].metrics), ["cpu"]);
    assert.match(text, /sent one batch \(seq \d+, 1 metric\(s\)\) and the broker acknowledged it/);
    assert.equal(await backend.store.get("/monitor/heartbeat/o-1"), undefined);
  } finally {
    await broker.close();
    await backend.cleanup();
  }
});

Deno.test("deno task agent --token-file with a file outside the project (as the agent's help shows) is read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-token-outside-" });
  try {
    const token = join(dir, "agent-token");
    await Deno.writeTextFile(token, "an-agent-token-of-some-length-0123456789\n", { mode: 0o600 });
    const out = await new Deno.Command("deno", {
      args: [
        "task",
        "agent",
        "--token-file",
        token,
        "--test",
        "--id",
        "tok-1",
        "--state-dir",
        join(dir, "state"),
      ],
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.doesNotMatch(stderr, /Requires read access|NotCapable/);
    assert.equal(JSON.parse(new TextDecoder().decode(out.stdout)).agent_id, "tok-1");
    // An unreadable token file is still an error naming it (the flag is honoured, not ignored).
    const missing = await new Deno.Command("deno", {
      args: ["task", "agent", "--token-file", join(dir, "nope"), "--test", "--id", "tok-1"],
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(missing.code, 1);
    assert.match(new TextDecoder().decode(missing.stderr), /nope/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
