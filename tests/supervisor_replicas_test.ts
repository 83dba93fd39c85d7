/**
 * `deno task up` with `broker.replicas: 2`: two broker processes on the
 * `listen` port and the next one (admin APIs on the `admin` port and the
 * next), each allowed only its own addresses; the local agent gets both and
 * is on one of them; either broker's admin API shows both brokers and the
 * agent; a command sent through the broker that does not hold the agent is
 * answered; SIGKILL of the agent's broker moves the agent to the other one.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { preferenceOrder } from "../services/agent/broker_choice.ts";
import type { AgentInfo, BrokerStats } from "../services/broker/mod.ts";
import { waitUntil } from "./broker_support.ts";
import { ServiceProcess } from "./e2e_support.ts";
import { freePort } from "./harness/free_port.ts";

const AGENT_ID = "replica-agent";
const WAIT_MS = 120_000;

/** A port such that it and the next `count - 1` are free on 127.0.0.1. */
function freeRun(count: number, avoid: number[] = []): number {
  for (let tries = 0; tries < 50; tries++) {
    const base = freePort();
    if (base + count > 65535) continue;
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (ports.some((p) => avoid.includes(p))) continue;
    const listeners: Deno.Listener[] = [];
    try {
      for (const port of ports) listeners.push(Deno.listen({ hostname: "127.0.0.1", port }));
      return base;
    } catch {
      // taken: try another base
    } finally {
      for (const l of listeners) l.close();
    }
  }
  throw new Error("no run of free ports found");
}

async function get<T>(admin: string, path: string): Promise<T> {
  const response = await fetch(`http://${admin}${path}`);
  assert.equal(response.status, 200, `GET ${path} on ${admin}`);
  return await response.json() as T;
}

Deno.test("deno task up: broker.replicas: 2 starts two brokers; the agent fails over between them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sup-replicas-" });
  const port = freeRun(2);
  const admin = freeRun(2, [port, port + 1]);
  const file = join(dir, "monitor.yaml");
  await Deno.writeTextFile(
    file,
    `state_dir: ${join(dir, "state")}
broker:
  listen: 127.0.0.1:${port}
  admin: 127.0.0.1:${admin}
  replicas: 2
agent:
  id: ${AGENT_ID}
agents:
  default: { interval: 1, metrics: [cpu], plugins: [], heartbeat_ttl: 4 }
analysis:
  http: 'off'
`,
  );
  const up = new ServiceProcess("up", ["task", "up", "--config", file], { command: "deno" });
  const brokers = [`127.0.0.1:${port}`, `127.0.0.1:${port + 1}`];
  const admins = [`127.0.0.1:${admin}`, `127.0.0.1:${admin + 1}`];
  try {
    await up.waitForLine(/supervisor: all services ready/, WAIT_MS, "all services ready");
    // Each broker process is allowed exactly its own gRPC and admin addresses.
    for (const [i, name] of ["broker", "broker-2"].entries()) {
      const line = up.lines.findLast((l) => l.includes(` supervisor: ${name} ready (pid `));
      assert.ok(line, name);
      const pid = /\(pid (\d+)\)/.exec(line)![1];
      const ps = await new Deno.Command("ps", { args: ["-o", "args=", "-p", pid] }).output();
      const args = new TextDecoder().decode(ps.stdout);
      assert.equal(/--allow-net=(\S+)/.exec(args)?.[1], `${brokers[i]},${admins[i]}`, args);
    }
    // The agent is on its first choice; both admin APIs show it there, and both brokers.
    const first = preferenceOrder(AGENT_ID, brokers)[0];
    const holder = brokers.indexOf(first);
    const other = 1 - holder;
    const onBroker = async (index: number, adminIndex: number) =>
      await waitUntil(
        async () => {
          const { agents } = await get<{ agents: AgentInfo[] }>(admins[adminIndex], "/agents");
          const agent = agents.find((a) => a.agent_id === AGENT_ID);
          return agent?.broker === brokers[index] ? agent : undefined;
        },
        30_000,
        `${AGENT_ID} on ${brokers[index]} per ${admins[adminIndex]}`,
        {
          intervalMs: 200,
        },
      );
    await onBroker(holder, 0);
    await onBroker(holder, 1);
    const stats = await get<BrokerStats>(admins[other], "/stats");
    assert.deepEqual(
      stats.fleet.map((b) => [b.broker_id, b.connected]),
      brokers.map((b, i) => [b, i === holder ? 1 : 0]),
    );

    // A command through the broker that does not hold the agent is answered by the agent.
    const response = await fetch(`http://${admins[other]}/send`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ target: AGENT_ID, command_type: "status", timeout_ms: 20_000 }),
    });
    const events = (await response.text()).trim().split("\n").map((l) => JSON.parse(l));
    const summary = events.at(-1).summary;
    assert.deepEqual([summary.ok, summary.timed_out], [[AGENT_ID], false], JSON.stringify(events));

    // SIGKILL of the agent's broker: the agent moves to the other broker (the supervisor restarts
    // the killed one meanwhile).
    const name = holder === 0 ? "broker" : "broker-2";
    const line = up.lines.findLast((l) => l.includes(` supervisor: ${name} ready (pid `))!;
    Deno.kill(Number(/\(pid (\d+)\)/.exec(line)![1]), "SIGKILL");
    await onBroker(other, other);
  } finally {
    await up.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
