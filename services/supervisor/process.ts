/**
 * One supervised service process: spawn, wait for `monitor:ready`, hand
 * every output line to the supervisor, restart after an unexpected exit
 * (exponential backoff, crash-loop stop), graceful stop (SIGTERM, then
 * SIGKILL after a timeout).
 *
 * @module
 */
import { forEachLine } from "../common/lines.ts";
import { READY_LINE, servingLine } from "../common/cli.ts";
import {
  type RestartDecision,
  RestartPolicy,
  type RestartPolicyOptions,
} from "./restart_policy.ts";

export { READY_LINE };

/** A program and its arguments. */
export interface ServiceCommand {
  /** Program, e.g. `deno`. */
  program: string;
  /** Arguments, e.g. `["run", "--allow-read=…", "services/broker/main.ts", …]`. */
  args: string[];
  /** Working directory. */
  cwd?: string;
}

/** How a child ended. */
export interface ChildExit {
  code: number;
  signal: string | null;
}

/** A running child as the process manager sees it (a real subprocess, or a fake in tests). */
export interface ChildHandle {
  readonly pid: number;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  readonly status: Promise<ChildExit>;
  kill(signal: Deno.Signal): void;
}

/** Starts a child. */
export type Spawner = (command: ServiceCommand) => ChildHandle;

/**
 * Spawns with `Deno.Command`: stdin closed, output piped, in its own
 * process group (so a Ctrl-C on the terminal reaches the supervisor only,
 * which then stops the services in order).
 */
export const spawnSubprocess: Spawner = (command) => {
  const child = new Deno.Command(command.program, {
    args: command.args,
    cwd: command.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true,
  }).spawn();
  return {
    pid: child.pid,
    stdout: child.stdout,
    stderr: child.stderr,
    status: child.status.then((s) => ({ code: s.code, signal: s.signal })),
    kill: (signal) => child.kill(signal),
  };
};

/** State of a {@linkcode ManagedService}. */
export type ServiceState =
  | "stopped"
  | "starting"
  | "ready"
  | "backoff"
  | "failed"
  | "stopping";

/** What the process manager tells its owner. */
export interface ServiceReporter {
  /** One line of the service's output (`monitor:ready` is not passed on). */
  line(service: string, stream: "stdout" | "stderr", text: string): void;
  /** A supervisor message about the service (ready, exited, restarting, crash loop). */
  event(service: string, level: "info" | "warn" | "error", message: string): void;
}

/** Options of {@linkcode ManagedService}. */
export interface ManagedServiceOptions {
  spawn?: Spawner;
  policy?: RestartPolicyOptions;
  /** How long a start may take until `monitor:ready` (ms). Default 60 000. */
  readyTimeoutMs?: number;
  /** How long a stop waits after SIGTERM before SIGKILL (ms). Default 10 000. */
  stopTimeoutMs?: number;
  reporter: ServiceReporter;
  /** Clock (ms). */
  now?: () => number;
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function describeExit(exit: ChildExit): string {
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

/** One service under supervision. */
export class ManagedService {
  readonly name: string;
  #command: ServiceCommand;
  #spawn: Spawner;
  #policy: RestartPolicy;
  #readyTimeoutMs: number;
  #stopTimeoutMs: number;
  #reporter: ServiceReporter;
  #now: () => number;

  #state: ServiceState = "stopped";
  #child: ChildHandle | undefined;
  #startedAt = 0;
  #exited: Promise<ChildExit> | undefined;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  #readyTimer: ReturnType<typeof setTimeout> | undefined;
  #readyWaiters: Array<(ready: boolean) => void> = [];
  #stopRequested = false;
  #timedOut = false;
  #generation = 0;
  #serving = new Map<string, string>();

  constructor(name: string, command: ServiceCommand, options: ManagedServiceOptions) {
    this.name = name;
    this.#command = command;
    this.#spawn = options.spawn ?? spawnSubprocess;
    this.#policy = new RestartPolicy(options.policy);
    this.#readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
    this.#reporter = options.reporter;
    this.#now = options.now ?? Date.now;
  }

  /** Current state. */
  get state(): ServiceState {
    return this.#state;
  }

  /** Pid of the running child, if any. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /**
   * The URL the running process said it serves `what` at
   * (`monitor:serving <what> <url>`, services/common/cli.ts), if it did.
   */
  serving(what: string): string | undefined {
    return this.#serving.get(what);
  }

  /** The command the next start uses. */
  get command(): ServiceCommand {
    return this.#command;
  }

  /** Replaces the command used by the next start (a running child is not touched). */
  setCommand(command: ServiceCommand): void {
    this.#command = command;
  }

  /**
   * Starts the service (no-op when it already runs). Resolves true once it
   * printed `monitor:ready`, false when it gave up (crash loop) or was stopped first.
   */
  start(): Promise<boolean> {
    this.#stopRequested = false;
    if (this.#state === "ready") return Promise.resolve(true);
    const waiter = new Promise<boolean>((resolve) => this.#readyWaiters.push(resolve));
    if (this.#state === "stopped" || this.#state === "failed") this.#launch();
    return waiter;
  }

  /** Stops and starts again with the current command, forgetting past crashes. */
  async restart(): Promise<boolean> {
    await this.stop();
    this.#policy.reset();
    return await this.start();
  }

  /**
   * Stops the service: SIGTERM, then SIGKILL after the stop timeout.
   * Resolves true when the stop was clean (exited in time with code 0 or
   * by SIGTERM), also when nothing was running.
   */
  async stop(): Promise<boolean> {
    this.#stopRequested = true;
    this.#clearRestartTimer();
    this.#clearReadyTimer();
    this.#settleReady(false);
    const child = this.#child;
    const exited = this.#exited;
    if (!child || !exited) {
      if (this.#state !== "failed") this.#state = "stopped";
      return true;
    }
    this.#state = "stopping";
    this.#signal(child, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.#stopTimeoutMs);
    });
    let result: ChildExit | "timeout";
    try {
      result = await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
    if (result === "timeout") {
      this.#reporter.event(
        this.name,
        "warn",
        `did not stop within ${
          seconds(this.#stopTimeoutMs)
        } of SIGTERM; killing it (pid ${child.pid})`,
      );
      this.#signal(child, "SIGKILL");
      await exited;
      return false;
    }
    const clean = result.code === 0 || result.signal === "SIGTERM";
    if (!clean) this.#reporter.event(this.name, "warn", `${describeExit(result)} while stopping`);
    return clean;
  }

  /** Sends SIGKILL to the running child, if any (a stop in progress then ends at once). */
  kill(): void {
    if (this.#child) this.#signal(this.#child, "SIGKILL");
  }

  #signal(child: ChildHandle, signal: Deno.Signal) {
    try {
      child.kill(signal);
    } catch { /* already exited */ }
  }

  #launch() {
    const generation = ++this.#generation;
    this.#state = "starting";
    this.#timedOut = false;
    this.#serving.clear();
    let child: ChildHandle;
    try {
      child = this.#spawn(this.#command);
    } catch (error) {
      this.#reporter.event(
        this.name,
        "error",
        `cannot start ${this.#command.program}: ${(error as Error).message}`,
      );
      this.#crashed(generation);
      return;
    }
    this.#child = child;
    this.#startedAt = this.#now();
    const readers = [
      this.#read(child.stdout, "stdout", generation),
      this.#read(child.stderr, "stderr", generation),
    ];
    this.#exited = child.status.then(async (exit) => {
      await Promise.all(readers);
      return exit;
    });
    this.#readyTimer = setTimeout(() => {
      this.#readyTimer = undefined;
      if (generation !== this.#generation || this.#state !== "starting") return;
      this.#timedOut = true;
      this.#reporter.event(
        this.name,
        "error",
        `not ready within ${seconds(this.#readyTimeoutMs)} (no "${READY_LINE}"); stopping it`,
      );
      this.#signal(child, "SIGTERM");
      const kill = setTimeout(() => this.#signal(child, "SIGKILL"), this.#stopTimeoutMs);
      this.#exited?.finally(() => clearTimeout(kill));
    }, this.#readyTimeoutMs);
    this.#exited.then((exit) => this.#onExit(generation, child, exit));
  }

  async #read(stream: ReadableStream<Uint8Array>, which: "stdout" | "stderr", generation: number) {
    const emit = (text: string) => {
      const line = text.endsWith("\r") ? text.slice(0, -1) : text;
      if (which === "stdout" && generation === this.#generation) {
        if (line === READY_LINE) return this.#onReady(generation);
        const serving = servingLine(line);
        if (serving) return void this.#serving.set(serving.what, serving.url);
      }
      this.#reporter.line(this.name, which, line);
    };
    try {
      await forEachLine(stream, emit);
    } catch { /* the stream broke with the process */ }
  }

  #onReady(generation: number) {
    if (generation !== this.#generation || this.#state !== "starting") return;
    this.#clearReadyTimer();
    this.#state = "ready";
    this.#reporter.event(this.name, "info", `ready (pid ${this.#child?.pid})`);
    this.#settleReady(true);
  }

  #onExit(generation: number, child: ChildHandle, exit: ChildExit) {
    if (generation !== this.#generation) return;
    if (this.#child === child) {
      this.#child = undefined;
      this.#exited = undefined;
    }
    this.#clearReadyTimer();
    if (this.#stopRequested) {
      this.#state = "stopped";
      return;
    }
    const uptime = this.#now() - this.#startedAt;
    const why = this.#timedOut ? "was stopped (not ready in time)" : describeExit(exit);
    this.#reporter.event(this.name, "error", `${why} (pid ${child.pid}) after ${seconds(uptime)}`);
    this.#crashed(generation, uptime);
  }

  #crashed(generation: number, uptime = 0) {
    const decision: RestartDecision = this.#policy.crashed(this.#now(), uptime);
    if (decision.action === "give-up") {
      this.#state = "failed";
      this.#reporter.event(
        this.name,
        "error",
        `crash loop: ${decision.crashes} crashes within ${
          seconds(decision.windowMs)
        }; not restarting ${this.name} (the other services keep running). ` +
          `Fix the cause, then save monitor.yaml (a valid edit retries it) or restart the supervisor.`,
      );
      this.#settleReady(false);
      return;
    }
    this.#state = "backoff";
    this.#reporter.event(
      this.name,
      "warn",
      `restarting in ${
        seconds(decision.delayMs)
      } (crash ${decision.crashes} of ${this.#policy.options.crashLimit} allowed within ${
        seconds(this.#policy.options.crashWindowMs)
      })`,
    );
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (generation !== this.#generation || this.#stopRequested) return;
      this.#launch();
    }, decision.delayMs);
  }

  #settleReady(ready: boolean) {
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const resolve of waiters) resolve(ready);
  }

  #clearRestartTimer() {
    if (this.#restartTimer !== undefined) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
  }

  #clearReadyTimer() {
    if (this.#readyTimer !== undefined) clearTimeout(this.#readyTimer);
    this.#readyTimer = undefined;
  }
}
