/**
 * `deno task broker|agent|analysis|plugins` as a user runs them, on the
 * embedded store and on a real etcd: each task goes through the one launcher
 * (services/supervisor/run.ts), which computes the service's permissions
 * from its resolved configuration with the same builders as `deno task up`.
 * The services talk to each other (agent -> broker -> bus -> analysis), the
 * plugins command opens the store (on etcd it must read etcd3's proto file),
 * and every service process runs with scoped permission lists.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startEtcd } from "./harness/etcd.ts";
import { freePorts } from "./harness/free_port.ts";
import { requireComponents } from "./harness/provision.ts";
import { REPO, ServiceProcess } from "./e2e_support.ts";

const WAIT_MS = 60_000;
const TASKS = ["broker", "agent", "analysis", "plugins"] as const;

/** The `deno run` command line of the live process running `script` with `marker` among its arguments. */
async function commandLineOf(script: string, marker: string): Promise<string[] | undefined> {
  // Through ps(1): Deno reads /proc only with --allow-all.
  const out = await new Deno.Command("ps", { args: ["-e", "-o", "args="] }).output();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const args = line.trim().split(/\s+/);
    if (args.some((a) => a.endsWith(script)) && args.includes(marker)) return args;
  }
  return undefined;
}

/** Asserts that every permission flag of a service's command line carries a list. */
function assertScoped(args: string[], what: string) {
  for (const arg of args) {
    assert.ok(arg !== "-A" && arg !== "--allow-all", `${what}: ${arg}`);
    assert.ok(!arg.startsWith("--allow-ffi"), `${what}: ${arg}`);
    assert.ok(
      !/^--allow-(read|write|net|env|sys|run)$/.test(arg),
      `${what}: ${arg} without a list`,
    );
  }
}

function flagList(args: string[], name: string): string[] {
  const flag = args.find((a) => a.startsWith(`--allow-${name}=`));
  return flag ? flag.slice(flag.indexOf("=") + 1).split(",") : [];
}

async function runTasks(store: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "service_tasks_" });
  const [grpc, admin, http] = freePorts(3);
  const common = ["--state-dir", dir, ...store];
  const processes: ServiceProcess[] = [];
  const task = (name: string, ...args: string[]) => {
    const process = new ServiceProcess(name, ["task", name, ...args], { command: "deno" });
    processes.push(process);
    return process;
  };
  try {
    const broker = task(
      "broker",
      "--listen",
      `127.0.0.1:${grpc}`,
      "--admin",
      `127.0.0.1:${admin}`,
      ...common,
    );
    await broker.waitForLine(/broker: listening on /, WAIT_MS, "the broker listening");
    const agent = task("agent", "--broker", `127.0.0.1:${grpc}`, "--id", "task-agent", ...common);
    await broker.waitForLine(/agent task-agent connected from /, WAIT_MS, "the agent connected");
    const analysis = task(
      "analysis",
      "--summary-interval",
      "1",
      "--http",
      `127.0.0.1:${http}`,
      ...common,
    );
    await analysis.waitForLine(
      /analysis: +task-agent +cpu /,
      WAIT_MS,
      "the agent's data in the analysis",
    );

    // The services run with lists computed from their configuration (network only where they talk).
    const brokerArgs = await commandLineOf("services/broker/main.ts", dir);
    const agentArgs = await commandLineOf("services/agent/main.ts", dir);
    const analysisArgs = await commandLineOf("services/analysis/main.ts", dir);
    assert.ok(brokerArgs && agentArgs && analysisArgs, "the three service processes run");
    assertScoped(brokerArgs, "broker");
    assertScoped(agentArgs, "agent");
    assertScoped(analysisArgs, "analysis");
    const endpoints = store.length > 0 ? [store[store.length - 1]] : [];
    assert.deepEqual(
      flagList(brokerArgs, "net").sort(),
      [`127.0.0.1:${grpc}`, `127.0.0.1:${admin}`, ...endpoints].sort(),
    );
    assert.deepEqual(flagList(agentArgs, "net").sort(), [`127.0.0.1:${grpc}`, ...endpoints].sort());
    assert.deepEqual(
      flagList(analysisArgs, "net").sort(),
      [`127.0.0.1:${http}`, ...endpoints].sort(),
    );

    // `deno task plugins` opens the same store (on etcd: etcd3 reads its proto file).
    const list = task("plugins", "list", ...common);
    const status = await list.exited(WAIT_MS);
    assert.equal(status.code, 0, list.output);
    assert.match(list.output, /^no plugins pinned$/m);
    const show = task("plugins", "show", "nonesuch", ...common);
    assert.equal((await show.exited(WAIT_MS)).code, 1, show.output);
    assert.match(show.output, /no pin for plugin "nonesuch"/);
    assert.doesNotMatch(show.output, /Requires read access|NotCapable/);

    for (const process of [analysis, agent, broker]) {
      const stopped = await process.stop();
      assert.equal(stopped.code, 0, `${process.name} stops cleanly:\n${process.output}`);
    }
  } finally {
    for (const process of processes) await process.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("deno.json: the service tasks name the launcher, no permission lists", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(REPO, "deno.json")));
  for (const name of TASKS) {
    const command: string = config.tasks[name].command;
    assert.ok(command.length < 200, `tasks.${name} is ${command.length} characters`);
    assert.ok(command.endsWith(`services/supervisor/run.ts ${name}`), command);
    assert.doesNotMatch(command, /GRPC_|KAFKAJS_|registry\.npmjs\.org|\$HOME|\$DENO_DIR/);
    assert.doesNotMatch(command, /--allow-(net|write|sys|all|ffi)|(^|\s)-A(\s|$)/);
  }
});

Deno.test("deno task broker, agent, analysis and plugins on the embedded store", async () => {
  await runTasks([]);
});

Deno.test("deno task broker, agent, analysis and plugins on etcd", async () => {
  requireComponents(["etcd", "etcdctl"]);
  const etcd = await startEtcd();
  try {
    await runTasks(["--store-backend", "etcd", "--store-endpoints", etcd.endpoint]);
  } finally {
    await etcd.stop();
  }
});
