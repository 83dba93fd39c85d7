/**
 * The supervisor's command lines (scoped permissions derived from
 * monitor.yaml), `deno task up --print-commands`, and the diff of two
 * monitor.yaml versions.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  brokerReplicaCommand,
  diffPlans,
  formatCommand,
  parsePlan,
  pinCommand,
  SERVICE_NAMES,
  serviceCommand,
  supervisorCommand,
} from "./mod.ts";
import { describeCommands } from "./main.ts";
import { agentRuntimeFlags } from "../agent/permissions.ts";
import { DASHBOARD_WEB_DIR } from "../analysis/permissions.ts";

const FILE = "/srv/monitor/monitor.yaml";

const BASE = `
state_dir: /var/lib/monitor
broker:
  listen: 127.0.0.1:6001
  admin: 127.0.0.1:6002
agent:
  id: local
agents:
  default:
    interval: 5
    metrics: [cpu, memory]
    plugins: []
`;

function flagValue(args: string[], name: string): string[] | undefined {
  const flag = args.find((a) => a === `--allow-${name}` || a.startsWith(`--allow-${name}=`));
  if (flag === undefined) return undefined;
  const eq = flag.indexOf("=");
  return eq < 0 ? ["*"] : flag.slice(eq + 1).split(",");
}

function assertScoped(args: string[], what: string) {
  for (const arg of args) {
    assert.ok(arg !== "-A" && arg !== "--allow-all", `${what}: ${arg}`);
    assert.ok(!arg.startsWith("--allow-ffi"), `${what}: ${arg}`);
    assert.ok(!arg.startsWith("--allow-hrtime"), `${what}: ${arg}`);
  }
  for (const name of ["read", "write", "net", "env", "sys", "run"]) {
    const list = flagValue(args, name);
    if (list !== undefined) {
      assert.ok(!list.includes("*"), `${what}: --allow-${name} without a list`);
    }
  }
  assert.ok(args.includes("--no-prompt"), `${what}: --no-prompt`);
}

Deno.test("every service gets scoped permissions on the embedded backends", () => {
  const plan = parsePlan(BASE, FILE);
  for (const name of SERVICE_NAMES) assertScoped(serviceCommand(name, plan.deployment).args, name);
  const broker = serviceCommand("broker", plan.deployment).args;
  assert.deepEqual(flagValue(broker, "net"), ["127.0.0.1:6001", "127.0.0.1:6002"]);
  // No .proto file and no GRPC_* variables: the broker's gRPC server loads no gRPC library.
  assert.deepEqual(flagValue(broker, "read"), ["/var/lib/monitor", FILE]);
  assert.ok(!(flagValue(broker, "env") ?? []).some((name) => name.startsWith("GRPC_")));
  assert.deepEqual(flagValue(broker, "write"), ["/var/lib/monitor"]);
  assert.equal(flagValue(broker, "run"), undefined);
  // The hostname only: the default broker id of a broker on 0.0.0.0 is <hostname>:<port>.
  assert.deepEqual(flagValue(broker, "sys"), ["hostname"]);
  assert.ok(broker.includes("services/broker/main.ts"));
  for (const flag of ["--supervised", "--config", FILE, "--state-dir"]) {
    assert.ok(broker.includes(flag), flag);
  }

  const analysis = serviceCommand("analysis", plan.deployment).args;
  assert.deepEqual(
    flagValue(analysis, "net"),
    ["127.0.0.1:8090"],
    "analysis on the embedded bus: its dashboard only",
  );
  assert.ok(flagValue(analysis, "read")!.includes(DASHBOARD_WEB_DIR), "the dashboard's files");
  assert.equal(flagValue(analysis, "run"), undefined);

  const agent = serviceCommand("agent", plan.deployment).args;
  assert.deepEqual(flagValue(agent, "net"), ["127.0.0.1:6001"]);
  // On Linux cpu and memory come through the /proc reader (awk) too.
  assert.deepEqual(
    flagValue(agent, "sys"),
    Deno.build.os === "linux" ? ["hostname"] : ["hostname", "cpus", "systemMemoryInfo"],
  );
  assert.deepEqual(flagValue(agent, "run"), ["awk", "df"]);
  assert.ok(!agent.includes("--unstable-worker-options"), "no URL plugins: no worker options");
  // The agent's V8 heap settings and no code cache, from one place; the others run with defaults.
  assert.deepEqual(
    agent.filter((a) => a === "--no-code-cache" || a.startsWith("--v8-flags=")),
    agentRuntimeFlags(),
  );
  assert.ok(!broker.some((a) => a.startsWith("--v8-flags=")));
});

Deno.test("etcd and Kafka: network only to the endpoints each service uses", () => {
  const plan = parsePlan(
    BASE +
      `
store:
  backend: etcd
  endpoints: [10.0.0.5:2379, 10.0.0.6:2379]
bus:
  backend: kafka
  brokers: [10.0.0.7:9092]
`,
    FILE,
  );
  const net = (name: "broker" | "analysis" | "agent") =>
    flagValue(serviceCommand(name, plan.deployment).args, "net");
  assert.deepEqual(net("broker"), [
    "127.0.0.1:6001",
    "127.0.0.1:6002",
    "10.0.0.5:2379",
    "10.0.0.6:2379",
    "10.0.0.7:9092",
  ]);
  assert.deepEqual(
    net("analysis"),
    ["127.0.0.1:8090", "10.0.0.7:9092", "10.0.0.5:2379", "10.0.0.6:2379"],
    "analysis: its dashboard, the bus, the store (heartbeats and configurations)",
  );
  assert.deepEqual(net("agent"), ["127.0.0.1:6001", "10.0.0.5:2379", "10.0.0.6:2379"]);
  for (const name of SERVICE_NAMES) assertScoped(serviceCommand(name, plan.deployment).args, name);
  // The supervisor itself: the store's endpoints and the admin API.
  const own = supervisorCommand(plan.deployment).args;
  assertScoped(own, "supervisor");
  assert.deepEqual(flagValue(own, "net"), ["127.0.0.1:6002", "10.0.0.5:2379", "10.0.0.6:2379"]);
  assert.deepEqual(flagValue(own, "run"), ["deno"]);
});

Deno.test("URL plugins: the agent gets the plugin's host, its declared permissions and the cache", () => {
  const plan = parsePlan(
    BASE.replace("plugins: []", "plugins: [spike]") +
      `
plugins:
  spike:
    url: https://plugins.example.com/spike@1.2.0/mod.ts
    permissions: { net: [api.example.com:443], env: [SPIKE_TOKEN] }
`,
    FILE,
  );
  const agent = serviceCommand("agent", plan.deployment).args;
  assertScoped(agent, "agent");
  assert.ok(agent.includes("--unstable-worker-options"));
  assert.deepEqual(flagValue(agent, "net"), [
    "127.0.0.1:6001",
    "api.example.com:443",
    "plugins.example.com:443",
  ]);
  assert.ok(flagValue(agent, "env")!.includes("SPIKE_TOKEN"));
  assert.ok(flagValue(agent, "write")!.includes(join("/var/lib/monitor", "plugin-cache")));
  // Pinning resolves the graph (hosts unknown in advance); it runs none of the plugin's code.
  const pin = pinCommand(plan.deployment).args;
  assert.ok(pin.includes("pin") && pin.includes("services/plugin_loader/main.ts"));
  assert.deepEqual(flagValue(pin, "run"), ["deno"]);
  assert.ok(!pin.some((a) => a === "--allow-all" || a.startsWith("--allow-ffi")));
  const printed = describeCommands(plan);
  assert.match(printed, /# plugins \(pinning\)/);
});

Deno.test("--print-commands shows one exact line per process", () => {
  const plan = parsePlan(BASE, FILE);
  const printed = describeCommands(plan).split("\n");
  for (const name of ["supervisor", ...SERVICE_NAMES]) {
    const i = printed.indexOf(`# ${name}`);
    assert.ok(i >= 0, name);
    assert.match(printed[i + 1], /^deno run --no-prompt /);
  }
  assert.equal(
    printed[printed.indexOf("# broker") + 1],
    formatCommand(serviceCommand("broker", plan.deployment)),
  );
});

Deno.test("systeminformation metrics source: the agent gets every variable and loadavg, nothing else widens", () => {
  const plan = parsePlan(BASE + "\n" + "", FILE);
  const si = parsePlan(
    BASE.replace("  id: local", "  id: local\n  metrics_source: systeminformation"),
    FILE,
  );
  const agent = serviceCommand("agent", si.deployment).args;
  assert.ok(agent.includes("--allow-env"), "npm:systeminformation copies process.env at load");
  assert.ok(flagValue(agent, "sys")!.includes("loadavg"));
  // Its cpu and memory come through Deno's cpus and systemMemoryInfo, not the /proc reader.
  assert.ok(flagValue(agent, "sys")!.includes("cpus"));
  assert.ok(flagValue(agent, "sys")!.includes("systemMemoryInfo"));
  assert.deepEqual(
    flagValue(serviceCommand("agent", plan.deployment).args, "net"),
    flagValue(agent, "net"),
  );
});

Deno.test("diff: an agent interval edit touches only the store; a section edit restarts only its service", () => {
  const before = parsePlan(BASE, FILE);
  const interval = diffPlans(before, parsePlan(BASE.replace("interval: 5", "interval: 1"), FILE));
  assert.deepEqual(interval.agentsPut, ["default"]);
  assert.deepEqual(interval.services, []);
  assert.equal(interval.sharedChanged, false);
  assert.equal(interval.pluginsChanged, false);

  const added = diffPlans(
    before,
    parsePlan(BASE + "  web-1:\n    interval: 2\n    metrics: [cpu]\n    plugins: []\n", FILE),
  );
  assert.deepEqual(added.agentsPut, ["web-1"]);
  assert.deepEqual(added.agentsDeleted, []);
  const removed = diffPlans(
    parsePlan(BASE + "  web-1:\n    interval: 2\n    metrics: [cpu]\n    plugins: []\n", FILE),
    before,
  );
  assert.deepEqual(removed.agentsDeleted, ["web-1"]);

  const timeout = diffPlans(
    before,
    parsePlan(
      BASE.replace("  admin: 127.0.0.1:6002", "  admin: 127.0.0.1:6002\n  command_timeout: 3"),
      FILE,
    ),
  );
  assert.deepEqual(timeout.services, ["broker"]);
  assert.equal(timeout.sharedChanged, false);

  const analysis = diffPlans(before, parsePlan(BASE + "analysis:\n  summary_interval: 2\n", FILE));
  assert.deepEqual(analysis.services, ["analysis"]);

  // The agent follows broker.listen: both restart.
  const listen = diffPlans(before, parsePlan(BASE.replace("6001", "6011"), FILE));
  assert.deepEqual(listen.services, ["broker", "agent"]);

  const shared = diffPlans(
    before,
    parsePlan(BASE + "bus:\n  topics: { data: other-data }\n", FILE),
  );
  assert.equal(shared.sharedChanged, true);

  const comment = diffPlans(before, parsePlan("# a comment\n" + BASE, FILE));
  assert.deepEqual(
    [comment.agentsPut, comment.agentsDeleted, comment.services],
    [[], [], []],
  );
  assert.equal(comment.sharedChanged || comment.pluginsChanged, false);
});

Deno.test("broker.replicas: one broker process per port, each allowed only its addresses; the agent gets all", () => {
  const plan = parsePlan(
    BASE.replace("  admin: 127.0.0.1:6002\n", "  admin: 127.0.0.1:6101\n  replicas: 3\n"),
    FILE,
  );
  const brokers = [0, 1, 2].map((i) => brokerReplicaCommand(plan.deployment, i).args);
  brokers.forEach((args, i) => {
    assertScoped(args, `broker ${i + 1}`);
    assert.deepEqual(flagValue(args, "net"), [`127.0.0.1:${6001 + i}`, `127.0.0.1:${6101 + i}`]);
    const listen = args.indexOf("--listen");
    assert.deepEqual(args.slice(listen, listen + 4), [
      "--listen",
      `127.0.0.1:${6001 + i}`,
      "--admin",
      `127.0.0.1:${6101 + i}`,
    ]);
  });
  assert.deepEqual(brokers[0], serviceCommand("broker", plan.deployment).args);
  const agent = serviceCommand("agent", plan.deployment).args;
  assert.deepEqual(flagValue(agent, "net"), ["127.0.0.1:6001", "127.0.0.1:6002", "127.0.0.1:6003"]);
  const printed = describeCommands(plan);
  assert.match(printed, /# broker-2\n.*--listen 127\.0\.0\.1:6002/);
  assert.match(printed, /# broker-3\n.*--listen 127\.0\.0\.1:6003/);
});
