/**
 * monitor.yaml: parsing with positions, the schema of its fixed keys, every
 * kind of issue with its exact line:column and key path, did-you-mean,
 * several issues at once, defaults, the shipped file, and agreement with what
 * the services themselves accept.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { DEFAULT_BROKER } from "../agent/main.ts";
import { DEFAULT_ADMIN, DEFAULT_LISTEN } from "../broker/mod.ts";
import { DEFAULT_COMMAND_TIMEOUT_MS } from "../broker/broker.ts";
import { resolveServiceSettings } from "./service_settings.ts";
import { DEFAULT_TOPICS } from "../common/messages.ts";
import {
  brokerReplicas,
  checkMonitorConfig,
  ConfigError,
  type ConfigIssue,
  databasePath,
  DEFAULT_AGENT_CONFIG_JSON,
  formatIssue,
  loadMonitorConfig,
  type MonitorConfig,
  monitorConfigDocument,
  parseMonitorConfig,
  renderMonitorConfig,
  stateDirPath,
  validateAgentConfig,
} from "./mod.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const OPTS = { hostname: "test-host" };

/** The issues of `lines` (joined with newlines), formatted as `validate` prints them. */
function problems(lines: string[]): string[] {
  const { config, issues } = checkMonitorConfig(lines.join("\n") + "\n", "m.yaml", OPTS);
  assert.equal(config, undefined, "expected issues, the document was accepted");
  return issues.map((issue) => formatIssue(issue, "m.yaml"));
}

/** The only issue of `lines`. */
function problem(lines: string[]): ConfigIssue {
  const { issues } = checkMonitorConfig(lines.join("\n") + "\n", "m.yaml", OPTS);
  assert.equal(issues.length, 1, `expected one issue, got:\n${issues.map((i) => formatIssue(i))}`);
  return issues[0];
}

function thrown(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

function valid(lines: string[]): MonitorConfig {
  return parseMonitorConfig(lines.join("\n") + "\n", "m.yaml", OPTS);
}

Deno.test("monitor.yaml: an empty file resolves to the embedded defaults", () => {
  for (const text of ["", "# only a comment\n", "---\n"]) {
    const config = parseMonitorConfig(text, "m.yaml", { hostname: "box-1", dir: "/srv/mon" });
    assert.equal(config.state_dir, ".monitor");
    assert.equal(stateDirPath(config), "/srv/mon/.monitor");
    assert.equal(databasePath(config), "/srv/mon/.monitor/monitor.db");
    assert.equal(config.log_level, "info");
    assert.deepEqual(config.store, {
      backend: "embedded",
      endpoints: ["127.0.0.1:2379"],
      prefix: "/monitor",
    });
    assert.deepEqual(config.bus, {
      backend: "embedded",
      brokers: ["127.0.0.1:9092"],
      topics: { ...DEFAULT_TOPICS },
    });
    assert.deepEqual(config.broker, {
      listen: "127.0.0.1:50052",
      admin: "127.0.0.1:50053",
      command_timeout: 10,
      max_batch_samples: 1000,
      replicas: 1,
      max_streams: 5000,
    });
    assert.deepEqual(config.analysis, {
      group: "analysis",
      command_timeout: 15,
      summary_interval: 10,
      http: "127.0.0.1:8090",
      history: { raw_retention_hours: 24, rollup_retention_days: 7, max_size_mb: 1024 },
    });
    assert.deepEqual(config.agent, {
      id: "box-1",
      broker: "127.0.0.1:50052",
      metrics_source: "auto",
    });
    assert.deepEqual(config.agent_documents, { default: DEFAULT_AGENT_CONFIG_JSON });
    assert.deepEqual(config.agents.default, validateAgentConfig(DEFAULT_AGENT_CONFIG_JSON).config);
    assert.deepEqual(config.plugins, {});
  }
});

Deno.test("monitor.yaml: the defaults are the ones the services use themselves", () => {
  const config = parseMonitorConfig("", "m.yaml", OPTS);
  assert.equal(config.broker.listen, DEFAULT_LISTEN);
  assert.equal(config.broker.admin, DEFAULT_ADMIN);
  assert.equal(config.agent.broker, DEFAULT_BROKER);
  assert.equal(config.broker.command_timeout * 1000, DEFAULT_COMMAND_TIMEOUT_MS);
});

Deno.test("monitor.yaml: a full valid file resolves every key", () => {
  const config = valid([
    "state_dir: /var/lib/monitor",
    "log_level: debug",
    "store:",
    "  backend: etcd",
    "  endpoints: [10.0.0.5:2379, 10.0.0.6:2379]",
    "  prefix: /fleet/",
    "bus:",
    "  backend: kafka",
    "  brokers: [10.0.0.7:9092]",
    "  topics: { data: fleet-data }",
    "broker:",
    "  listen: 0.0.0.0:6000",
    "  admin: 'off'",
    "  token: s3cret",
    "  sink: samples.jsonl",
    "  command_timeout: 2.5",
    "  max_batch_samples: 200",
    "  tls: { cert: b.pem, key: b-key.pem, ca: ca.pem, require_client_cert: true }",
    "analysis:",
    "  group: ops",
    "  summary_interval: 30",
    "  http: 0.0.0.0:8443",
    "  http_token_file: dashboard-token",
    "  tls: { cert: d.pem, key: d-key.pem }",
    "  history: { raw_retention_hours: 6, rollup_retention_days: 30, max_size_mb: 200 }",
    "agent:",
    "  id: web-1",
    "  metrics_source: native",
    "  tls: { ca: ca.pem, server_name: broker.example }",
    "agents:",
    "  default: { interval: 10, metrics: [cpu], plugins: [spike] }",
    "  web-2:",
    "    interval: 1",
    "    metrics: [memory, disk]",
    "    plugins: [threshold_alert]",
    "    plugin_configs: { threshold_alert: { memory: 50 } }",
    "plugins:",
    "  spike:",
    "    url: https://plugins.example.com/spike@1.2.0/mod.ts",
    "    permissions: { net: [api.example.com:443], env: [SPIKE_TOKEN] }",
    "    config: { factor: 3 }",
  ]);
  assert.equal(config.state_dir, "/var/lib/monitor");
  assert.equal(stateDirPath(config), "/var/lib/monitor");
  assert.equal(config.log_level, "debug");
  assert.deepEqual(config.store, {
    backend: "etcd",
    endpoints: ["10.0.0.5:2379", "10.0.0.6:2379"],
    prefix: "/fleet",
  });
  assert.deepEqual(config.bus.topics, { ...DEFAULT_TOPICS, data: "fleet-data" });
  assert.deepEqual(config.broker, {
    listen: "0.0.0.0:6000",
    admin: "off",
    token: "s3cret",
    sink: "samples.jsonl",
    command_timeout: 2.5,
    max_batch_samples: 200,
    replicas: 1,
    max_streams: 5000,
    tls: { cert: "b.pem", key: "b-key.pem", ca: "ca.pem", require_client_cert: true },
  });
  assert.deepEqual(config.analysis, {
    group: "ops",
    command_timeout: 15,
    summary_interval: 30,
    http: "0.0.0.0:8443",
    http_token_file: "dashboard-token",
    tls: { cert: "d.pem", key: "d-key.pem" },
    history: { raw_retention_hours: 6, rollup_retention_days: 30, max_size_mb: 200 },
  });
  // The local agent talks to this file's broker (0.0.0.0 read as loopback) with its token.
  assert.deepEqual(config.agent, {
    id: "web-1",
    broker: "127.0.0.1:6000",
    token: "s3cret",
    metrics_source: "native",
    tls: { ca: "ca.pem", server_name: "broker.example" },
  });
  assert.deepEqual(Object.keys(config.agents), ["default", "web-2"]);
  assert.deepEqual(config.agents.default.plugins, [{ name: "spike", kind: "url", config: {} }]);
  assert.deepEqual(config.agents["web-2"].plugins, [
    { name: "threshold_alert", kind: "builtin", config: { memory: 50 } },
  ]);
  assert.deepEqual(config.agent_documents["web-2"].plugin_configs, {
    threshold_alert: { memory: 50 },
  });
  assert.deepEqual(config.plugins.spike, {
    url: "https://plugins.example.com/spike@1.2.0/mod.ts",
    version: "1.2.0",
    permissions: { net: ["api.example.com:443"], read: [], env: ["SPIKE_TOKEN"] },
    config: { factor: 3 },
  });
});

Deno.test("monitor.yaml: agents.default is the seed's configuration when only other agents are given", () => {
  const config = valid(["agents:", "  web-1: { interval: 2, metrics: [cpu] }"]);
  assert.deepEqual(Object.keys(config.agents).sort(), ["default", "web-1"]);
  assert.deepEqual(config.agent_documents.default, DEFAULT_AGENT_CONFIG_JSON);
  assert.deepEqual(config.agent_documents["web-1"], { interval: 2, metrics: ["cpu"] });
});

Deno.test("monitor.yaml: an unknown top-level key names its line:column and a did-you-mean", () => {
  const issue = problem(["# comment", "stor:", "  backend: etcd"]);
  assert.equal(
    formatIssue(issue, "m.yaml"),
    'm.yaml:2:1: stor: expected one of the top-level keys state_dir, log_level, log_format, store, bus, broker, agent, analysis, agents, plugins, found unknown key "stor" (did you mean "store"?)',
  );
});

Deno.test("monitor.yaml: an unknown nested key points at the key", () => {
  assert.deepEqual(problems(["broker:", "  listen: 127.0.0.1:1", "  lisen: 127.0.0.1:2"]), [
    'm.yaml:3:3: broker.lisen: expected one of the keys of broker: listen, admin, admin_token, admin_token_file, admin_token_env, token, token_file, token_env, sink, command_timeout, max_batch_samples, replicas, max_streams, tls, found unknown key "lisen" (did you mean "listen"?)',
  ]);
  const issue = problem(["bus:", "  topics: {data: d, alrets: a}"]);
  assert.deepEqual([issue.path, issue.line, issue.column], ["bus.topics.alrets", 2, 21]);
  assert.equal(issue.hint, 'did you mean "alerts"?');
  // Far from every known key: no suggestion.
  assert.equal(problem(["zzzzzzzz: 1"]).hint, undefined);
});

Deno.test("monitor.yaml: a value of the wrong type points at the value", () => {
  assert.deepEqual(
    problems(["agents:", "  default:", "    interval: 5s", "    metrics: [cpu]"]),
    [
      'm.yaml:3:15: agents.default.interval: expected the collection interval in seconds, a number from 1 to 3600, found "5s" (a string) (write 5 without the unit)',
    ],
  );
  assert.deepEqual(problems(["broker:", "  listen: 50052"]), [
    'm.yaml:2:11: broker.listen: expected an address host:port, e.g. 127.0.0.1:50052, found 50052 (a number) (write "127.0.0.1:50052", host and port)',
  ]);
  assert.deepEqual(problems(["analysis:", "  command_timeout: 0"]), [
    "m.yaml:2:20: analysis.command_timeout: expected a number of seconds greater than 0, found 0 (a number)",
  ]);
  assert.deepEqual(
    problems(["analysis:", "  history: { raw_retention_hours: 24h, max_sze_mb: 5 }"]),
    [
      'm.yaml:2:35: analysis.history.raw_retention_hours: expected a number of hours greater than 0, found "24h" (a string) (write 24 without the unit)',
      'm.yaml:2:40: analysis.history.max_sze_mb: expected one of the keys of analysis.history: raw_retention_hours, rollup_retention_days, max_size_mb, found unknown key "max_sze_mb" (did you mean "max_size_mb"?)',
    ],
  );
  assert.deepEqual(problems(["analysis:", "  http: 0.0.0.0:8090"]), [
    'm.yaml:2:9: analysis.http: expected a loopback address (127.0.0.1 or [::1]) unless analysis.http_token or analysis.tls is set, found "0.0.0.0:8090" (a string)',
  ]);
  assert.deepEqual(problems(["analysis:", "  http: 8090"]), [
    'm.yaml:2:9: analysis.http: expected the dashboard\'s address host:port, e.g. 127.0.0.1:8090, or "off", found 8090 (a number) (write "127.0.0.1:8090", host and port)',
  ]);
  assert.deepEqual(problems(["store: etcd"]), [
    'm.yaml:1:8: store: expected a mapping with the keys backend, endpoints, prefix, found "etcd" (a string)',
  ]);
  assert.deepEqual(problems(["log_level: verbose"]), [
    'm.yaml:1:12: log_level: expected "debug", "info", "warn" or "error", found "verbose" (a string)',
  ]);
});

Deno.test("monitor.yaml: a wrong choice suggests the closest one", () => {
  const issue = problem(["store:", "  backend: etdc"]);
  assert.deepEqual(
    [issue.path, issue.line, issue.column, issue.expected, issue.found, issue.hint],
    [
      "store.backend",
      2,
      12,
      '"embedded" or "etcd"',
      '"etdc" (a string)',
      'did you mean "etcd"?',
    ],
  );
  assert.equal(problem(["bus: {backend: kafak}"]).hint, 'did you mean "kafka"?');
});

Deno.test("monitor.yaml: each bad list item is named by its index and column", () => {
  assert.deepEqual(problems(["bus:", "  brokers: [10.0.0.1:9092, kafka, 10.0.0.3:99999]"]), [
    'm.yaml:2:28: bus.brokers[1]: expected host:port, e.g. 10.0.0.5:9092, found "kafka" (a string)',
    'm.yaml:2:35: bus.brokers[2]: expected host:port, e.g. 10.0.0.5:9092, found "10.0.0.3:99999" (a string)',
  ]);
  assert.deepEqual(problems(["store:", "  endpoints: 10.0.0.1:2379"]), [
    'm.yaml:2:14: store.endpoints: expected a non-empty list of host:port, e.g. [127.0.0.1:2379], found "10.0.0.1:2379" (a string) (write [10.0.0.1:2379], a list)',
  ]);
  const metrics = problems([
    "agents:",
    "  default:",
    "    interval: 5",
    "    metrics:",
    "      - cpu",
    "      - memroy",
  ]);
  assert.deepEqual(metrics, [
    'm.yaml:6:9: agents.default.metrics[1]: expected a metric name ("cpu", "memory", "disk read", "disk write", "net in", "net out", "disk"), found unknown metric "memroy" (did you mean "memory"?)',
  ]);
});

Deno.test("monitor.yaml: a missing key points at the entry that lacks it", () => {
  assert.deepEqual(problems(["agents:", "  web-1:", "    metrics: [cpu]"]), [
    "m.yaml:2:3: agents.web-1.interval: expected the collection interval in seconds, a number from 1 to 3600, found nothing",
  ]);
  assert.deepEqual(problems(["broker:", "  tls:", "    cert: b.pem"]), [
    "m.yaml:2:3: broker.tls.key: expected the private key (PEM file) together with cert, found nothing",
  ]);
  // An empty entry (`default:` and nothing) points at its key.
  const issue = problem(["agents:", "  default:"]);
  assert.deepEqual([issue.path, issue.line, issue.column, issue.found], [
    "agents.default",
    2,
    3,
    "null",
  ]);
});

Deno.test("monitor.yaml: every issue of a document is reported, in file order", () => {
  const found = checkMonitorConfig(
    [
      "store:",
      "  backend: etdc",
      "bus:",
      "  backend: kafka",
      "  brokers: []",
      "broker:",
      "  admin: 0.0.0.0:50053",
      "  max_batch_samples: 10.5",
      "agent:",
      "  id: all",
      "agents:",
      "  default:",
      "    interval: 0",
      "    metrics: [cpu, cpu]",
      "    plugins: [duplicate_filtr]",
      "  bad id: {interval: 1, metrics: [cpu]}",
      "plugins:",
      "  spike:",
      "    url: ftp://example.com/spike.ts",
      "    version: 1.0.0",
      "    permissions: { write: [/tmp] }",
      "lg_level: info",
    ].join("\n"),
    "m.yaml",
    OPTS,
  );
  assert.equal(found.config, undefined);
  assert.deepEqual(found.issues.map((i) => `${i.line}:${i.column} ${i.path}`), [
    "2:12 store.backend",
    "5:12 bus.brokers",
    "7:10 broker.admin",
    "8:22 broker.max_batch_samples",
    "10:7 agent.id",
    "13:15 agents.default.interval",
    "14:20 agents.default.metrics[1]",
    "15:15 agents.default.plugins[0]",
    "16:3 agents.bad id",
    "19:10 plugins.spike.url",
    "21:20 plugins.spike.permissions.write",
    "22:1 lg_level",
  ]);
  assert.equal(found.issues[7].hint, 'did you mean "duplicate_filter"?');
  assert.equal(found.issues[11].hint, 'did you mean "log_level"?');
  // parseMonitorConfig throws one ConfigError carrying them all.
  const error = thrown(() => parseMonitorConfig("store: {backend: x}\nbus: 3\n", "f.yaml"));
  assert.equal(error.issues.length, 2);
  assert.match(error.message, /^f\.yaml:1:18: store\.backend: expected/m);
  assert.match(error.message, /^f\.yaml:2:6: bus: expected a mapping/m);
});

Deno.test("monitor.yaml: YAML syntax errors name the line, column and entry", () => {
  assert.deepEqual(problems(["store:", "\tbackend: etcd"]), [
    "m.yaml:2:1: store: expected valid YAML, found Tabs are not allowed as indentation",
  ]);
  assert.deepEqual(problems(["agents:", "  default: {interval: 5}", "agents: {}"]), [
    'm.yaml:3:1: agents: expected each key once in a mapping, found "agents" again (first at line 1)',
  ]);
  assert.deepEqual(problems(["store: {}", "---", "bus: {}"]), [
    "m.yaml:2:1: (top level): expected one YAML document, found a second document (after ---)",
  ]);
  const [unclosed] = problems(["bus:", "  brokers: [a:1"]);
  assert.match(unclosed, /^m\.yaml:3:1: bus\.brokers(\[0\])?: expected valid YAML, found .*\]/);
});

Deno.test("monitor.yaml: keys with dots and aliases are located", () => {
  // plugin_configs keyed by the dotted seed name: the longest matching key wins.
  const issue = problem([
    "agents:",
    "  default:",
    "    interval: 5",
    "    metrics: [cpu]",
    "    plugins: [plugins.threshold_alert.ThresholdAlertPlugin]",
    "    plugin_configs:",
    "      plugins.threshold_alert.ThresholdAlertPlugin: { cpu: 180 }",
  ]);
  assert.equal(
    issue.path,
    "agents.default.plugin_configs.plugins.threshold_alert.ThresholdAlertPlugin.cpu",
  );
  assert.deepEqual([issue.line, issue.column], [7, 60]);
  // An entry written through an alias is checked under each name, located at the anchored node.
  const aliased = checkMonitorConfig(
    ["agents:", "  web-1: &base", "    interval: 5", "    metrics: [cpu, netin]", "  web-2: *base"]
      .join("\n"),
    "m.yaml",
    OPTS,
  ).issues.map((i) => `${i.line}:${i.column} ${i.path} ${i.hint}`);
  assert.deepEqual(aliased, [
    '4:20 agents.web-1.metrics[1] did you mean "net in"?',
    '4:20 agents.web-2.metrics[1] did you mean "net in"?',
  ]);
});

Deno.test("monitor.yaml: plugins: is checked by the plugin loader's rules, agents may use declared names", () => {
  assert.deepEqual(
    problems([
      "plugins:",
      "  spike:",
      "    url: https://plugins.example.com/spike/mod.ts",
      "    permisions: { net: [example.com] }",
    ]),
    [
      "m.yaml:2:3: plugins.spike.version: expected a version (give version:, or put it in the URL like …/spike@1.2.0/mod.ts), found nothing",
      'm.yaml:4:5: plugins.spike.permisions: expected one of url, version, permissions, config, found "permisions" (a string) (did you mean "permissions"?)',
    ],
  );
  // An agent naming a plugin that is not declared.
  const issue = problem([
    "agents:",
    "  default: { interval: 5, metrics: [cpu], plugins: [spike] }",
  ]);
  assert.equal(issue.path, "agents.default.plugins[0]");
  assert.deepEqual([issue.line, issue.column], [2, 53]);
  assert.equal(issue.found, 'unknown plugin "spike"');
  // A plugin object's unknown name points at the value, its unknown key at the key.
  assert.deepEqual(
    checkMonitorConfig(
      "agents: {default: {interval: 5, metrics: [cpu], plugins: [{name: my.plugin, cfg: 1}]}}\n",
      "m.yaml",
      OPTS,
    ).issues.map((i) => `${i.line}:${i.column} ${i.path}`),
    ["1:66 agents.default.plugins[0].name", "1:77 agents.default.plugins[0].cfg"],
  );
  // A declared plugin with problems of its own does not also fail the agents naming it.
  const paths = checkMonitorConfig(
    [
      "plugins: { spike: { url: 'https://x.example/spike@1.0.0/mod.ts', config: 3 } }",
      "agents: { default: { interval: 5, metrics: [cpu], plugins: [spike] } }",
    ].join("\n"),
    "m.yaml",
    OPTS,
  ).issues.map((i) => i.path);
  assert.deepEqual(paths, ["plugins.spike.config"]);
});

Deno.test("monitor.yaml: cross-key rules (admin off loopback, mTLS, topics, tls pairs)", () => {
  assert.deepEqual(problems(["broker:", "  admin: 10.0.0.1:50053"]), [
    'm.yaml:2:10: broker.admin: expected a loopback address (127.0.0.1 or [::1]) unless broker.admin_token is set, found "10.0.0.1:50053" (a string)',
  ]);
  valid(["broker:", "  admin: 10.0.0.1:50053", "  admin_token: t"]);
  assert.deepEqual(
    problems(["broker:", "  tls: {cert: c.pem, key: k.pem, require_client_cert: yes}"]),
    [
      'm.yaml:2:55: broker.tls.require_client_cert: expected true or false (refuse agents without a client certificate), found "yes" (a string)',
    ],
  );
  assert.deepEqual(
    problems(["broker:", "  tls: {cert: c.pem, key: k.pem, require_client_cert: true}"]),
    [
      "m.yaml:2:3: broker.tls.ca: expected the CA (PEM file) client certificates must chain to, since require_client_cert is true, found nothing",
    ],
  );
  // A client CA alone asks for mTLS, which needs the listener's TLS pair: one issue at ca.
  assert.deepEqual(problems(["broker:", "  tls: {ca: ca.pem}"]), [
    "m.yaml:2:13: broker.tls.ca: mTLS needs TLS: expected broker.tls.cert and broker.tls.key too, found neither",
  ]);
  assert.deepEqual(problems(["bus:", "  topics:", "    data: same", "    alerts: same"]), [
    'm.yaml:4:13: bus.topics.alerts: expected a topic of its own (bus.topics.data is "same"), found "same" (a string)',
  ]);
  assert.deepEqual(problems(["agent:", "  tls: {cert: a.pem}"]), [
    "m.yaml:2:3: agent.tls.key: expected both cert and key (PEM files) for mTLS, or neither, found nothing",
  ]);
});

Deno.test("monitor.yaml: the rendered configuration is a valid monitor.yaml that resolves the same", () => {
  const config = valid([
    "broker: { listen: 0.0.0.0:6000, token: t }",
    "agents:",
    "  default:",
    "    interval: 5",
    "    metrics: [cpu, memory]",
    "    plugins: [plugins.duplicate_filter.DuplicateFilterPlugin, threshold_alert, spike]",
    "    plugin_configs: { ThresholdAlertPlugin: { cpu: 80 } }",
    "plugins:",
    "  spike: { url: 'https://x.example/spike@1.0.0/mod.ts', permissions: { env: [B, A] } }",
  ]);
  const text = renderMonitorConfig(config);
  assert.match(text, /^# m\.yaml, resolved/);
  const again = parseMonitorConfig(text, "m.yaml", OPTS);
  assert.deepEqual(monitorConfigDocument(again), monitorConfigDocument(config));
  assert.equal(renderMonitorConfig(again), text);
  // Defaults are written out, including the built-in plugins' settings.
  const doc = parseYaml(text);
  assert.equal(doc.broker.max_batch_samples, 1000);
  assert.equal(doc.agent.broker, "127.0.0.1:6000");
  assert.equal(doc.agent.token, "t");
  assert.deepEqual(doc.agents.default.plugins[1], {
    name: "threshold_alert",
    config: { consecutive: 3, hysteresis: 5, cpu: 80 },
  });
  assert.deepEqual(doc.plugins.spike.permissions, { net: [], read: [], env: ["A", "B"] });
});

Deno.test("monitor.yaml: the shipped file validates clean and is the seed's configuration", async () => {
  const config = await loadMonitorConfig(join(ROOT, "monitor.yaml"), { hostname: "h" });
  assert.equal(config.store.backend, "embedded");
  assert.equal(config.bus.backend, "embedded");
  assert.equal(config.state_dir, ".monitor");
  assert.equal(stateDirPath(config), join(ROOT, ".monitor"));
  assert.deepEqual(config.agent_documents.default, DEFAULT_AGENT_CONFIG_JSON);
  assert.deepEqual(config.plugins, {});
  // Its commented alternatives (etcd, Kafka, broker options, an agent of its own, a URL
  // plugin) validate too once uncommented.
  const [head, tail] = text(await Deno.readTextFile(join(ROOT, "monitor.yaml")));
  const edited = parseMonitorConfig(head + tail, "edited.yaml", { hostname: "h" });
  assert.equal(edited.store.backend, "etcd");
  assert.deepEqual(edited.store.endpoints, ["127.0.0.1:2379"]);
  assert.equal(edited.bus.backend, "kafka");
  assert.deepEqual(edited.bus.brokers, ["127.0.0.1:9092"]);
  assert.equal(edited.broker.token, "change-me");
  assert.equal(edited.agent.token, "change-me");
  assert.equal(edited.agent.id, "web-1");
  assert.deepEqual(edited.broker.tls, {
    cert: "broker.pem",
    key: "broker-key.pem",
    ca: "ca.pem",
    require_client_cert: true,
  });
  assert.deepEqual(edited.agents["web-1"].plugins.map((p) => p.name), ["threshold_alert", "spike"]);
  assert.equal(edited.plugins.spike.version, "1.2.0");
  assert.deepEqual(edited.plugins.spike.permissions, {
    net: ["api.example.com:443"],
    read: ["/var/log/app"],
    env: ["SPIKE_TOKEN"],
  });

  function text(shipped: string): [string, string] {
    const at = shipped.indexOf("\nplugins: {}\n# plugins:\n");
    assert.ok(at > 0, "the URL plugin example follows plugins: {}");
    const head = shipped.slice(0, at)
      .replaceAll("  backend: embedded # embedded: SQLite in state_dir, for one machine\n", "")
      .replace(/^ {2}# (backend|endpoints|brokers|token|sink|tls|id|broker|web-1):/gm, "  $1:")
      .replace(/^ {2}# {3}/gm, "    ");
    const tail = shipped.slice(at).replace("\nplugins: {}\n# plugins:\n", "\nplugins:\n")
      .replace(/^# {3}/gm, "  ");
    return [head, tail];
  }
});

Deno.test("monitor.yaml: loadMonitorConfig names a missing file; relative paths follow the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "monitor-config-" });
  try {
    const missing = join(dir, "nope.yaml");
    const error = await loadMonitorConfig(missing).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof ConfigError);
    assert.equal(
      error.message,
      `${missing}: (top level): expected a readable monitor.yaml, found no such file`,
    );
    const file = join(dir, "m.yaml");
    await Deno.writeTextFile(file, "state_dir: state\nbroker: { sink: out/s.jsonl }\n");
    const config = await loadMonitorConfig(file);
    assert.equal(stateDirPath(config), join(dir, "state"));
    assert.equal(config.source.file, file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("monitor.yaml: agrees with the services' own settings (store, bus, topics, state_dir)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "monitor-config-" });
  try {
    const file = join(dir, "monitor.yaml");
    const good = [
      "state_dir: st",
      "store: { backend: etcd, endpoints: [127.0.0.1:2379, 127.0.0.1:22379], prefix: /fleet/ }",
      "bus: { backend: kafka, brokers: [127.0.0.1:9092], topics: { data: d1, alerts: a1 } }",
    ].join("\n");
    await Deno.writeTextFile(file, good);
    const service = await resolveServiceSettings("broker", { config: file });
    const config = await loadMonitorConfig(file);
    assert.equal(service.stateDir, stateDirPath(config));
    assert.equal(service.store.path, databasePath(config));
    assert.deepEqual(
      {
        backend: service.store.backend,
        endpoints: service.store.endpoints,
        prefix: service.store.prefix,
      },
      config.store,
    );
    assert.deepEqual(
      { backend: service.bus.backend, brokers: service.bus.brokers, topics: service.topics },
      config.bus,
    );
    // What a service refuses, monitor.yaml refuses too, at the same key.
    const bad: Array<[string, string]> = [
      ["store: { backend: consul }", "store.backend"],
      ["store: { prefix: monitor }", "store.prefix"],
      ["bus: { backend: rabbit }", "bus.backend"],
      ["bus: { topics: { data: 'a b' } }", "bus.topics.data"],
      ["state_dir: 7", "state_dir"],
      ["bus: 3", "bus"],
    ];
    for (const [text, path] of bad) {
      await Deno.writeTextFile(file, text + "\n");
      const refused = await resolveServiceSettings("broker", { config: file }).then(
        () => undefined,
        (e: ConfigError) => e.issues.map((i) => i.path),
      );
      assert.deepEqual(refused, [path], `service on ${text}`);
      const mine = checkMonitorConfig(text + "\n", file, OPTS).issues.map((i) => i.path);
      assert.deepEqual(mine, [path], `monitor.yaml on ${text}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("monitor.yaml: an unknown plugin_configs entry points at its key; BOM and CRLF are fine", () => {
  assert.deepEqual(
    problems([
      "agents:",
      "  default:",
      "    interval: 5",
      "    metrics: [cpu]",
      "    plugins: [threshold_alert]",
      "    plugin_configs:",
      "      ThresholdAlert: { cpu: 50 }",
    ]),
    [
      'm.yaml:7:7: agents.default.plugin_configs.ThresholdAlert: expected the name of a built-in plugin or of a plugin listed in plugins, found unknown plugin "ThresholdAlert" (did you mean "threshold_alert"?)',
    ],
  );
  const issue = problem(["\uFEFFstore: {backend: etcd}\r", "bus: {backend: kafak}\r"]);
  assert.deepEqual([issue.path, issue.line, issue.column], ["bus.backend", 2, 16]);
});

Deno.test("monitor.yaml: broker.replicas: each broker on its own port; the local agent gets every one", () => {
  const { config } = checkMonitorConfig(
    "broker:\n  listen: 0.0.0.0:7000\n  replicas: 3\n  max_streams: 2500\n",
    "m.yaml",
    OPTS,
  );
  assert.ok(config);
  assert.equal(config.broker.replicas, 3);
  assert.equal(config.broker.max_streams, 2500);
  // The admin ports follow the brokers' ports when broker.admin is not given.
  assert.deepEqual(brokerReplicas(config.broker), [
    { listen: "0.0.0.0:7000", admin: "127.0.0.1:7003" },
    { listen: "0.0.0.0:7001", admin: "127.0.0.1:7004" },
    { listen: "0.0.0.0:7002", admin: "127.0.0.1:7005" },
  ]);
  assert.equal(config.agent.broker, "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002");
  // The rendered file resolves the same.
  const again = checkMonitorConfig(renderMonitorConfig(config), "r.yaml", OPTS).config;
  assert.deepEqual(again?.broker, config.broker);
  assert.equal(again?.agent.broker, config.agent.broker);
});

Deno.test("monitor.yaml: replicas whose admin ports clash with the brokers', or out of range, are named", () => {
  assert.deepEqual(
    problems(["broker:", "  listen: 127.0.0.1:7000", "  admin: 127.0.0.1:7001", "  replicas: 2"]),
    [
      'm.yaml:3:10: broker.admin: expected admin ports (127.0.0.1:7001 and the next 1) apart from the brokers\' ports 127.0.0.1:7000 to 127.0.0.1:7001, found "127.0.0.1:7001" (a string) (e.g. 127.0.0.1:7002)',
    ],
  );
  assert.equal(problem(["broker:", "  replicas: 0"]).path, "broker.replicas");
  assert.equal(problem(["broker:", "  replicas: 1000"]).path, "broker.replicas");
  assert.equal(
    problem(["broker:", "  listen: 127.0.0.1:65535", "  replicas: 2"]).path,
    "broker.replicas",
  );
  assert.equal(problem(["broker:", "  max_streams: many"]).path, "broker.max_streams");
});

Deno.test("monitor.yaml: agent.broker takes one address, a comma-separated string or a list", () => {
  const agentBroker = (value: string) =>
    checkMonitorConfig(`agent:\n  broker: ${value}\n`, "m.yaml", OPTS).config?.agent.broker;
  assert.equal(agentBroker("10.0.0.5:50052"), "10.0.0.5:50052");
  assert.equal(agentBroker('"a:1,b:2"'), "a:1,b:2");
  assert.equal(agentBroker("[a:1, b:2]"), "a:1,b:2");
  const issue = problem(["agent:", "  broker: [a:1, b]"]);
  assert.equal(issue.path, "agent.broker");
  assert.match(issue.hint ?? "", /item 2: expected host:port/);
});

Deno.test("monitor.yaml: log_format is text (default) or json; anything else names the key", () => {
  const { config } = checkMonitorConfig("log_format: json\n", "m.yaml", OPTS);
  assert.equal(config?.log_format, "json");
  assert.equal(checkMonitorConfig("{}\n", "m.yaml", OPTS).config?.log_format, "text");
  assert.deepEqual(problems(["log_format: jsn"]), [
    'm.yaml:1:13: log_format: expected "text" or "json", found "jsn" (a string) (did you mean "json"?)',
  ]);
});
