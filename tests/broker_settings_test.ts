/**
 * Service settings from the common flags and monitor.yaml: defaults, flags
 * over the file, and errors that name the key and what was expected.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveServiceSettings } from "../services/config/service_settings.ts";
import { ConfigError } from "../services/config/issues.ts";
import { tempDir } from "./broker_support.ts";

Deno.test("settings: defaults are the embedded backends in .monitor of the working directory", async () => {
  const dir = await tempDir();
  try {
    const s = await resolveServiceSettings("broker", {}, dir);
    assert.equal(s.stateDir, join(dir, ".monitor"));
    assert.equal(s.store.backend, "embedded");
    assert.equal(s.store.path, join(dir, ".monitor", "monitor.db"));
    assert.equal(s.bus.backend, "embedded");
    assert.equal(s.bus.path, s.store.path);
    assert.equal(s.store.prefix, "/monitor");
    assert.equal(s.topics.data, "monitoring-data");
    assert.deepEqual(s.section, {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("settings: monitor.yaml is read, relative state_dir is next to it, flags win", async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, "monitor.yaml");
    await Deno.writeTextFile(
      file,
      [
        "state_dir: state",
        "store:",
        "  backend: etcd",
        "  endpoints: [127.0.0.1:2379, 127.0.0.1:22379]",
        "  prefix: /fleet",
        "bus:",
        "  backend: kafka",
        "  brokers: [127.0.0.1:9092]",
        "  topics: { data: my-data }",
        "broker:",
        "  listen: 0.0.0.0:6000",
        "  sink: result.txt",
      ].join("\n"),
    );
    const s = await resolveServiceSettings(
      "broker",
      { config: file, busBrokers: "10.0.0.1:9093" },
      "/",
    );
    assert.equal(s.configFile, file);
    assert.equal(s.stateDir, join(dir, "state"));
    assert.equal(s.store.backend, "etcd");
    assert.deepEqual(s.store.endpoints, ["127.0.0.1:2379", "127.0.0.1:22379"]);
    assert.equal(s.store.prefix, "/fleet");
    assert.equal(s.bus.backend, "kafka");
    assert.deepEqual(s.bus.brokers, ["10.0.0.1:9093"]);
    assert.equal(s.topics.data, "my-data");
    assert.equal(s.topics.results, "monitoring-results");
    assert.deepEqual(s.section, { listen: "0.0.0.0:6000", sink: "result.txt" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("settings: wrong values name the key, what was expected and what was found", async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, "monitor.yaml");
    await Deno.writeTextFile(
      file,
      "store:\n  backend: redis\nbus:\n  brokers: localhost\nbroker: 5\n",
    );
    await assert.rejects(resolveServiceSettings("broker", { config: file }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      const text = error.message;
      // The full schema check, with line and column, as `deno task validate` prints it.
      assert.match(
        text,
        /monitor\.yaml:2:12: store\.backend: expected "embedded" or "etcd", found "redis" \(a string\)/,
      );
      assert.match(
        text,
        /monitor\.yaml:4:12: bus\.brokers: expected a non-empty list of host:port, e\.g\. \[127\.0\.0\.1:9092\], found "localhost" \(a string\) \(write \[localhost\], a list\)/,
      );
      assert.match(text, /monitor\.yaml:5:9: broker: expected a mapping.*, found 5 \(a number\)/);
      return true;
    });
    await assert.rejects(
      resolveServiceSettings("broker", { busBackend: "rabbit", logLevel: "loud" }, dir),
      /--bus-backend: expected "embedded" or "kafka"[\s\S]*--log-level: expected debug, info, warn or error/,
    );
    await Deno.writeTextFile(file, "store: [\n");
    await assert.rejects(
      resolveServiceSettings("broker", { config: file }),
      /monitor\.yaml:\d+:\d+/,
    );
    await assert.rejects(
      resolveServiceSettings("broker", { config: join(dir, "missing.yaml") }),
      /cannot read .*missing\.yaml/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
