import assert from "node:assert/strict";
import {
  type AgentConfig,
  DEFAULT_AGENT_CONFIG_JSON,
  parseAgentConfigText,
  validateAgentConfig,
} from "./agent_config.ts";
import { formatIssue } from "./issues.ts";

const SEED =
  `{"interval": 5, "metrics": ["cpu", "memory", "disk read", "disk write", "net in", "net out"], "plugins": ["plugins.duplicate_filter.DuplicateFilterPlugin", "plugins.threshold_alert.ThresholdAlertPlugin"], "plugin_configs": {"ThresholdAlertPlugin": {"cpu": 80, "memory": 90, "disk": 95}}}`;

function valid(value: unknown): AgentConfig {
  const { config, issues } = validateAgentConfig(value, "");
  assert.deepEqual(issues, []);
  assert.ok(config);
  return config;
}

function problems(value: unknown, path = "", options = {}): string[] {
  const { config, issues } = validateAgentConfig(value, path, options);
  assert.equal(config, undefined, "an invalid configuration yields no config");
  assert.ok(issues.length > 0);
  return issues.map((i) => formatIssue(i));
}

Deno.test("agent config: the seed's text works exactly as written, with defaults filled in", () => {
  const { config, issues } = parseAgentConfigText(SEED, "/monitor/config/default");
  assert.deepEqual(issues, []);
  assert.deepEqual(config, {
    interval: 5,
    metrics: ["cpu", "memory", "disk read", "disk write", "net in", "net out"],
    plugins: [
      { name: "duplicate_filter", kind: "builtin", config: {} },
      { name: "threshold_alert", kind: "builtin", config: { cpu: 80, memory: 90, disk: 95 } },
    ],
    heartbeat_ttl: 10,
    buffer: 1000,
    batch_max_samples: 50,
    plugin_timeout_ms: 1000,
    plugin_max_failures: 5,
  });
  assert.deepEqual(valid(DEFAULT_AGENT_CONFIG_JSON), config);
});

Deno.test("agent config: short names, class names and plugin objects are accepted", () => {
  const config = valid({
    interval: 1,
    metrics: ["cpu"],
    plugins: [
      "duplicate_filter",
      "ThresholdAlertPlugin",
      { name: "logger", config: { level: "debug", every: 2 } },
      { name: "spike", url: "https://plugins.example/spike@1.0.0/mod.ts", config: { k: 1 } },
    ],
    plugin_configs: { duplicate_filter: { tolerance: 0.5, max_silent_intervals: 3 } },
    heartbeat_ttl: 3,
    buffer: 7,
    batch_max_samples: 2,
    plugin_timeout_ms: 50,
    plugin_max_failures: 2,
    log_level: "debug",
  });
  assert.deepEqual(config.plugins, [
    {
      name: "duplicate_filter",
      kind: "builtin",
      config: { tolerance: 0.5, max_silent_intervals: 3 },
    },
    { name: "threshold_alert", kind: "builtin", config: {} },
    { name: "logger", kind: "builtin", config: { level: "debug", every: 2 } },
    {
      name: "spike",
      kind: "url",
      url: "https://plugins.example/spike@1.0.0/mod.ts",
      config: { k: 1 },
    },
  ]);
  assert.equal(config.log_level, "debug");
  assert.equal(config.buffer, 7);
});

Deno.test("agent config: bad JSON is reported with line and column", () => {
  const text = '{\n  "interval": 5,\n  "metrics": ["cpu",]\n}';
  const { config, issues } = parseAgentConfigText(text, "/monitor/config/web-1");
  assert.equal(config, undefined);
  assert.equal(issues.length, 1);
  assert.equal(issues[0].line, 3);
  assert.ok(issues[0].column !== undefined && issues[0].column > 10);
  assert.match(
    formatIssue(issues[0], "/monitor/config/web-1"),
    /^\/monitor\/config\/web-1:3:\d+: /,
  );
  assert.match(issues[0].found, /invalid JSON/);
});

Deno.test("agent config: wrong types and out-of-range values name the path", () => {
  const lines = problems(
    {
      interval: "5s",
      metrics: "cpu",
      plugins: {},
      heartbeat_ttl: 1,
      buffer: 0,
      plugin_timeout_ms: 1.5,
      log_level: "loud",
    },
    "agents.default",
  );
  const text = lines.join("\n");
  assert.match(
    text,
    /agents\.default\.interval: expected the collection interval in seconds, a number from 1 to 3600, found "5s" \(a string\) \(write 5 without the unit\)/,
  );
  assert.match(text, /agents\.default\.metrics: expected a non-empty list of metric names/);
  assert.match(text, /agents\.default\.plugins: expected a list of plugins/);
  assert.match(
    text,
    /agents\.default\.heartbeat_ttl: expected a whole number of seconds from 2 to 3600, found 1/,
  );
  assert.match(
    text,
    /agents\.default\.buffer: expected a whole number of batches from 1 to 1000000, found 0/,
  );
  assert.match(text, /agents\.default\.plugin_timeout_ms: expected a whole number of milliseconds/);
  assert.match(text, /agents\.default\.log_level: expected one of debug, info, warn, error/);
  assert.match(problems({ interval: 0, metrics: ["cpu"] }).join(), /interval: .*found 0/);
  assert.match(problems({ interval: 3601, metrics: ["cpu"] }).join(), /interval: .*found 3601/);
  assert.match(problems({ metrics: ["cpu"] }).join(), /interval: .*found nothing/);
  assert.match(problems([1, 2]).join(), /expected an agent configuration object/);
});

Deno.test("agent config: unknown metric, key and plugin get a did-you-mean", () => {
  const text = problems({
    interval: 5,
    metrics: ["cpu", "disk_read", "bogus", "cpu"],
    plugins: ["duplicate_filtr", "plugins.nope.Nope"],
    intervall: 3,
  }).join("\n");
  assert.match(
    text,
    /metrics\[1\]: expected a metric name .* found unknown metric "disk_read" \(did you mean "disk read"\?\)/,
  );
  assert.match(text, /metrics\[2\]: .*unknown metric "bogus"/);
  assert.match(text, /metrics\[3\]: expected each metric once/);
  assert.match(
    text,
    /plugins\[0\]: expected a built-in plugin .* found unknown plugin "duplicate_filtr" \(did you mean "duplicate_filter"\?\)/,
  );
  assert.match(text, /plugins\[1\]: .*unknown plugin "plugins.nope.Nope"/);
  assert.match(
    text,
    /intervall: expected one of the agent configuration keys .* \(did you mean "interval"\?\)/,
  );
});

Deno.test("agent config: plugin settings are checked against each built-in's schema", () => {
  const text = problems({
    interval: 5,
    metrics: ["cpu"],
    plugins: ["duplicate_filter", "threshold_alert", { name: "logger", config: { level: "loud" } }],
    plugin_configs: {
      DuplicateFilterPlugin: { tolerance: -1, max_silent_interval: 3 },
      ThresholdAlertPlugin: { cpu: 120, "net in": -5, consecutive: 0, cpuu: 1 },
      NotAPlugin: {},
    },
  }).join("\n");
  assert.match(text, /plugin_configs\.DuplicateFilterPlugin\.tolerance: expected a number >= 0/);
  assert.match(
    text,
    /plugin_configs\.DuplicateFilterPlugin\.max_silent_interval: .*unknown setting "max_silent_interval" \(did you mean "max_silent_intervals"\?\)/,
  );
  assert.match(
    text,
    /plugin_configs\.ThresholdAlertPlugin\.cpu: expected a number from 0 to 100 \(percent\)/,
  );
  assert.match(text, /plugin_configs\.ThresholdAlertPlugin\.net in: expected a number >= 0/);
  assert.match(
    text,
    /plugin_configs\.ThresholdAlertPlugin\.consecutive: expected a whole number from 1 to 1000/,
  );
  assert.match(text, /plugin_configs\.ThresholdAlertPlugin\.cpuu: .*\(did you mean "cpu"\?\)/);
  assert.match(
    text,
    /plugins\[2\]\.config\.level: expected one of "debug", "info", "warn", "error"/,
  );
  assert.match(text, /plugin_configs\.NotAPlugin: expected the name of a built-in plugin/);
});

Deno.test("agent config: duplicates and conflicting settings are refused", () => {
  const text = problems({
    interval: 5,
    metrics: ["cpu"],
    plugins: [
      "duplicate_filter",
      "DuplicateFilterPlugin",
      { name: "threshold_alert", config: { cpu: 70 } },
    ],
    plugin_configs: { threshold_alert: { cpu: 60 } },
  }).join("\n");
  assert.match(
    text,
    /plugins\[1\]: expected each plugin once, found plugin "duplicate_filter" a second time/,
  );
  assert.match(
    text,
    /plugins\[2\]\.config: expected the settings of "threshold_alert" in one place/,
  );
});

Deno.test("agent config: URL plugins must be known when the list of pins is given", () => {
  const value = {
    interval: 5,
    metrics: ["cpu"],
    plugins: [{ name: "spike" }, { name: "logger", url: "https://x.example/a.ts" }],
  };
  const text = problems(value, "", { knownPlugins: { url: ["spiky"] } }).join("\n");
  assert.match(text, /plugins\[0\]\.name: .*unknown plugin "spike" \(did you mean "spiky"\?\)/);
  assert.match(text, /plugins\[1\]\.url: expected no url: "logger" is a built-in plugin/);
  const ok = validateAgentConfig(
    { interval: 5, metrics: ["cpu"], plugins: ["spiky"] },
    "",
    { knownPlugins: { url: ["spiky"] } },
  );
  assert.deepEqual(ok.issues, []);
  assert.deepEqual(ok.config?.plugins, [{ name: "spiky", kind: "url", config: {} }]);
  assert.match(
    problems({ interval: 5, metrics: ["cpu"], plugins: [{ name: "x", url: "ftp://a/b" }] }).join(),
    /plugins\[0\]\.url: expected an absolute https: or http: URL/,
  );
});
