import assert from "node:assert/strict";
import { join } from "node:path";
import { flagOverrides, flagValues, SERVICE_FLAG_KEYS, withOverrides } from "./flags.ts";
import { ConfigError } from "./issues.ts";
import { checkMonitorConfig, resolveConfig } from "./monitor_yaml.ts";

Deno.test("flags: both spellings, the last one wins, other arguments are passed over", () => {
  const values = flagValues(
    ["list", "--force", "--listen", "a:1", "--sink=x.txt", "--listen=b:2", "--", "--admin", "c:3"],
    SERVICE_FLAG_KEYS.broker,
  );
  assert.deepEqual([...values], [["--listen", "b:2"], ["--sink", "x.txt"]]);
});

Deno.test("flags: key paths with values; paths absolute, lists split, numbers read", () => {
  const overrides = flagOverrides("broker", [
    "--sink",
    "out/s.jsonl",
    "--store-endpoints",
    "10.0.0.1:2379, 10.0.0.2:2379",
    "--command-timeout",
    "12",
    "--max-batch-samples",
    "lots",
  ], "/srv/monitor");
  assert.deepEqual(overrides.map((o) => [o.path, o.value]), [
    ["store.endpoints", ["10.0.0.1:2379", "10.0.0.2:2379"]],
    ["broker.sink", join("/srv/monitor", "out/s.jsonl")],
    ["broker.command_timeout", 12],
    ["broker.max_batch_samples", "lots"],
  ]);
});

Deno.test("flags: a token flag replaces the file's token keys; sections are made", () => {
  const document = { agent: { token_env: "FROM_FILE", id: "web-1" }, store: null };
  const merged = withOverrides(
    document,
    flagOverrides("agent", ["--token-file", "/etc/t", "--store-backend", "etcd"], "/"),
  );
  assert.deepEqual(merged, {
    agent: { token_file: "/etc/t", id: "web-1" },
    store: { backend: "etcd" },
  });
  assert.deepEqual(document.agent, { token_env: "FROM_FILE", id: "web-1" }, "not changed");
});

Deno.test("flags: resolved with the file, a flag's issue names the flag, the file's keep line:column", () => {
  const text = "broker:\n  listen: 127.0.0.1:6000\n  command_timeout: -1\n";
  const flags = flagOverrides("broker", ["--listen", "nowhere", "--admin", "off"], "/");
  const { issues } = checkMonitorConfig(text, "monitor.yaml", { flags });
  assert.deepEqual(issues.map((i) => [i.path, i.line]), [
    ["--listen", undefined],
    ["broker.command_timeout", 3],
  ]);
  const ok = checkMonitorConfig("broker:\n  listen: 127.0.0.1:6000\n", "monitor.yaml", {
    flags: flagOverrides("broker", ["--listen", "0.0.0.0:7000"], "/"),
  });
  assert.equal(ok.config?.broker.listen, "0.0.0.0:7000");
  assert.equal(ok.config?.agent.broker, "127.0.0.1:7000", "the local agent dials the flag's port");
});

Deno.test("resolveConfig: without a file, the defaults and the flags; relative to cwd", async () => {
  const config = await resolveConfig({
    cwd: "/srv/monitor",
    flags: flagOverrides("agent", ["--broker", "10.0.0.5:50052", "--id", "web-1"], "/srv/monitor"),
  });
  assert.equal(config.agent.broker, "10.0.0.5:50052");
  assert.equal(config.agent.id, "web-1");
  assert.equal(config.source.dir, "/srv/monitor");
  assert.equal(config.source.file, undefined);
  await assert.rejects(
    resolveConfig({ flags: flagOverrides("agent", ["--id", "all"], "/") }),
    (error: unknown) =>
      error instanceof ConfigError && error.file === undefined &&
      /^--id: expected an agent id/.test(error.message),
  );
});
