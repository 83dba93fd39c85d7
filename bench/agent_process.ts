/**
 * A real agent (`services/agent/main.ts`) as a subprocess, started like
 * `deno task agent` but with the permissions its builders give for exactly
 * this broker and store (services/agent/permissions.ts,
 * services/store/permissions.ts).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { mergePermissionFlags } from "../services/common/permissions.ts";
import { agentPermissionFlags, agentStorePermissionFlags } from "../services/agent/permissions.ts";
import type { MetricName } from "../services/common/messages.ts";
import { DEFAULT_STORE_PREFIX } from "../services/store/keys.ts";
import { within } from "../services/common/async.ts";
import { lines } from "./support.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Where the agent's store is. */
export type AgentStoreSpec =
  | { backend: "embedded"; dir: string }
  | { backend: "etcd"; endpoint: string; stateDir: string };

/** A running agent process. */
export interface AgentProcess {
  readonly pid: number;
  /** Resolves once the agent printed `monitor:ready`. */
  ready(ms: number): Promise<void>;
  /** SIGKILL (a crash: no goodbye to broker or store). */
  kill(): Promise<void>;
  /** SIGTERM and wait (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

/**
 * Starts `services/agent/main.ts --supervised` for agent `id`. With
 * `cpuProfDir`, the agent writes its V8 CPU profile there when it exits
 * (`deno run --cpu-prof`; read it with bench/cpuprof.ts).
 */
export function startAgentProcess(
  broker: string,
  id: string,
  store: AgentStoreSpec,
  metrics: readonly MetricName[],
  cpuProfDir?: string,
): AgentProcess {
  const settings = store.backend === "embedded"
    ? {
      backend: "embedded" as const,
      endpoints: [],
      prefix: DEFAULT_STORE_PREFIX,
      path: join(store.dir, "monitor.db"),
    }
    : {
      backend: "etcd" as const,
      endpoints: [store.endpoint],
      prefix: DEFAULT_STORE_PREFIX,
      path: "",
    };
  const stateDir = store.backend === "embedded" ? store.dir : store.stateDir;
  const args = [
    "run",
    ...(cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`] : []),
    ...mergePermissionFlags(
      agentPermissionFlags({ broker, metrics }),
      agentStorePermissionFlags(settings),
      // The state directory (plugin cache) as the agent task grants ./.monitor.
      [`--allow-read=${stateDir}`, `--allow-write=${stateDir}`],
    ),
    join(ROOT, "services/agent/main.ts"),
    "--supervised",
    "--broker",
    broker,
    "--id",
    id,
    "--store-backend",
    store.backend,
    "--state-dir",
    stateDir,
    "--log-level",
    "warn",
    ...(store.backend === "etcd" ? ["--store-endpoints", store.endpoint] : []),
  ];
  const child = new Deno.Command("deno", {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let resolveReady!: () => void;
  const readyLine = new Promise<void>((resolve) => resolveReady = resolve);
  // Drains stdout for the life of the process (a full pipe would stall the agent).
  (async () => {
    for await (const line of lines(child.stdout)) {
      if (line.trim() === "monitor:ready") resolveReady();
    }
  })().catch(() => {});
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  return {
    pid: child.pid,
    async ready(ms) {
      await within(
        Promise.race([
          readyLine,
          status.then((s) => {
            throw new Error(`bench: agent ${id} exited with code ${s.code} before it was ready`);
          }),
        ]),
        ms,
        `agent ${id} to print monitor:ready`,
      );
    },
    async kill() {
      if (!exited) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
      await status;
    },
    async stop() {
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
      }
      const ok = await within(status, 5000, `agent ${id} to stop`).then(() => true, () => false);
      if (!ok) await this.kill();
    },
  };
}
