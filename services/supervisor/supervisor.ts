/**
 * The supervisor: applies a plan (agent configurations to the store, URL
 * plugin pins), starts the services in dependency order, restarts crashed
 * ones, applies edits of monitor.yaml as a diff, and stops everything.
 *
 * @module
 */
import { forEachLine } from "../common/lines.ts";
import { errorMessage, isLogFormat } from "../common/log.ts";
import { ConfigError, formatIssue } from "../config/issues.ts";
import { listPins } from "../plugin_loader/pinning.ts";
import { openStore } from "../store/mod.ts";
import type { Store } from "../store/types.ts";
import { writeAgentConfigs } from "./agents.ts";
import {
  brokerReplicaCommand,
  brokerReplicaName,
  dashboardUrl,
  type DeploymentSettings,
  formatCommand,
  pinCommand,
  type PluginNeeds,
  SERVICE_NAMES,
  serviceCommand,
  type ServiceName,
  supervisorCommand,
} from "./commands.ts";
import { diffPlans, isEmptyDiff, type SupervisorPlan } from "./plan.ts";
import {
  type ChildHandle,
  ManagedService,
  type ManagedServiceOptions,
  type Spawner,
  spawnSubprocess,
} from "./process.ts";
import type { ServiceOutput } from "./output.ts";
import type { RestartPolicyOptions } from "./restart_policy.ts";

/** Options of {@linkcode Supervisor}. */
export interface SupervisorOptions {
  /** The validated monitor.yaml. */
  plan: SupervisorPlan;
  /** Validates an edited monitor.yaml (throws ConfigError with positions). */
  parse: (text: string) => SupervisorPlan;
  output: ServiceOutput;
  spawn?: Spawner;
  policy?: RestartPolicyOptions;
  readyTimeoutMs?: number;
  stopTimeoutMs?: number;
  /** Longest time pinning may take (ms). Default 180 000. */
  pinTimeoutMs?: number;
  /** Retries of agent configuration writes while the store is unreachable. */
  storeRetry?: { initialMs?: number; maxMs?: number };
}

/** Services that depend on no one come first. */
const START_ORDER: readonly ServiceName[] = SERVICE_NAMES;

/** Runs the services of one monitor.yaml. */
export class Supervisor {
  #plan: SupervisorPlan;
  #parse: (text: string) => SupervisorPlan;
  #output: ServiceOutput;
  #spawn: Spawner;
  #serviceOptions: ManagedServiceOptions;
  #pinTimeoutMs: number;
  #store: Store | undefined;
  #services = new Map<ServiceName, ManagedService>();
  /** Brokers 2..N of `broker.replicas` (the first is the `broker` service). */
  #replicas: ManagedService[] = [];
  #stopping = false;
  #pinned: PluginNeeds[] | undefined;
  /** The pins could not be read back (the store was unreachable): pinned again before the next configuration write. */
  #pinsPending = false;
  /** The last pin attempt failed that way and no retry delay has passed since. */
  #pinJustFailed = false;
  #pinChild: ChildHandle | undefined;
  #relaunch: ((reason: string) => void) | undefined;
  /** Agent configurations monitor.yaml wants that the store does not have yet (id -> config). */
  #pendingAgents = new Map<string, unknown>();
  /** Agent ids whose key monitor.yaml wants deleted, not yet deleted. */
  #pendingDeletes = new Set<string>();
  /** Agent configuration writes, one after the other. */
  #agentWrites: Promise<boolean> = Promise.resolve(true);
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryAttempts = 0;
  #retryInitialMs: number;
  #retryMaxMs: number;
  /** Resolves with a reason when an edit needs the supervisor itself restarted with other permissions. */
  readonly relaunchRequested: Promise<string>;

  constructor(options: SupervisorOptions) {
    this.#plan = options.plan;
    this.#parse = options.parse;
    this.#output = options.output;
    this.#spawn = options.spawn ?? spawnSubprocess;
    this.#pinTimeoutMs = options.pinTimeoutMs ?? 180_000;
    this.#retryInitialMs = options.storeRetry?.initialMs ?? 500;
    this.#retryMaxMs = options.storeRetry?.maxMs ?? 30_000;
    this.#serviceOptions = {
      spawn: this.#spawn,
      policy: options.policy,
      readyTimeoutMs: options.readyTimeoutMs,
      stopTimeoutMs: options.stopTimeoutMs,
      reporter: options.output,
    };
    this.relaunchRequested = new Promise((resolve) => this.#relaunch = resolve);
  }

  /** The plan in force. */
  get plan(): SupervisorPlan {
    return this.#plan;
  }

  /** A service by name (after {@linkcode start}). */
  service(name: ServiceName): ManagedService | undefined {
    return this.#services.get(name);
  }

  /** The extra brokers of `broker.replicas` (`broker-2`, ...), in order. */
  get replicas(): readonly ManagedService[] {
    return this.#replicas;
  }

  /** Starts brokers 2..N of `broker.replicas`; false when one did not become ready. */
  async #startReplicas(plan: SupervisorPlan): Promise<boolean> {
    const deployment = this.#deployment(plan);
    const count = deployment.broker.replicas?.length ?? 1;
    let allReady = true;
    for (let i = 1; i < count && !this.#stopping; i++) {
      const replica = new ManagedService(
        brokerReplicaName(i),
        brokerReplicaCommand(deployment, i),
        this.#serviceOptions,
      );
      this.#replicas.push(replica);
      if (!await replica.start() && !this.#stopping) {
        allReady = false;
        this.#output.say(
          "warn",
          `${replica.name} is not running; starting the next services anyway`,
        );
      }
    }
    return allReady;
  }

  /** Stops brokers 2..N; true when each stopped cleanly. */
  async #stopReplicas(): Promise<boolean> {
    let clean = true;
    for (const replica of this.#replicas.splice(0).reverse()) {
      if (!await replica.stop()) clean = false;
    }
    return clean;
  }

  /**
   * Agent ids whose configuration (or deletion) monitor.yaml wants but the
   * store does not have yet: retried with backoff until it has. Empty when
   * the store is up to date.
   */
  get pendingAgentConfigs(): string[] {
    return [...this.#pendingAgents.keys(), ...this.#pendingDeletes].sort();
  }

  /**
   * Pins URL plugins, writes the agent configurations (so that no agent sees
   * a plugin before its pin), then starts the services in order, each after
   * the previous one is ready. Resolves true when every service became ready.
   * A store that cannot be written does not stop the start: the writes are
   * retried until it can.
   */
  async start(): Promise<boolean> {
    const plan = this.#plan;
    this.#store = await openStore(plan.deployment.store);
    await this.#pin(plan);
    this.#desire(plan.agents, []);
    await this.#reconcileAgents();
    let allReady = true;
    for (const name of START_ORDER) {
      if (this.#stopping) return false;
      const service = new ManagedService(
        name,
        serviceCommand(name, this.#deployment(plan)),
        this.#serviceOptions,
      );
      this.#services.set(name, service);
      const ready = await service.start();
      if (!ready && !this.#stopping) {
        allReady = false;
        this.#output.say("warn", `${name} is not running; starting the next services anyway`);
      }
      if (name === "broker" && !await this.#startReplicas(plan)) allReady = false;
    }
    if (allReady && !this.#stopping) {
      this.#output.say("info", "all services ready");
      // What the analysis bound, not what monitor.yaml asked for (the port may be taken).
      const served = this.#services.get("analysis")?.serving("dashboard");
      const wanted = dashboardUrl(this.#deployment(plan));
      if (served) this.#output.say("info", `dashboard: ${served}`);
      else if (wanted) {
        this.#output.say(
          "warn",
          `no dashboard: the analysis did not serve ${wanted} (its log above says why)`,
        );
      }
    }
    return allReady && !this.#stopping;
  }

  /** The plan's deployment with the pins (every module host) once known. */
  #deployment(plan: SupervisorPlan): DeploymentSettings {
    return { ...plan.deployment, plugins: this.#pinned ?? plan.deployment.plugins };
  }

  /** Records what monitor.yaml wants in the store; {@linkcode #reconcileAgents} writes it. */
  #desire(put: Record<string, unknown>, deleted: readonly string[]) {
    for (const [id, config] of Object.entries(put)) {
      this.#pendingAgents.set(id, config);
      this.#pendingDeletes.delete(id);
    }
    for (const id of deleted) {
      this.#pendingAgents.delete(id);
      this.#pendingDeletes.add(id);
    }
  }

  /**
   * Writes the pending agent configurations (one write at a time). On failure
   * the desired state is kept and the write retried with growing delays
   * (0.5 s doubling up to 30 s) until the store has it, each attempt said in
   * the output. Resolves true when nothing is pending any more.
   */
  #reconcileAgents(): Promise<boolean> {
    const run = this.#agentWrites.then(() => this.#writePending());
    this.#agentWrites = run.catch(() => false);
    return run;
  }

  async #writePending(): Promise<boolean> {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#stopping || !this.#store) return false;
    if (this.#pinsPending) {
      // Pins first, as at start: a configuration that uses a plugin must find its pin.
      if (!this.#pinJustFailed) await this.#pin(this.#plan);
      if (this.#stopping) return false;
      if (this.#pinsPending) {
        this.#retryLater(
          `cannot pin URL plugins (${Object.keys(this.#plan.plugins).join(", ")}) yet: ` +
            `the store did not answer`,
        );
        return false;
      }
      await this.#refreshAgentPermissions();
    }
    if (this.#pendingAgents.size === 0 && this.#pendingDeletes.size === 0) {
      this.#retried();
      return true;
    }
    const put = Object.fromEntries(this.#pendingAgents);
    const deleted = [...this.#pendingDeletes];
    try {
      await this.#writeAgents(put, deleted);
    } catch (error) {
      if (this.#stopping) return false;
      this.#retryLater(
        `cannot write agent configuration (${this.pendingAgentConfigs.join(", ")}): ${
          errorMessage(error)
        }; the store keeps its old values until then`,
      );
      return false;
    }
    // Only what is still wanted as written leaves the pending set (an edit may have come since).
    for (const [id, config] of Object.entries(put)) {
      if (this.#pendingAgents.get(id) === config) this.#pendingAgents.delete(id);
    }
    for (const id of deleted) if (!this.#pendingAgents.has(id)) this.#pendingDeletes.delete(id);
    this.#retried();
    if (this.#pendingAgents.size > 0 || this.#pendingDeletes.size > 0) {
      return await this.#writePending();
    }
    return true;
  }

  /** Says why the store write failed and tries again later (0.5 s doubling up to 30 s). */
  #retryLater(why: string) {
    this.#retryAttempts++;
    const delay = Math.min(this.#retryInitialMs * 2 ** (this.#retryAttempts - 1), this.#retryMaxMs);
    this.#output.say(
      this.#retryAttempts === 1 ? "error" : "warn",
      `${why}; keeping the desired state and retrying in ${
        delay / 1000
      } s (attempt ${this.#retryAttempts})`,
    );
    this.#retryTimer = setTimeout(() => {
      this.#pinJustFailed = false;
      void this.#reconcileAgents();
    }, delay);
  }

  /** After failed attempts: says that the store has everything now. */
  #retried() {
    if (this.#retryAttempts === 0) return;
    this.#output.say(
      "info",
      `agent configuration is in the store now (after ${this.#retryAttempts} failed attempt${
        this.#retryAttempts === 1 ? "" : "s"
      })`,
    );
    this.#retryAttempts = 0;
  }

  /**
   * The pins name every module host an agent's plugins import from, which
   * its `--allow-net` lists: a running agent whose command changed with the
   * pins is restarted to get them.
   */
  async #refreshAgentPermissions() {
    const agent = this.#services.get("agent");
    if (!agent || this.#stopping) return;
    const command = serviceCommand("agent", this.#deployment(this.#plan));
    if (formatCommand(command) === formatCommand(agent.command)) return;
    agent.setCommand(command);
    if (agent.state === "stopped") return;
    this.#output.say("info", "restarting agent (the pins name the hosts its plugins load from)");
    await agent.restart();
  }

  async #writeAgents(agents: Record<string, unknown>, deleted: string[]) {
    const store = this.#store!;
    const result = await writeAgentConfigs(
      store,
      this.#plan.deployment.store.prefix,
      agents,
      deleted,
    );
    const parts: string[] = [];
    if (result.written.length) parts.push(`wrote ${result.written.join(", ")}`);
    if (result.unchanged.length) parts.push(`unchanged ${result.unchanged.join(", ")}`);
    if (result.deleted.length) parts.push(`deleted ${result.deleted.join(", ")}`);
    if (parts.length) {
      this.#output.say(
        "info",
        `agent configuration (${this.#plan.deployment.store.prefix}/config/): ${parts.join("; ")}`,
      );
    }
  }

  /** Pins the declared URL plugins in a subprocess; then learns every module host from the pins. */
  async #pin(plan: SupervisorPlan) {
    const names = Object.keys(plan.plugins);
    if (names.length === 0) {
      this.#pinned = undefined;
      this.#pinsPending = false;
      return;
    }
    const command = pinCommand(plan.deployment);
    this.#output.say("info", `pinning URL plugins: ${names.join(", ")}`);
    const child = this.#spawn(command);
    this.#pinChild = child;
    const pump = (stream: ReadableStream<Uint8Array>, which: "stdout" | "stderr") =>
      forEachLine(stream, (line) => this.#output.line("plugins", which, line));
    const readers = Promise.all([pump(child.stdout, "stdout"), pump(child.stderr, "stderr")]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) =>
      timer = setTimeout(() => resolve("timeout"), this.#pinTimeoutMs)
    );
    const result = await Promise.race([child.status, timeout]);
    clearTimeout(timer);
    this.#pinChild = undefined;
    if (this.#stopping) {
      await readers;
      return;
    }
    if (result === "timeout") {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      this.#output.say(
        "error",
        `pinning took longer than ${this.#pinTimeoutMs / 1000} s; stopped it`,
      );
    }
    const exitCode = result === "timeout" ? undefined : result.code;
    await readers;
    let failed: string[] = [];
    try {
      const { pins } = await listPins(this.#store!, plan.deployment.store.prefix);
      const byName = new Map(pins.map((p) => [p.name, p]));
      // Not pinned, or still pinned to another URL than declared: that plugin's pin failed.
      failed = names.filter((name, i) => byName.get(name)?.url !== plan.deployment.plugins[i]?.url);
      this.#pinned = names.map((name, i) => {
        const pin = byName.get(name);
        return pin
          ? { url: pin.url, permissions: pin.permissions, modules: pin.modules }
          : plan.deployment.plugins[i];
      });
      this.#pinsPending = false;
    } catch (error) {
      this.#output.say(
        "warn",
        `cannot read the pins: ${
          errorMessage(error)
        }; pinning again before the next agent configuration write`,
      );
      this.#pinned = undefined;
      this.#pinsPending = true;
      this.#pinJustFailed = true;
    }
    if (exitCode !== undefined && exitCode !== 0) {
      const which = failed.length > 0 ? ` for ${failed.join(", ")}` : "";
      this.#output.say(
        "error",
        `pinning failed${which} (exit code ${exitCode}; the plugins lines above say why); ` +
          `agents keep the pins already in the store, and the rest of monitor.yaml applies`,
      );
    }
  }

  /**
   * Applies an edited monitor.yaml: an invalid one is reported and changes
   * nothing; a valid one is applied as a diff.
   */
  async applyEdit(text: string, file: string): Promise<void> {
    if (this.#stopping) return;
    let next: SupervisorPlan;
    try {
      next = this.#parse(text);
    } catch (error) {
      if (error instanceof ConfigError) {
        this.#output.say("error", `${file} was edited but is not valid; nothing changed:`);
        for (const issue of error.issues) this.#output.say("error", formatIssue(issue, file));
      } else {
        this.#output.say("error", `${file}: ${errorMessage(error)}; nothing changed`);
      }
      return;
    }
    const before = this.#plan;
    const diff = diffPlans(before, next);
    const failed = [...this.#services.values()].some((s) => s.state === "failed");
    if (isEmptyDiff(diff) && !failed) {
      const pending = this.pendingAgentConfigs;
      if (pending.length > 0) {
        this.#output.say(
          "info",
          `${file} changed; nothing new to apply; the agent configuration of ${
            pending.join(", ")
          } is not in the store yet: retrying now`,
        );
        await this.#reconcileAgents();
        return;
      }
      this.#output.say("info", `${file} changed; nothing to apply`);
      return;
    }
    const oldSupervisor = formatCommand(supervisorCommand(before.deployment));
    const newSupervisor = formatCommand(supervisorCommand(next.deployment));
    if (oldSupervisor !== newSupervisor) {
      this.#output.say(
        "info",
        `${file}: the supervisor's own permissions change (store, state directory or admin ` +
          `address); restarting everything`,
      );
      this.#relaunch?.("the supervisor's own permissions changed");
      return;
    }
    this.#plan = next;
    if (isLogFormat(next.deployment.logFormat)) this.#output.setFormat(next.deployment.logFormat);
    this.#output.say("info", `${file} changed; applying`);
    // Pins first: an agent configuration that uses a new plugin must find its pin.
    if (diff.pluginsChanged) await this.#pin(next);
    if (diff.agentsPut.length > 0 || diff.agentsDeleted.length > 0) {
      const put = Object.fromEntries(diff.agentsPut.map((id) => [id, next.agents[id]]));
      this.#desire(put, diff.agentsDeleted);
      await this.#reconcileAgents();
    }
    const restart = new Set<ServiceName>(diff.sharedChanged ? START_ORDER : diff.services);
    for (const name of START_ORDER) {
      const service = this.#services.get(name);
      if (!service) continue;
      const command = serviceCommand(name, this.#deployment(next));
      if (formatCommand(command) !== formatCommand(service.command)) restart.add(name);
      // A service given up on (crash loop) gets another chance with every valid edit.
      if (service.state === "failed") restart.add(name);
      service.setCommand(command);
    }
    const deployment = this.#deployment(next);
    const replicasChanged = restart.has("broker") ||
      (deployment.broker.replicas?.length ?? 1) !== this.#replicas.length + 1 ||
      this.#replicas.some((r, i) =>
        formatCommand(r.command) !== formatCommand(brokerReplicaCommand(deployment, i + 1))
      );
    for (const name of START_ORDER) {
      if (name === "broker" && replicasChanged && this.#replicas.length > 0) {
        this.#output.say("info", `stopping ${this.#replicas.length} broker replica(s)`);
        await this.#stopReplicas();
      }
      if (restart.has(name) && !this.#stopping) {
        const service = this.#services.get(name)!;
        const why = service.state === "failed"
          ? "it had stopped after a crash loop"
          : "its settings changed";
        this.#output.say("info", `restarting ${name} (${why})`);
        await service.restart();
      }
      if (name === "broker" && replicasChanged && !this.#stopping) {
        await this.#startReplicas(next);
      }
    }
  }

  /** Kills every service at once (a second Ctrl-C while stopping). */
  kill(): void {
    for (const service of this.#services.values()) service.kill();
    for (const replica of this.#replicas) replica.kill();
  }

  /**
   * Stops every service (agent first, broker last). Resolves true when each
   * stopped cleanly.
   */
  async stop(): Promise<boolean> {
    this.#stopping = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    try {
      this.#pinChild?.kill("SIGTERM");
    } catch { /* gone */ }
    let clean = true;
    for (const name of [...START_ORDER].reverse()) {
      if (name === "broker" && !await this.#stopReplicas()) clean = false;
      const service = this.#services.get(name);
      if (!service) continue;
      if (!await service.stop()) clean = false;
    }
    await this.#agentWrites;
    try {
      await this.#store?.close();
    } catch (error) {
      this.#output.say("warn", `closing the store: ${errorMessage(error)}`);
    }
    this.#store = undefined;
    return clean;
  }
}
