/**
 * Several hosts on one machine (Linux network namespaces, veth pairs, their
 * own addresses; tests/harness/netns.ts, as root): host A runs etcd, the
 * Kafka mock cluster (inside A, so it stays on A's loopback), the broker and
 * the analysis application; hosts B and C each run an agent started the way
 * the README tells a user (`deno task agent --broker A:50052 --id ...
 * --store-backend etcd --store-endpoints A:2379`, here with TLS, a client
 * certificate and a token file as in "Transport security").
 *
 * Checked: data from both agents reaches analysis; a command to one agent
 * and to all; a per-agent configuration change applied by that agent only;
 * cutting B's link turns B dead in `health` within TTL + 1 s while C stays
 * alive; restoring the link brings B back and the samples it buffered
 * meanwhile arrive.
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { analysisPermissionFlags } from "../services/analysis/permissions.ts";
import { brokerPermissionFlags } from "../services/broker/permissions.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import type { DataMessage } from "../services/common/messages.ts";
import { storePermissionFlags } from "../services/store/permissions.ts";
import { delay, waitUntil } from "./broker_support.ts";
import { mergePermissionFlags, REPO, ServiceProcess } from "./e2e_support.ts";
import { makeTestPki } from "./harness/certs.ts";
import { createNetwork, type Host } from "./harness/netns.ts";
import { requireComponents } from "./harness/provision.ts";

/** Heartbeat TTL the agents get (seconds, the smallest the configuration allows + 1). */
const TTL_SECONDS = 3;
/** Bound of every wait for something that should happen (ms). */
const WAIT_MS = 60_000;

/** Runs `command args` in `host` to completion; resolves to stdout, rejects with stderr. */
async function run(host: Host | undefined, command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(host ? "ip" : command, {
    args: host ? host.execArgs(command, ...args) : args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { ETCDCTL_API: "3" },
  }).output();
  const text = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed (exit ${out.code}): ${text.decode(out.stderr).trim()}`,
    );
  }
  return text.decode(out.stdout);
}

/** The seed's agent configuration with a short interval and heartbeat TTL. */
function agentConfig(metrics: string[]): string {
  return JSON.stringify({
    interval: 1,
    metrics,
    plugins: [],
    plugin_configs: {},
    heartbeat_ttl: TTL_SECONDS,
  });
}

Deno.test("multi-host: agents on hosts B and C stream through the broker on host A (TLS, mTLS, token); commands, per-agent config, link cut and restore", async () => {
  requireComponents(["etcd", "etcdctl", "kcat", "librdkafka.so.1"]);
  const net = await createNetwork(["a", "b", "c"]);
  // Under ./.monitor: `deno task agent` may read the project folder and write ./.monitor only.
  const work = join(REPO, ".monitor", `netns-test-${crypto.randomUUID().slice(0, 8)}`);
  const processes: ServiceProcess[] = [];
  const start = (process: ServiceProcess) => {
    processes.push(process);
    return process;
  };
  try {
    const a = net.host("a");
    const pkiDir = join(work, "pki");
    await Deno.mkdir(pkiDir, { recursive: true });
    const pki = await makeTestPki(pkiDir, `IP:${a.address}`);
    const secret = async (name: string) => {
      const file = join(pkiDir, name);
      await Deno.writeTextFile(file, `${crypto.randomUUID()}\n`, { mode: 0o600 });
      await Deno.chmod(file, 0o600);
      return file;
    };
    const agentToken = await secret("agent-token");
    const adminToken = await secret("admin-token");

    // Host A: etcd (client port on A's address for the agents, loopback for the broker).
    const etcdUrl = `http://${a.address}:2379`;
    start(
      new ServiceProcess(
        "etcd on host a",
        a.execArgs(
          "etcd",
          "--name=a",
          `--data-dir=${join(work, "etcd")}`,
          `--listen-client-urls=${etcdUrl},http://127.0.0.1:2379`,
          `--advertise-client-urls=${etcdUrl}`,
          "--listen-peer-urls=http://127.0.0.1:2380",
          "--initial-advertise-peer-urls=http://127.0.0.1:2380",
          "--initial-cluster=a=http://127.0.0.1:2380",
          "--log-level=warn",
        ),
        { command: "ip" },
      ),
    );
    await waitUntil(
      () =>
        run(undefined, "etcdctl", [`--endpoints=${etcdUrl}`, "endpoint", "health"]).then(
          () => true,
          () => delay(200).then(() => false),
        ),
      WAIT_MS,
      `etcd healthy at ${etcdUrl} (reached from the root namespace)`,
    );
    const etcdctl = (...args: string[]) =>
      run(undefined, "etcdctl", [`--endpoints=${etcdUrl}`, "--command-timeout=10s", ...args]);
    await etcdctl("put", "/monitor/config/default", agentConfig(["cpu", "memory"]));

    // Host A: the Kafka mock cluster, on A's loopback.
    const kafka = start(
      new ServiceProcess(
        "kafka mock on host a",
        a.execArgs(
          "deno",
          "run",
          "--no-prompt",
          "--allow-ffi",
          "--allow-read",
          "tests/harness/kafka_mock_main.ts",
        ),
        { command: "ip", stdin: "piped" },
      ),
    );
    const bootstrap = (await kafka.waitForLine(/^kafka-mock:/, WAIT_MS, "the mock's address"))
      .slice("kafka-mock:".length).split(",");
    const stateA = join(work, "a");
    await Deno.mkdir(stateA, { recursive: true });
    const store = {
      backend: "etcd" as const,
      endpoints: ["127.0.0.1:2379"],
      prefix: "/monitor",
      path: join(stateA, "monitor.db"),
    };
    const bus = { backend: "kafka" as const, brokers: bootstrap, path: store.path };
    const backendFlags = [
      "--store-backend",
      "etcd",
      "--store-endpoints",
      "127.0.0.1:2379",
      "--bus-backend",
      "kafka",
      "--bus-brokers",
      bootstrap.join(","),
      "--state-dir",
      stateA,
    ];

    // Host A: the broker, reachable from B and C on A's address, with TLS, mTLS and tokens.
    const listen = `${a.address}:50052`;
    const admin = `${a.address}:50053`;
    const broker = start(
      new ServiceProcess(
        "broker on host a",
        a.execArgs(
          "deno",
          "run",
          "--no-prompt",
          ...mergePermissionFlags(
            brokerPermissionFlags({
              stateDir: stateA,
              listen,
              admin,
              tlsFiles: [pki.broker.cert, pki.broker.key, pki.ca],
              secretFiles: [agentToken, adminToken],
            }),
            storePermissionFlags(store),
            busPermissionFlags(bus),
          ),
          "services/broker/main.ts",
          "--listen",
          listen,
          "--admin",
          admin,
          "--admin-token-file",
          adminToken,
          "--token-file",
          agentToken,
          "--tls-cert",
          pki.broker.cert,
          "--tls-key",
          pki.broker.key,
          "--tls-ca",
          pki.ca,
          "--command-timeout",
          "10",
          ...backendFlags,
          "--supervised",
        ),
        { command: "ip" },
      ),
    );
    await broker.waitForLine(/^monitor:ready$/, WAIT_MS, "the broker ready");
    const adminKey = (await Deno.readTextFile(adminToken)).trim();
    const health = async () => {
      const response = await fetch(`http://${admin}/health`, {
        headers: { authorization: `Bearer ${adminKey}` },
        signal: AbortSignal.timeout(5000),
      });
      const body = await response.json() as { agents: Array<{ agent_id: string; status: string }> };
      assert.equal(response.status, 200, JSON.stringify(body));
      return new Map(body.agents.map((h) => [h.agent_id, h.status]));
    };

    // Host A: the analysis application with its console on piped input.
    const analysis = start(
      new ServiceProcess(
        "analysis on host a",
        a.execArgs(
          "deno",
          "run",
          "--no-prompt",
          ...mergePermissionFlags(
            analysisPermissionFlags({ stateDir: stateA }),
            busPermissionFlags(bus),
          ),
          "services/analysis/main.ts",
          "--console",
          "--from-beginning",
          "--command-timeout",
          "10",
          ...backendFlags.slice(4),
        ),
        { command: "ip", stdin: "piped" },
      ),
    );
    /** Writes a console line and waits for output after it matching `pattern`. */
    const ask = async (line: string, pattern: RegExp, ms = 20_000) => {
      const from = analysis.raw.length;
      await analysis.write(`${line}\n`);
      await analysis.waitForText(pattern, ms, from);
      await delay(200); // the rest of the command's lines
      return analysis.raw.slice(from);
    };
    /** `check` polled every 500 ms (it starts processes or asks a console). */
    const poll = <T>(check: () => Promise<T | undefined | false>, what: string) =>
      waitUntil(async () => (await check()) || (await delay(500), undefined), WAIT_MS, what);

    // Hosts B and C: agents started as the README shows.
    const rel = (path: string) => relative(REPO, path);
    const startAgent = (name: string) => {
      const host = net.host(name);
      return start(
        new ServiceProcess(
          `agent on host ${name}`,
          host.execArgs(
            "deno",
            "task",
            "agent",
            "--broker",
            listen,
            "--id",
            `host-${name}`,
            "--store-backend",
            "etcd",
            "--store-endpoints",
            `${a.address}:2379`,
            "--state-dir",
            rel(join(work, name)),
            "--tls-ca",
            rel(pki.ca),
            "--tls-cert",
            rel(pki.agent.cert),
            "--tls-key",
            rel(pki.agent.key),
            "--token-file",
            rel(agentToken),
          ),
          { command: "ip" },
        ),
      );
    };
    const agentB = startAgent("b");
    const agentC = startAgent("c");
    try {
      await broker.waitForLine(/agent host-b connected from /, WAIT_MS, "host-b connected");
      await broker.waitForLine(/agent host-c connected from /, WAIT_MS, "host-c connected");
    } catch (error) {
      // The broker's output alone does not say why an agent never came.
      throw new Error(
        `${
          (error as Error).message
        }\n--- ${agentB.name}:\n${agentB.output}\n--- ${agentC.name}:\n${agentC.output}`,
      );
    }
    for (const name of ["host-b", "host-c"]) {
      const peer = (broker.lines.find((l) => l.includes(`agent ${name} connected from`)) ?? "")
        .match(/connected from ([\d.]+):/)?.[1];
      assert.equal(peer, net.host(name.slice(-1)).address, `${name} connects from its own host`);
    }

    // 1. Data from both agents reaches analysis.
    await poll(async () => {
      const text = await ask("stats", /delivery delay[^\n]*\n/);
      return /host-b\s+[1-9]/.test(text) && /host-c\s+[1-9]/.test(text);
    }, "samples of host-b and host-c in analysis' stats");

    // 2. A command to one agent, then to all.
    const one = await ask("send host-b status", /\d+ answered[^\n]*\n/);
    assert.match(one, /host-b\s+ok\s+\{/);
    assert.match(one, /1 answered; ok: host-b\n/);
    const all = await ask("send all status", /\d+ answered[^\n]*\n/);
    assert.match(all, /2 answered; ok: (host-b, host-c|host-c, host-b)\n/);

    // 3. A configuration for host-c only (with etcdctl, as the README shows): only cpu.
    const configuredAt = Date.now() / 1000;
    await etcdctl("put", "/monitor/config/host-c", agentConfig(["cpu"]));
    const samples = async (): Promise<DataMessage[]> =>
      (await run(a, "kcat", [
        "-b",
        bootstrap.join(","),
        "-C",
        "-t",
        "monitoring-data",
        "-o",
        "beginning",
        "-e",
        "-q",
      ])).split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as DataMessage);
    const after = (all: DataMessage[], agent: string, t: number) =>
      all.filter((m) => m.agent_id === agent && m.timestamp > t);
    await poll(async () => {
      const data = await samples();
      return after(data, "host-c", configuredAt).some((m) =>
        Object.keys(m.metrics).join() === "cpu"
      ) && after(data, "host-b", configuredAt + 2).length > 0;
    }, "host-c samples with only cpu after its configuration changed");
    const changed = await samples();
    const cLate = after(changed, "host-c", configuredAt + 2);
    assert.ok(cLate.length > 0);
    for (const m of cLate) assert.deepEqual(Object.keys(m.metrics), ["cpu"]);
    for (const m of after(changed, "host-b", configuredAt)) {
      assert.deepEqual(Object.keys(m.metrics).sort(), ["cpu", "memory"], "host-b keeps its config");
    }

    // 4. Cut host B's link: B dead within TTL + 1 s, C unaffected.
    assert.deepEqual(
      [(await health()).get("host-b"), (await health()).get("host-c")],
      ["alive", "alive"],
    );
    await net.cut("b");
    const cutAt = Date.now();
    await waitUntil(
      async () => (await health()).get("host-b") === "dead",
      (TTL_SECONDS + 10) * 1000,
      "host-b dead in health",
    );
    const deadAfter = (Date.now() - cutAt) / 1000;
    assert.ok(
      deadAfter <= TTL_SECONDS + 1,
      `host-b dead ${deadAfter.toFixed(2)} s after the cut, expected within TTL + 1 s = ${
        TTL_SECONDS + 1
      } s`,
    );
    assert.equal((await health()).get("host-c"), "alive");
    await delay(3000); // B keeps sampling (1 s interval) into its buffer meanwhile
    assert.equal((await health()).get("host-c"), "alive");

    // 5. Restore the link: B alive again and what it sampled while cut off arrives.
    await net.restore("b");
    const restoredAt = Date.now();
    await waitUntil(
      async () => (await health()).get("host-b") === "alive",
      WAIT_MS,
      "host-b alive again",
    );
    const cutWindow = (m: DataMessage) =>
      m.timestamp * 1000 > cutAt + 1000 && m.timestamp * 1000 < restoredAt - 500;
    const buffered = await poll(async () => {
      const late = (await samples()).filter((m) => m.agent_id === "host-b" && cutWindow(m));
      return late.length >= 2 ? late : undefined;
    }, "host-b's samples taken while its link was cut");
    assert.ok(buffered.length >= 2);
    console.log(
      `host-b dead ${deadAfter.toFixed(2)} s after its link was cut (TTL ${TTL_SECONDS} s); ` +
        `${buffered.length} samples buffered during the cut arrived after the restore`,
    );
    await ask("send all status", /2 answered[^\n]*\n/);
  } catch (error) {
    for (const p of processes) {
      console.error(`--- last output of ${p.name}:\n${p.lines.slice(-25).join("\n")}`);
    }
    throw error;
  } finally {
    for (const p of processes.reverse()) {
      await p.closeStdin();
      await p.stop().catch(() => {});
    }
    await net.destroy();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
