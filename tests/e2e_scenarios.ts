/**
 * End-to-end scenarios, registered once per backend pair (embedded; etcd +
 * the Kafka mock cluster) by tests/e2e_embedded_test.ts and
 * tests/e2e_etcd_kafka_test.ts: the broker and agents as real subprocesses,
 * the analysis application and consoles driven from the test.
 *
 * @module
 */
import assert from "node:assert/strict";
import { PassThrough, Writable } from "node:stream";
import { analysisPermissionFlags, startAnalysis } from "../services/analysis/mod.ts";
import { brokerPermissionFlags } from "../services/broker/permissions.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import { openBus } from "../services/bus/mod.ts";
import type { Bus, BusSettings } from "../services/bus/types.ts";
import { type DataMessage, DEFAULT_TOPICS } from "../services/common/messages.ts";
import { AdminClient } from "../services/broker/admin_client.ts";
import { startAdminConsole } from "../services/broker/console.ts";
import { openStore, storePermissionFlags } from "../services/store/mod.ts";
import { agentPermissionFlags } from "../services/agent/permissions.ts";
import type { Store, StoreSettings } from "../services/store/types.ts";
import { collect, delay, TestAgent, waitUntil, within } from "./broker_support.ts";
import { inTerminal, mergePermissionFlags, ServiceProcess } from "./e2e_support.ts";
import { freePorts } from "./harness/free_port.ts";

/** A backend pair for the scenarios. */
export interface Backends {
  /** Shown in test names, e.g. `embedded` or `etcd+kafka`. */
  name: string;
  stateDir: string;
  store: StoreSettings;
  bus: BusSettings;
  /** Service flags selecting these backends. */
  flags: string[];
  cleanup(): Promise<void>;
}

/** Options of {@linkcode registerScenarios}. */
export interface ScenarioOptions {
  /** Backend pair name for the test names, e.g. `embedded`. */
  name: string;
  /** Starts a fresh backend pair. */
  backends(): Promise<Backends>;
  /** Longest wait for things that involve the backends (ms). */
  waitMs?: number;
}

/** Heartbeat TTL the agents are configured with (seconds). */
export const HEARTBEAT_TTL_SECONDS = 3;

/** A running system: broker subprocess, agents, clients in the test. */
interface System {
  backends: Backends;
  broker: ServiceProcess;
  brokerAddress: string;
  adminAddress: string;
  admin: AdminClient;
  store: Store;
  bus: Bus;
  agents: Map<string, ServiceProcess>;
  /** Starts the broker with --supervised and waits for monitor:ready. */
  startBroker(): Promise<ServiceProcess>;
  /** `deno run` arguments of the broker on the system's addresses, without mode flags. */
  brokerArgs(): string[];
  /** Keeps a process started by the test for cleanup. */
  track(process: ServiceProcess): ServiceProcess;
  startAgent(id: string): Promise<ServiceProcess>;
}

/** A minimal agent configuration in the seed's format. */
export function seedConfig(metrics: string[], interval = 1): Record<string, unknown> {
  return { interval, metrics, plugins: [], plugin_configs: {} };
}

async function withSystem(
  options: ScenarioOptions,
  fn: (system: System) => Promise<void>,
  startSupervisedBroker = true,
): Promise<void> {
  const backends = await options.backends();
  const [port, adminPort] = freePorts(2);
  const brokerAddress = `127.0.0.1:${port}`;
  const adminAddress = `127.0.0.1:${adminPort}`;
  const processes: ServiceProcess[] = [];
  let store: Store | undefined;
  let bus: Bus | undefined;
  try {
    store = await openStore(backends.store);
    bus = await openBus(backends.bus);
    const brokerArgs = [
      "--no-prompt",
      ...mergePermissionFlags(
        brokerPermissionFlags({
          stateDir: backends.stateDir,
          listen: brokerAddress,
          admin: adminAddress,
        }),
        storePermissionFlags(backends.store),
        busPermissionFlags(backends.bus),
      ),
      "services/broker/main.ts",
      "--listen",
      brokerAddress,
      "--admin",
      adminAddress,
      "--command-timeout",
      "5",
      ...backends.flags,
    ];
    const system: System = {
      backends,
      broker: undefined as unknown as ServiceProcess,
      brokerAddress,
      adminAddress,
      admin: new AdminClient({ url: adminAddress }),
      store,
      bus,
      agents: new Map(),
      brokerArgs: () => [...brokerArgs],
      track(process: ServiceProcess) {
        processes.push(process);
        return process;
      },
      async startBroker() {
        const broker = new ServiceProcess("broker", [...brokerArgs, "--supervised"]);
        processes.push(broker);
        system.broker = broker;
        await broker.waitForLine(/^monitor:ready$/, options.waitMs ?? 30_000, "monitor:ready");
        return broker;
      },
      async startAgent(id: string) {
        const agent = new ServiceProcess(`agent ${id}`, [
          ...mergePermissionFlags(
            agentPermissionFlags({ broker: brokerAddress }),
            storePermissionFlags(backends.store),
          ),
          "services/agent/main.ts",
          "--supervised",
          "--broker",
          brokerAddress,
          "--id",
          id,
          ...backends.flags,
        ]);
        processes.push(agent);
        system.agents.set(id, agent);
        await agent.waitForLine(/^monitor:ready$/, options.waitMs ?? 30_000, `agent ${id} ready`);
        return agent;
      },
    };
    if (startSupervisedBroker) await system.startBroker();
    await fn(system);
  } finally {
    for (const p of processes.reverse()) await p.stop().catch(() => {});
    await bus?.close().catch(() => {});
    await store?.close().catch(() => {});
    await backends.cleanup();
  }
}

/** Writes the default agent configuration (fast interval, short heartbeat TTL) through the admin API. */
async function configureDefault(system: System, metrics: string[]) {
  await system.admin.putConfig("default", {
    ...seedConfig(metrics),
    heartbeat_ttl: HEARTBEAT_TTL_SECONDS,
  });
}

/** A writable that keeps what a console prints. */
class Capture extends Writable {
  text = "";
  override _write(chunk: unknown, _encoding: string, callback: () => void) {
    this.text += String(chunk);
    callback();
  }
}

/** Runs console commands through piped input against the broker's admin API. */
async function runConsole(system: System, lines: string[]): Promise<string> {
  const input = new PassThrough();
  const output = new Capture();
  const console = startAdminConsole({
    adminUrl: system.adminAddress,
    input,
    output,
    terminal: false,
    captureLogs: false,
  });
  input.end(lines.join("\n") + "\n");
  await within(console.done, 60_000, `console commands ${lines.join("; ")}`);
  return output.text;
}

/** Registers the scenarios for one backend pair. */
export function registerScenarios(options: ScenarioOptions): void {
  const waitMs = options.waitMs ?? 30_000;
  const label = (text: string) => `e2e ${options.name}: ${text}`;

  Deno.test(
    label(
      "agent data reaches analysis; send all/one status answer; console config is applied; a killed agent turns dead",
    ),
    () =>
      withSystem(options, async (system) => {
        await configureDefault(system, ["cpu", "memory"]);
        const analysis = await startAnalysis({
          bus: system.bus,
          group: `e2e-${Date.now()}`,
          commandTimeoutMs: 15_000,
        });
        try {
          await system.startAgent("e2e-a");
          await system.startAgent("e2e-b");
          // 1. Data from both agents reaches analysis, with the metrics the config asks for.
          await waitUntil(
            () => {
              const agents = analysis.agents();
              return agents.length === 2 &&
                agents.every((a) => "cpu" in a.metrics && "memory" in a.metrics);
            },
            waitMs,
            "data from both agents in analysis",
          );
          // 2. send all status and send <id> status, from analysis and from the console.
          const all = await analysis.send("all", "status");
          assert.deepEqual([...all.ok].sort(), ["e2e-a", "e2e-b"], JSON.stringify(all));
          const one = await analysis.send("e2e-a", "status");
          assert.deepEqual(one.ok, ["e2e-a"]);
          assert.equal(typeof one.results[0].output, "object");
          const consoleText = await runConsole(system, [
            "send all status",
            "send e2e-b status",
            "list",
          ]);
          assert.match(consoleText, /2 answered; ok: e2e-a, e2e-b|2 answered; ok: e2e-b, e2e-a/);
          assert.match(consoleText, /1 answered; ok: e2e-b/);
          assert.match(consoleText, /2 agent\(s\) connected/);

          // 3. config from the console is applied by the agent (live): only cpu from now on.
          const data = await collect(system.bus, DEFAULT_TOPICS.data);
          try {
            const text = await runConsole(system, [
              `config e2e-a ${
                JSON.stringify({ ...seedConfig(["cpu"]), heartbeat_ttl: HEARTBEAT_TTL_SECONDS })
              }`,
            ]);
            assert.match(text, /configuration of e2e-a written to \/monitor\/config\/e2e-a/);
            const refused = await runConsole(system, ['config e2e-a {"interval": "soon"}']);
            assert.match(refused, /configuration of e2e-a not written:\n.*interval/);
            await data.waitFor<DataMessage>(
              (values) =>
                values.some((v) =>
                  v.agent_id === "e2e-a" && Object.keys(v.metrics).join() === "cpu"
                ),
              waitMs,
              "a sample of e2e-a with only cpu",
            );
          } finally {
            await data.close();
          }

          // 4. A killed agent turns dead in health within TTL + 1 s.
          const victim = system.agents.get("e2e-b")!;
          victim.kill("SIGKILL");
          const killedAt = Date.now();
          await victim.exited();
          const dead = await waitUntil(
            async () =>
              (await system.admin.health()).find((h) =>
                h.agent_id === "e2e-b" && h.status === "dead"
              ),
            (HEARTBEAT_TTL_SECONDS + 10) * 1000,
            "e2e-b dead in health",
          );
          const detectedAfter = (Date.now() - killedAt) / 1000;
          assert.ok(
            detectedAfter <= HEARTBEAT_TTL_SECONDS + 1,
            `dead after ${detectedAfter.toFixed(2)} s, expected within TTL + 1 s = ${
              HEARTBEAT_TTL_SECONDS + 1
            } s`,
          );
          assert.equal(dead.status, "dead");
          const alive = (await system.admin.health()).find((h) => h.agent_id === "e2e-a");
          assert.equal(alive?.status, "alive");
        } finally {
          await analysis.stop();
        }
      }),
  );

  Deno.test(
    label("a broker killed mid-stream and restarted loses no acknowledged sample"),
    () =>
      withSystem(options, async (system) => {
        const data = await collect(system.bus, DEFAULT_TOPICS.data);
        let agent = await TestAgent.connect(system.brokerAddress, "e2e-exact");
        const sent = new Map<number, number[]>(); // seq -> sample timestamps
        let seq = 0;
        const sendBatch = (target: TestAgent, n: number) => {
          const timestamps = Array.from({ length: 3 }, (_, i) => n * 10 + i);
          sent.set(n, timestamps);
          target.batch(n, timestamps.map((t) => ({ timestamp: t, metrics: { cpu: t } })));
        };
        try {
          // Stream batches until some are acknowledged, then kill the broker mid-stream.
          while (agent.acks().length < 20) {
            sendBatch(agent, ++seq);
            await delay(10);
            if (seq > 5000) throw new Error("no acks from the broker");
          }
          for (let i = 0; i < 20; i++) sendBatch(agent, ++seq);
          system.broker.kill("SIGKILL");
          await system.broker.exited();
          await agent.closed(waitMs);
          const acked = new Set(agent.acks());
          assert.ok(acked.size >= 20);
          // Restart on the same address; re-send everything not acknowledged.
          await system.startBroker();
          agent.close();
          agent = await TestAgent.connect(system.brokerAddress, "e2e-exact");
          const unacked = [...sent.keys()].filter((n) => !acked.has(n));
          for (const n of unacked) {
            agent.batch(n, sent.get(n)!.map((t) => ({ timestamp: t, metrics: { cpu: t } })));
          }
          await waitUntil(
            () => unacked.every((n) => agent.acks().includes(n)),
            waitMs,
            "acks of re-sent batches",
          );
          // Every sample of every acknowledged batch (before and after the kill) is on the bus.
          const expected = [...sent.values()].flat();
          const values = await data.waitFor<DataMessage>(
            (v) => {
              const seen = new Set(
                v.filter((m) => m.agent_id === "e2e-exact").map((m) => m.timestamp),
              );
              return expected.every((t) => seen.has(t));
            },
            waitMs,
            "every acknowledged sample on the data topic",
          );
          const seen = new Set(values.map((m) => m.timestamp));
          for (const n of acked) {
            for (const t of sent.get(n)!) {
              assert.ok(seen.has(t), `sample ${t} of acknowledged batch ${n} lost`);
            }
          }
        } finally {
          agent.close();
          await data.close();
        }
      }),
  );

  Deno.test(
    label("a real agent keeps streaming across a broker restart without gaps"),
    () =>
      withSystem(options, async (system) => {
        await configureDefault(system, ["cpu"]);
        const data = await collect(system.bus, DEFAULT_TOPICS.data);
        try {
          await system.startAgent("e2e-r");
          const mine = (v: DataMessage[]) => v.filter((m) => m.agent_id === "e2e-r");
          await data.waitFor<DataMessage>((v) => mine(v).length >= 3, waitMs, "first samples");
          system.broker.kill("SIGKILL");
          await system.broker.exited();
          const killedAt = Date.now() / 1000;
          await delay(3000);
          await system.startBroker();
          const values = await data.waitFor<DataMessage>(
            (v) => mine(v).some((m) => m.timestamp > killedAt + 5),
            waitMs,
            "samples after the restart",
          );
          // Samples taken while the broker was down were buffered and re-sent: no gap of a
          // missing sample (interval 1 s) around the outage.
          const stamps = [...new Set(mine(values).map((m) => m.timestamp))].sort((a, b) => a - b);
          const gaps = stamps.slice(1).map((t, i) => t - stamps[i]);
          const worst = Math.max(...gaps);
          assert.ok(
            worst < 2,
            `largest gap between samples ${worst.toFixed(2)} s: samples were lost`,
          );
        } finally {
          await data.close();
        }
      }),
  );

  Deno.test(
    label("broker console driven through piped input (--console)"),
    () =>
      withSystem(options, async (system) => {
        const broker = system.track(
          new ServiceProcess("broker --console", [...system.brokerArgs(), "--console"], {
            stdin: "piped",
          }),
        );
        await broker.waitForLine(/listening on/, waitMs, "the broker to listen");
        await configureDefault(system, ["cpu"]);
        await system.startAgent("e2e-c");
        await waitUntil(
          async () => (await system.admin.agents()).length === 1,
          waitMs,
          "agent connected",
        );
        await waitUntil(
          async () =>
            (await system.admin.health()).some((h) =>
              h.agent_id === "e2e-c" && h.status === "alive"
            ),
          waitMs,
          "heartbeat of e2e-c",
        );
        await broker.write(
          [
            "help",
            "list",
            "health",
            "stats",
            "config e2e-c",
            "send all status",
            "send e2e-c",
            "lst",
            "quit",
            "",
          ]
            .join("\n"),
        );
        const status = await broker.exited(waitMs);
        assert.equal(status.code, 0, broker.output);
        const out = broker.output;
        assert.match(out, /broker> help/);
        assert.match(out, /config <agent> <json>/);
        assert.match(out, /e2e-c\s+\S+\s+127\.0\.0\.1:\d+/);
        assert.match(out, /e2e-c\s+alive/);
        assert.match(out, /AGENT\s+BATCHES\s+SAMPLES/);
        assert.match(out, /e2e-c: \/monitor\/config\/default \(the default\)/);
        // A long result is pretty-printed below the agent and status.
        assert.match(out, /e2e-c {2}ok(?: {2}\{|\n {2}\{\n {4}")/);
        assert.match(out, /1 answered; ok: e2e-c/);
        assert.match(out, /error: send <agent\|all> <command> \[json args\]: expected a command/);
        assert.match(out, /unknown command "lst".*did you mean "list"/);
      }, false),
  );

  Deno.test(
    label("broker console in a pseudo-terminal: completion and the interactive send"),
    () =>
      withSystem(options, async (system) => {
        // `script` gives the broker a real terminal; its input is our pipe.
        const terminal = system.track(
          inTerminal("broker in a terminal", ["deno", "run", ...system.brokerArgs()]),
        );
        let at = await terminal.waitForText(/broker> /, waitMs);
        await configureDefault(system, ["cpu"]);
        await system.startAgent("e2e-t");
        await waitUntil(
          async () => (await system.admin.agents()).length === 1,
          waitMs,
          "agent connected",
        );
        await terminal.type("hel\t");
        at = await terminal.waitForText(/help/, waitMs, at);
        await terminal.type("\r");
        at = await terminal.waitForText(/leave the console/, waitMs, at);
        await terminal.type("send\r");
        at = await terminal.waitForText(/Send to which agent\?/, waitMs, at);
        await terminal.type("\u001b[B"); // from "all" down to the connected agent
        await terminal.type("\r");
        at = await terminal.waitForText(/Which command\?/, waitMs, at);
        await terminal.type("\r"); // status, the default
        at = await terminal.waitForText(/Arguments as a JSON object/, waitMs, at);
        await terminal.type("\r");
        at = await terminal.waitForText(/1 answered; ok: e2e-t/, waitMs, at);
        // A command that changes something, sent to every agent, asks first.
        await terminal.type("send all reload\r");
        at = await terminal.waitForText(/Send "reload" to every connected agent\?/, waitMs, at);
        await terminal.type("n\r");
        at = await terminal.waitForText(/not sent/, waitMs, at);
        // `config` alone: pick the agent, edit its current configuration inline, write it.
        await terminal.type("config\r");
        at = await terminal.waitForText(/Configure which agent\?/, waitMs, at);
        await terminal.type("\r"); // e2e-t, the first choice
        at = await terminal.waitForText(/Configuration of e2e-t \(one line of JSON\)/, waitMs, at);
        await terminal.type("\r"); // keep the text as it is
        at = await terminal.waitForText(/configuration of e2e-t written to/, waitMs, at);
        await terminal.type("quit\r");
        const status = await terminal.exited(waitMs);
        assert.equal(status.code, 0, terminal.raw);
        const own = await system.store.get("/monitor/config/e2e-t");
        assert.ok(own, "the agent's own configuration was written");
        const history = await Deno.readTextFile(
          `${system.backends.stateDir}/history/broker`,
        );
        assert.deepEqual(history.trim().split("\n"), [
          "help",
          "send",
          "send all reload",
          "config",
          "quit",
        ]);
      }, false),
  );

  Deno.test(
    label("analysis as a subprocess: supervised summary lines and a piped console"),
    () =>
      withSystem(options, async (system) => {
        await configureDefault(system, ["cpu", "memory"]);
        await system.startAgent("e2e-s");
        const analysisArgs = [
          "--no-prompt",
          ...mergePermissionFlags(
            analysisPermissionFlags({ stateDir: system.backends.stateDir }),
            busPermissionFlags(system.backends.bus),
          ),
          "services/analysis/main.ts",
          ...system.backends.flags,
        ];
        const supervised = system.track(
          new ServiceProcess("analysis --supervised", [
            ...analysisArgs,
            "--supervised",
            "--summary-interval",
            "1",
            "--group",
            "e2e-supervised",
          ]),
        );
        await supervised.waitForLine(/^monitor:ready$/, waitMs, "monitor:ready");
        await supervised.waitForLine(/summary: 1 agent\(s\), \d+ sample\(s\)/, waitMs, "a summary");
        await supervised.waitForLine(
          /analysis: {3}e2e-s {2}cpu [\d.]+% {2}mem [\d.]+%/,
          waitMs,
          "the agent's line",
        );
        const piped = system.track(
          new ServiceProcess("analysis --console", [
            ...analysisArgs,
            "--console",
            "--group",
            "e2e-console",
          ], { stdin: "piped" }),
        );
        await piped.waitForLine(/consuming/, waitMs, "analysis consuming");
        await piped.write("send e2e-s ping\nstats\nquit\n");
        const status = await piped.exited(waitMs);
        assert.equal(status.code, 0, piped.output);
        assert.match(piped.output, /e2e-s {2}ok {2}"pong"|e2e-s {2}ok {2}\{|e2e-s {2}ok\n {2}\{/);
        assert.match(piped.output, /1 answered; ok: e2e-s/);
        assert.match(piped.output, /consumed data \d+, results 1/);
        const stopped = await supervised.stop();
        assert.equal(stopped.code, 0, supervised.output);
      }),
  );
}
