/**
 * Starts `bench/agent_sim.ts` (simulated agents) as a subprocess with only
 * the permissions a gRPC client needs, and talks to it one JSON request at a
 * time.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { agentPermissions } from "../services/agent/permissions.ts";
import { permissionFlags } from "../services/common/permissions.ts";
import { within } from "../services/common/async.ts";
import { lines } from "./support.ts";

const SIM = fileURLToPath(new URL("./agent_sim.ts", import.meta.url));

/** A running simulator process. */
export interface AgentSim {
  /** The simulator's process id (its CPU time is reported by scenario 8). */
  readonly pid: number;
  /** Sends one request and resolves its answer; rejects with the simulator's error. */
  request(op: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>>;
  /** Closes every stream and waits for the process to exit (killed after 5 s); idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the simulator process (before the broker, to overlap start-ups);
 * `connect` requests name the broker's address, which must be on 127.0.0.1.
 * With `cpuProfDir`, it writes its V8 CPU profile there when it exits.
 */
export function startAgentSim(cpuProfDir?: string): AgentSim {
  const p = agentPermissions({ broker: "127.0.0.1", metrics: [] });
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--no-prompt",
      ...(cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`] : []),
      // Only the lists a gRPC client needs (an empty one gives no flag at all).
      ...permissionFlags({ read: p.read, write: [], net: p.net, env: p.env }),
      SIM,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const answers = lines(child.stdout)[Symbol.asyncIterator]();
  let queue: Promise<unknown> = Promise.resolve();
  const encoder = new TextEncoder();
  let closing: Promise<void> | undefined;

  const exchange = async (op: Record<string, unknown>, timeoutMs: number) => {
    await writer.write(encoder.encode(JSON.stringify(op) + "\n"));
    const next = await within(answers.next(), timeoutMs, `agent_sim answer to ${op.op}`);
    if (next.done) throw new Error(`bench: agent_sim exited before answering ${op.op}`);
    const answer = JSON.parse(next.value) as Record<string, unknown>;
    if (answer.error) throw new Error(String(answer.error));
    return answer;
  };

  return {
    pid: child.pid,
    request(op, timeoutMs) {
      const result = queue.then(() => exchange(op, timeoutMs));
      queue = result.catch(() => {});
      return result;
    },
    close() {
      return closing ??= closeOnce();
    },
  };

  async function closeOnce(): Promise<void> {
    try {
      await within(
        queue.then(() => exchange({ op: "close" }, 5000)),
        6000,
        "agent_sim to close",
      );
    } catch { /* killed below */ }
    try {
      await writer.close();
    } catch { /* already closed */ }
    const exited = await within(child.status, 5000, "agent_sim to exit").then(
      () => true,
      () => false,
    );
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    }
    await answers.return?.(undefined);
  }
}
