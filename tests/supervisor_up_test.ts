/**
 * `deno task up` as a user runs it: a temporary monitor.yaml on free ports
 * and its own state directory; the three services as real subprocesses
 * with scoped permissions, data in the store and on the bus, live edits
 * (agent interval through the store without restarting the agent, one
 * service's section restarting only that service, an invalid edit
 * changing nothing), SIGTERM stopping everything with exit code 0.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openBus } from "../services/bus/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { AdminClient } from "../services/broker/admin_client.ts";
import { openStore, storeKeys } from "../services/store/mod.ts";
import { collect, delay, waitUntil } from "./broker_support.ts";
import { ServiceProcess } from "./e2e_support.ts";
import { freePorts } from "./harness/free_port.ts";

const AGENT_ID = "sup-agent";
const WAIT_MS = 120_000;

function monitorYaml(stateDir: string, port: number, admin: number, extra: {
  interval?: number | string;
  commandTimeout?: number;
  /** The dashboard's port (default: no dashboard). */
  http?: number;
} = {}): string {
  return `# test deployment
state_dir: ${stateDir}
broker:
  listen: 127.0.0.1:${port}
  admin: 127.0.0.1:${admin}
  command_timeout: ${extra.commandTimeout ?? 10}
agent:
  id: ${AGENT_ID}
agents:
  default:
    interval: ${JSON.stringify(extra.interval ?? 3)}
    metrics: [cpu, memory]
    plugins: []
analysis:
  http: ${extra.http === undefined ? "'off'" : `127.0.0.1:${extra.http}`}
`;
}

/** `pid ppid args` of every process. */
async function processTable(): Promise<Array<{ pid: number; ppid: number; args: string }>> {
  const out = await new Deno.Command("ps", { args: ["-e", "-o", "pid=,ppid=,args="] }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim()).map((line) => {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line)!;
    return { pid: Number(m[1]), ppid: Number(m[2]), args: m[3] };
  });
}

async function descendants(root: number) {
  const table = await processTable();
  const found: typeof table = [];
  const walk = (pid: number) => {
    for (const p of table.filter((p) => p.ppid === pid)) {
      found.push(p);
      walk(p.pid);
    }
  };
  walk(root);
  return found;
}

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** Pid from the last `<service> ready (pid N)` line. */
function readyPid(up: ServiceProcess, service: string): number | undefined {
  const lines = up.lines.filter((l) => l.includes(` supervisor: ${service} ready (pid `));
  const last = lines.at(-1);
  return last ? Number(/\(pid (\d+)\)/.exec(last)![1]) : undefined;
}

/** Stops `deno task up`, kills any service left behind and removes the test folder. */
async function cleanUp(up: ServiceProcess, children: Array<{ pid: number }>, dir: string) {
  await up.stop();
  for (const child of children) {
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

function assertScoped(args: string, what: string) {
  const words = args.split(/\s+/);
  for (const w of words) {
    assert.ok(w !== "-A" && w !== "--allow-all", `${what}: ${w}`);
    assert.ok(!w.startsWith("--allow-ffi"), `${what}: ${w}`);
    if (/^--allow-(read|write|net|env|sys|run)$/.test(w)) {
      assert.fail(`${what}: ${w} without a list in: ${args}`);
    }
  }
}

Deno.test("deno task up: invalid monitor.yaml is reported with file:line:column and exit code 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sup-bad-" });
  try {
    const file = join(dir, "monitor.yaml");
    await Deno.writeTextFile(file, "broker:\n  listen: 127.0.0.1:1\n  lisen: x\n");
    const up = new ServiceProcess("up", ["task", "up", "--config", file], { command: "deno" });
    const status = await up.exited(WAIT_MS);
    assert.equal(status.code, 1, up.output);
    assert.ok(
      up.lines.some((l) => l.startsWith(`${file}:3:3: broker.lisen`) && l.includes('"listen"')),
      up.output,
    );
    assert.ok(!up.output.includes("ready (pid"), "nothing started");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task up: a dashboard port already taken is said, not a URL that serves nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sup-taken-" });
  const file = join(dir, "monitor.yaml");
  const [port, adminPort] = freePorts(2);
  // Someone else holds the dashboard's port.
  const squatter = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const http = (squatter.addr as Deno.NetAddr).port;
  await Deno.writeTextFile(file, monitorYaml(join(dir, "state"), port, adminPort, { http }));
  const up = new ServiceProcess("up", ["task", "up", "--config", file], { command: "deno" });
  try {
    await up.waitForLine(/supervisor: all services ready/, WAIT_MS, "all services ready");
    await up.waitForLine(
      new RegExp(
        `supervisor: no dashboard: the analysis did not serve http://127\\.0\\.0\\.1:${http}/`,
      ),
      10_000,
      "the warning",
    );
    assert.ok(!up.lines.some((l) => /supervisor: dashboard: http/.test(l)), up.output);
    assert.ok(up.lines.some((l) => l.includes("no dashboard from this process")), up.output);
  } finally {
    squatter.close();
    await up.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

for (const victim of ["supervisor", "launcher"] as const) {
  Deno.test(`deno task up: its ${victim} killed with SIGKILL leaves no service running`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "sup-orphan-" });
    const file = join(dir, "monitor.yaml");
    const [port, adminPort] = freePorts(2);
    await Deno.writeTextFile(file, monitorYaml(join(dir, "state"), port, adminPort));
    const up = new ServiceProcess("up", ["task", "up", "--config", file], { command: "deno" });
    let children: Awaited<ReturnType<typeof descendants>> = [];
    try {
      await up.waitForLine(/supervisor: all services ready/, WAIT_MS, "all services ready");
      const services = ["broker", "analysis", "agent"].map((s) => readyPid(up, s)!);
      children = await descendants(up.child.pid);
      const script = victim === "supervisor"
        ? "services/supervisor/supervise.ts"
        : "services/supervisor/main.ts";
      const target = children.find((p) => p.args.includes(script));
      assert.ok(target, `the ${victim} process among ${JSON.stringify(children)}`);
      Deno.kill(target.pid, "SIGKILL");
      // Services check their parent every PARENT_CHECK_MS (5 s); the supervisor stops them in order.
      await waitUntil(
        () => services.every((pid) => !alive(pid)),
        30_000,
        `every service gone after the ${victim}'s SIGKILL`,
      );
    } finally {
      await cleanUp(up, children, dir);
    }
  });
}

Deno.test("deno task up: starts all three services with scoped permissions and applies edits live", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "sup-up-" });
  const stateDir = join(dir, "state");
  const file = join(dir, "monitor.yaml");
  const [port, adminPort, http] = freePorts(3);
  await Deno.writeTextFile(file, monitorYaml(stateDir, port, adminPort, { http }));
  const up = new ServiceProcess("up", ["task", "up", "--config", file], { command: "deno" });
  const dbPath = join(stateDir, "monitor.db");
  const keys = storeKeys("/monitor");
  let store: Awaited<ReturnType<typeof openStore>> | undefined;
  let bus: Awaited<ReturnType<typeof openBus>> | undefined;
  let data: Awaited<ReturnType<typeof collect>> | undefined;
  let children: Awaited<ReturnType<typeof descendants>> = [];
  try {
    await up.waitForLine(
      /supervisor\| .* supervisor: all services ready/,
      WAIT_MS,
      "all services ready",
    );
    const order = ["broker", "analysis", "agent"].map((s) =>
      up.lines.findIndex((l) => l.includes(` supervisor: ${s} ready (pid `))
    );
    assert.ok(order[0] < order[1] && order[1] < order[2], "started in dependency order");
    const pids = {
      broker: readyPid(up, "broker")!,
      analysis: readyPid(up, "analysis")!,
      agent: readyPid(up, "agent")!,
    };

    await t.step("each process carries only scoped permissions", async () => {
      children = await descendants(up.child.pid);
      for (const [name, pid] of Object.entries(pids)) {
        const child = children.find((p) => p.pid === pid);
        assert.ok(child, `${name} (pid ${pid}) is a descendant of deno task up`);
        assert.ok(child.args.includes(`services/${name}/main.ts`), child.args);
        assertScoped(child.args, name);
        assert.ok(child.args.includes("--supervised"));
      }
      const supervisor = children.find((p) => p.args.includes("services/supervisor/supervise.ts"));
      assert.ok(supervisor, "the supervisor process");
      assertScoped(supervisor.args, "supervisor");
      const launcher = children.find((p) => p.args.includes("services/supervisor/main.ts"));
      assert.ok(launcher, "the launcher");
      assert.ok(!/--allow-(write|net|all|ffi)|(^|\s)-A(\s|$)/.test(launcher.args), launcher.args);
      const net = (name: keyof typeof pids) =>
        /--allow-net=(\S+)/.exec(children.find((p) => p.pid === pids[name])!.args)?.[1];
      assert.equal(net("broker"), `127.0.0.1:${port},127.0.0.1:${adminPort}`);
      assert.equal(net("agent"), `127.0.0.1:${port}`);
      // The dashboard's address; the embedded bus and store need no network.
      assert.equal(net("analysis"), `127.0.0.1:${http}`);
      assert.ok(
        up.lines.some((l) =>
          l.startsWith("supervisor|") &&
          l.endsWith(`supervisor: dashboard: http://127.0.0.1:${http}/`)
        ),
        up.output,
      );
    });

    store = await openStore({
      backend: "embedded",
      endpoints: [],
      prefix: "/monitor",
      path: dbPath,
    });
    bus = await openBus({ backend: "embedded", brokers: [], path: dbPath, clientId: "test" });
    data = await collect(bus, DEFAULT_TOPICS.data);
    const samples = () =>
      data!.values<{ agent_id: string; timestamp: number }>().filter((v) =>
        v.agent_id === AGENT_ID
      );

    await t.step(
      "agents: is in the store, the agent's data reaches the bus and the broker",
      async () => {
        const config = await store!.get(keys.config("default"));
        assert.deepEqual(JSON.parse(config!.value), {
          interval: 3,
          metrics: ["cpu", "memory"],
          plugins: [],
        });
        await waitUntil(() => store!.get(keys.heartbeat(AGENT_ID)), WAIT_MS, "heartbeat");
        const admin = new AdminClient({ url: `127.0.0.1:${adminPort}` });
        const agents = await waitUntil(
          async () => (await admin.agents()).some((a) => a.agent_id === AGENT_ID),
          WAIT_MS,
          "the agent in GET /agents",
        );
        assert.ok(agents);
        await waitUntil(() => samples().length >= 2, WAIT_MS, "two samples on the bus");
      },
    );

    await t.step(
      "editing the agent interval changes the rate of data; the agent keeps its pid",
      async () => {
        const editedAt = Date.now() / 1000;
        await Deno.writeTextFile(
          file,
          monitorYaml(stateDir, port, adminPort, { interval: 1, http }),
        );
        // Samples after the edit come a second apart rather than three.
        await waitUntil(
          () => {
            const recent = samples().filter((s) => s.timestamp > editedAt);
            // Any four in a row, each less than 2 s after the previous (at 3 s that cannot be).
            return recent.some((_, i) =>
              i + 3 < recent.length &&
              [1, 2, 3].every((k) => recent[i + k].timestamp - recent[i + k - 1].timestamp < 2)
            );
          },
          WAIT_MS,
          "samples one second apart",
        );
        const config = await store!.get(keys.config("default"));
        assert.equal(JSON.parse(config!.value).interval, 1);
        assert.equal(readyPid(up, "agent"), pids.agent, "agent not restarted");
        assert.ok(alive(pids.agent));
        assert.ok(
          up.lines.some((l) => l.includes("agent configuration (/monitor/config/): wrote default")),
        );
      },
    );

    await t.step("an invalid edit prints file:line:column and changes nothing", async () => {
      const before = up.lines.length;
      await Deno.writeTextFile(
        file,
        monitorYaml(stateDir, port, adminPort, { interval: "fast", http }),
      );
      const line = await waitUntil(
        () => up.lines.slice(before).find((l) => l.includes(`${file}:`) && l.includes("interval")),
        WAIT_MS,
        "the issue of the invalid edit",
      );
      assert.match(line, new RegExp(`${file}:11:15: agents\\.default\\.interval: expected `));
      await delay(1000);
      const after = up.lines.slice(before).join("\n");
      assert.ok(!after.includes("restarting"), after);
      assert.ok(!after.includes("ready (pid"), after);
      assert.equal(JSON.parse((await store!.get(keys.config("default")))!.value).interval, 1);
      for (const pid of Object.values(pids)) assert.ok(alive(pid));
    });

    await t.step("a change to the broker's own section restarts the broker alone", async () => {
      const before = up.lines.length;
      await Deno.writeTextFile(
        file,
        monitorYaml(stateDir, port, adminPort, { interval: 1, commandTimeout: 5, http }),
      );
      await waitUntil(
        () => up.lines.slice(before).some((l) => l.includes(" supervisor: broker ready (pid ")),
        WAIT_MS,
        "the broker restarted",
      );
      const broker = readyPid(up, "broker")!;
      assert.notEqual(broker, pids.broker);
      assert.ok(!alive(pids.broker));
      assert.equal(readyPid(up, "agent"), pids.agent);
      assert.equal(readyPid(up, "analysis"), pids.analysis);
      assert.ok(alive(pids.agent) && alive(pids.analysis));
      pids.broker = broker;
      // The agent reconnects to the new broker and data keeps flowing.
      const count = samples().length;
      await waitUntil(() => samples().length >= count + 3, WAIT_MS, "data after the restart");
    });

    await t.step("SIGTERM stops everything: exit code 0, no process left", async () => {
      children = await descendants(up.child.pid);
      up.kill("SIGTERM");
      const status = await up.exited(60_000);
      assert.equal(status.code, 0, up.output.split("\n").slice(-30).join("\n"));
      assert.ok(
        up.lines.some((l) =>
          /^supervisor\| \S+Z INFO {2}supervisor: all services stopped$/.test(l)
        ),
      );
      assert.ok(!up.raw.includes("monitor> "), "no console when stdin is not a terminal");
      for (const child of children) {
        assert.ok(!alive(child.pid), `pid ${child.pid} left running: ${child.args}`);
      }
    });
  } finally {
    await data?.close();
    await bus?.close();
    await store?.close();
    await cleanUp(up, children, dir);
  }
});

Deno.test("deno task up: a crash-looping broker is given up on while the other services keep running, and retried after an edit; Ctrl-C stops all", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sup-loop-" });
  const stateDir = join(dir, "state");
  const file = join(dir, "monitor.yaml");
  const [port, adminPort] = freePorts(2);
  // The broker cannot listen: the port is taken.
  const blocker = Deno.listen({ hostname: "127.0.0.1", port });
  let blocked = true;
  await Deno.writeTextFile(file, monitorYaml(stateDir, port, adminPort));
  // In its own process group (setsid keeps the pid), so that Ctrl-C can be sent the way a
  // terminal sends it: to the whole group.
  const up = new ServiceProcess("up", ["deno", "task", "up", "--config", file], {
    command: "setsid",
  });
  let children: Awaited<ReturnType<typeof descendants>> = [];
  try {
    const loop = await up.waitForLine(/crash loop/, WAIT_MS, "the crash loop");
    assert.match(
      loop,
      /supervisor\| \S+Z ERROR supervisor: broker crash loop: 5 crashes within 60 s; not restarting broker \(the other services keep running\)/,
    );
    const restarts = up.lines.filter((l) => /broker restarting in/.test(l));
    assert.deepEqual(
      restarts.map((l) => /restarting in ([\d.]+ s)/.exec(l)![1]),
      ["0.5 s", "1 s", "2 s", "4 s"],
    );
    await up.waitForLine(/supervisor\| .* supervisor: agent ready \(pid/, WAIT_MS, "the agent");
    const analysis = readyPid(up, "analysis")!;
    const agent = readyPid(up, "agent")!;
    await delay(1000);
    assert.ok(alive(analysis) && alive(agent), "analysis and agent keep running");
    children = await descendants(up.child.pid);
    assert.ok(!children.some((p) => p.args.includes("services/broker/main.ts")), "no broker");
    // Once the cause is gone, any valid save of monitor.yaml retries the service.
    blocker.close();
    blocked = false;
    const before = up.lines.length;
    await Deno.writeTextFile(file, "# port freed\n" + monitorYaml(stateDir, port, adminPort));
    await waitUntil(
      () => up.lines.slice(before).some((l) => l.includes(" supervisor: broker ready (pid ")),
      WAIT_MS,
      "the broker retried after the edit",
    );
    assert.ok(
      up.lines.slice(before).some((l) =>
        l.includes("restarting broker (it had stopped after a crash loop)")
      ),
    );
    assert.equal(readyPid(up, "agent"), agent, "the agent was not restarted");
    children = await descendants(up.child.pid);
    // Ctrl-C stops everything cleanly too (the other test uses SIGTERM). Without the console
    // (e.g. `deno task up | tee log`) a terminal sends SIGINT to the whole foreground process
    // group: launcher, supervisor and every service get it at once.
    const group = await new Deno.Command("kill", { args: ["-INT", "--", `-${up.child.pid}`] })
      .output();
    assert.ok(group.success, new TextDecoder().decode(group.stderr));
    const status = await up.exited(60_000);
    assert.equal(status.code, 0, up.output.split("\n").slice(-20).join("\n"));
    assert.ok(
      up.lines.some((l) => /^supervisor\| \S+Z INFO {2}supervisor: all services stopped$/.test(l)),
    );
    // A clean stop is not reported as a death or as the broker closing the stream.
    assert.ok(!up.lines.some((l) => /is dead|closed by the broker/.test(l)), up.output);
    assert.ok(
      up.lines.some((l) => /broker +\|.* agent \S+ stopped \(its heartbeat was removed/.test(l)),
      up.output,
    );
    // The services run in process groups of their own: the group's Ctrl-C reached only the
    // launcher and the supervisor, which stopped the services in order with SIGTERM.
    const serviceLines = up.lines.filter((l) => /^(agent|analysis|broker) *\|/.test(l));
    assert.ok(!serviceLines.some((l) => l.includes("received SIGINT")), up.output);
    assert.ok(serviceLines.some((l) => /^agent .*stopping: received SIGTERM/.test(l)), up.output);
    for (const child of children) assert.ok(!alive(child.pid), child.args);
  } finally {
    if (blocked) blocker.close();
    await cleanUp(up, children, dir);
  }
});
