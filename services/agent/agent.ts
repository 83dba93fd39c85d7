/**
 * The running agent: ties the configuration watcher, metric collector,
 * plugin pipeline, batch buffer, broker link, heartbeat and commands
 * together.
 *
 * @module
 */
import { join } from "node:path";
import type { AlertEvent, Sample } from "../../plugins/api.ts";
import { errorMessage, getLogger, type Logger, setLogLevel } from "../common/log.ts";
import { checkAgentId } from "../common/ids.ts";
import { sameAgentConfig } from "../config/agent_config.ts";
import type { ClientTlsOptions, WireAlert, WireSample } from "../rpc/agent_mod.ts";
import { DEFAULT_STORE_PREFIX, storeKeys } from "../store/keys.ts";
import type { Store } from "../store/types.ts";
import type { BackoffOptions } from "./backoff.ts";
import { BatchBuffer } from "./buffer.ts";
import { type CommandTarget, runCommand } from "./commands.ts";
import { type ConfigState, ConfigWatcher } from "./config_watch.ts";
import { Heartbeat, type HeartbeatValue } from "./heartbeat.ts";
import { createCollector, type MetricsCollector, type MetricsSource } from "./metrics.ts";
import { Pipeline, type UrlPluginLoader } from "./pipeline.ts";
import { BrokerLink } from "./stream.ts";
import { createUrlPluginLoader } from "./url_plugins.ts";
import { PLUGIN_CACHE_DIR } from "../plugin_loader/permissions.ts";
import { AGENT_VERSION } from "./version.ts";
import { Ticker, type TickerTask } from "./ticker.ts";
import { keepAliveSeconds } from "../../plugins/duplicate_filter/mod.ts";

/** Options of {@linkcode startAgent}. */
export interface AgentOptions {
  /** Agent id (default: the hostname). */
  agentId?: string;
  /** Hostname reported to the broker (default: `Deno.hostname()`). */
  hostname?: string;
  /** The Store (config, heartbeat, pins). */
  store: Store;
  /** Close the store when the agent stops (default false). */
  ownsStore?: boolean;
  /** Key prefix (default `/monitor`). */
  prefix?: string;
  /**
   * Broker `host:port`, or several: the agent connects to one chosen by its id
   * (rendezvous hashing) and fails over to the next (see services/agent/stream.ts).
   */
  broker: string | readonly string[];
  tls?: ClientTlsOptions;
  /** Shared secret for the broker (default none). */
  token?: string;
  /** Metrics source (default `auto`). */
  metricsSource?: MetricsSource | "auto";
  /** Broker connect and Welcome timeout (ms, default 5000). */
  connectTimeoutMs?: number;
  /** Reconnect delays (default 0.5 s doubling to 30 s, with jitter). */
  backoff?: BackoffOptions;
  /** A connection up this long resets the backoff (ms, default 10000). */
  healthyMs?: number;
  /** After a stream that was up ends, first reconnect within a random delay up to this (ms, default 2000). */
  failoverSpreadMs?: number;
  /** How long stop() tries to deliver buffered batches (ms, default 3000). */
  flushMs?: number;
  /** State directory: URL plugins are cached in `<state_dir>/plugin-cache`. */
  stateDir?: string;
  /** Loads URL plugins (default: the plugin loader with the pins from the store); see url_plugins.ts. */
  loadUrlPlugin?: UrlPluginLoader;
  /**
   * The timer the collection and the heartbeat share (ticker.ts), e.g. with
   * the embedded store's poll (`agentStoreOptions(ticker)`); default: one of
   * its own. Closed when the agent stops.
   */
  ticker?: Ticker;
  /** Apply the configuration's log_level to the process-wide logger (default true). */
  applyLogLevel?: boolean;
  log?: Logger;
}

/** The last collection and what the pipeline made of it. */
export interface LastSample {
  /** As collected. */
  collected: Sample;
  /** After the pipeline; absent when dropped. */
  sent?: Sample;
  /** The plugin that dropped it. */
  dropped_by?: string;
  /** Sequence number of the batch holding it. */
  seq?: number;
}

/** A running agent. */
export interface AgentHandle {
  readonly agentId: string;
  readonly hostname: string;
  /** Everything `status` shows. */
  status(): Record<string, unknown>;
  /** Heartbeat value right now. */
  heartbeat(): HeartbeatValue;
  /** Runs a command as if the broker sent it. */
  command(type: string, args?: Record<string, unknown> | string): Promise<{
    status: string;
    output: unknown;
  }>;
  /** Takes a sample now (as the `collect` command). */
  collectNow(send?: boolean): Promise<LastSample>;
  /** Stops: flushes buffered batches for a short time, revokes the heartbeat, finalizes plugins. */
  stop(): Promise<void>;
}

function resolveHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

class Agent implements AgentHandle, CommandTarget {
  readonly agentId: string;
  readonly hostname: string;
  #options: AgentOptions;
  #log: Logger;
  #startedAt = Date.now();
  #collector: MetricsCollector;
  #pipeline: Pipeline;
  #buffer: BatchBuffer;
  #link: BrokerLink;
  #heartbeat: Heartbeat;
  #watcher: ConfigWatcher | undefined;
  #config: ConfigState | undefined;
  #pendingAlerts: WireAlert[] = [];
  /** The one timer of the collection and the heartbeat's refresh (ticker.ts). */
  #ticker: Ticker;
  #collectTask: TickerTask;
  #ticking = false;
  #lastTickAt = 0;
  #collecting: Promise<unknown> = Promise.resolve();
  #last: LastSample | undefined;
  #metricErrors: Record<string, string> = {};
  #counts = { collected: 0, sent: 0, dropped_by_plugins: 0, alerts: 0, empty: 0 };
  #stopped = false;
  #started = false;

  constructor(options: AgentOptions) {
    this.#options = options;
    this.hostname = options.hostname ?? resolveHostname();
    this.agentId = options.agentId ?? this.hostname;
    const problem = checkAgentId(this.agentId);
    if (problem) throw new TypeError(problem);
    this.#log = options.log ?? getLogger(`agent ${this.agentId}`);
    this.#ticker = options.ticker ?? new Ticker();
    this.#collectTask = this.#ticker.task(() => this.#tick());
    this.#collector = createCollector(options.metricsSource ?? "auto");
    this.#pipeline = new Pipeline({
      agentId: this.agentId,
      hostname: this.hostname,
      interval: () => this.#config?.config.interval ?? 5,
      emitAlert: (alert) => this.#alert(alert),
      log: this.#log.child("plugin"),
      loadUrlPlugin: options.loadUrlPlugin ?? createUrlPluginLoader({
        pins: () => this.#config?.pins ?? new Map(),
        pinPrefix: storeKeys(options.prefix ?? DEFAULT_STORE_PREFIX).pluginPrefix,
        cacheDir: options.stateDir ? join(options.stateDir, PLUGIN_CACHE_DIR) : undefined,
        timeoutMs: () => this.#config?.config.plugin_timeout_ms ?? 1000,
        log: (name, level, message) => this.#log.child(`plugin/${name}`).log(level, message),
      }),
      onStateChange: () => this.#heartbeat.changed(),
    });
    this.#buffer = new BatchBuffer(1000, 50);
    this.#link = new BrokerLink({
      address: options.broker,
      tls: options.tls,
      token: options.token ?? "",
      agentId: this.agentId,
      hostname: this.hostname,
      version: AGENT_VERSION,
      connectTimeoutMs: options.connectTimeoutMs,
      backoff: options.backoff,
      healthyMs: options.healthyMs,
      failoverSpreadMs: options.failoverSpreadMs,
      buffer: this.#buffer,
      onCommand: (command) => runCommand(this, command),
      onStateChange: () => this.#heartbeat.changed(),
      log: this.#log.child("broker"),
    });
    this.#heartbeat = new Heartbeat({
      store: options.store,
      key: storeKeys(options.prefix ?? DEFAULT_STORE_PREFIX).heartbeat(this.agentId),
      snapshot: () => this.heartbeat(),
      log: this.#log.child("heartbeat"),
      ticker: this.#ticker,
    });
  }

  async start(): Promise<void> {
    const prefix = this.#options.prefix ?? DEFAULT_STORE_PREFIX;
    this.#watcher = await ConfigWatcher.start({
      store: this.#options.store,
      prefix,
      agentId: this.agentId,
      log: this.#log.child("config"),
      onChange: (state, previous) => this.#apply(state, previous),
    });
    this.#link.start();
    await this.#heartbeat.start(this.#config!.config.heartbeat_ttl);
    this.#started = true;
    this.#schedule();
    this.#log.info(
      `agent ${this.agentId} (${this.hostname}, version ${AGENT_VERSION}, pid ${Deno.pid}) started; broker ${
        typeof this.#options.broker === "string"
          ? this.#options.broker
          : `${this.#link.address} (of ${this.#options.broker.join(", ")})`
      }, metrics from ${this.#collector.source}`,
    );
  }

  /**
   * One collection through the configured pipeline, without the loop:
   * `test` sends nothing and writes nothing (no broker, no heartbeat);
   * `once` sends the batch to the broker and waits up to `waitMs` for its
   * acknowledgement. Always stops the agent before returning.
   */
  async oneShot(mode: "test" | "once", waitMs: number): Promise<OneShotResult> {
    const alerts: WireAlert[] = [];
    try {
      this.#watcher = await ConfigWatcher.start({
        store: this.#options.store,
        prefix: this.#options.prefix ?? "/monitor",
        agentId: this.agentId,
        log: this.#log.child("config"),
        onChange: (state, previous) => this.#apply(state, previous),
      });
      if (mode === "once") this.#link.start();
      const sample = await this.#collectAndSend(mode === "once");
      if (mode === "test") alerts.push(...this.#pendingAlerts.splice(0));
      const plugins = this.#config?.config.plugins.map((p) => p.name) ?? [];
      const who = { agentId: this.agentId, hostname: this.hostname };
      if (mode === "test") return { ...who, sample, alerts, plugins };
      const acknowledged = sample.seq === undefined || await this.#link.flush(waitMs);
      return { ...who, sample, alerts, plugins, acknowledged };
    } finally {
      this.#stopped = true;
      await this.#link.stop();
      await this.#heartbeat.stop();
      await this.#watcher?.close();
      await this.#pipeline.close();
      await this.#collector.close();
      this.#ticker.close();
      if (this.#options.ownsStore) await this.#options.store.close();
    }
  }

  async #apply(state: ConfigState, previous: ConfigState | undefined): Promise<void> {
    this.#config = state;
    const config = state.config;
    const urlPins = (s: ConfigState | undefined) =>
      JSON.stringify(
        (s?.config.plugins ?? []).filter((p) => p.kind === "url").map((p) => s!.pins.get(p.name)),
      );
    const changed = !previous || !sameAgentConfig(previous.config, config) ||
      urlPins(previous) !== urlPins(state);
    if (changed) {
      if (config.log_level && this.#options.applyLogLevel !== false) setLogLevel(config.log_level);
      // Between collections, so that no sample sees half of the change.
      const work = this.#collecting.then(async () => {
        await this.#collector.configure(config.metrics);
        await this.#pipeline.apply(config.plugins, {
          timeoutMs: config.plugin_timeout_ms,
          maxFailures: config.plugin_max_failures,
        }, state.pins);
        for (const metric of Object.keys(this.#metricErrors)) {
          if (!(config.metrics as string[]).includes(metric)) delete this.#metricErrors[metric];
        }
      });
      this.#collecting = work.catch(() => {});
      await work;
      this.#buffer.resize(config.buffer, config.batch_max_samples);
      if (this.#started) {
        await this.#heartbeat.setTtl(config.heartbeat_ttl);
        if (!previous || previous.config.interval !== config.interval) this.#schedule();
      }
    }
    this.#heartbeat.changed();
  }

  #alert(alert: AlertEvent) {
    const valid = typeof alert?.metric === "string" && alert.metric.length > 0 &&
      [alert.value, alert.threshold, alert.timestamp].every((n) =>
        typeof n === "number" && Number.isFinite(n)
      ) && (alert.state === "firing" || alert.state === "resolved");
    if (!valid) {
      this.#log.warn(`ignored an alert that is not valid: ${JSON.stringify(alert)}`);
      return;
    }
    this.#pendingAlerts.push({
      metric: alert.metric,
      value: alert.value,
      threshold: alert.threshold,
      state: alert.state,
      timestamp: alert.timestamp,
    });
    this.#counts.alerts++;
  }

  /** Schedules the next collection `interval` after the previous one (now when overdue). */
  #schedule() {
    if (this.#stopped || !this.#config) return;
    const intervalMs = this.#config.config.interval * 1000;
    const due = this.#lastTickAt === 0 ? Date.now() + intervalMs : this.#lastTickAt + intervalMs;
    this.#collectTask.at(due);
  }

  /**
   * One collection. The next one is armed at once for `interval` after this
   * one began (so that the heartbeat, seeing it, waits for that wake-up), and
   * again when this one ends (now, if it overran the interval; a wake-up
   * during it waits for it).
   */
  async #tick() {
    if (this.#stopped || this.#ticking) return;
    this.#ticking = true;
    this.#lastTickAt = Date.now();
    this.#schedule();
    try {
      await this.#collectAndSend(true);
    } catch (error) {
      this.#log.error(`collection failed: ${errorMessage(error)}`);
    } finally {
      this.#ticking = false;
    }
    this.#schedule();
  }

  /** Collections are serialized so rate baselines and plugin state stay consistent. */
  #collectAndSend(send: boolean): Promise<LastSample> {
    const run = this.#collecting.then(() => this.#collectOnce(send));
    this.#collecting = run.catch(() => {});
    return run;
  }

  async #collectOnce(send: boolean): Promise<LastSample> {
    const collected = await this.#collector.collect();
    const errorsBefore = JSON.stringify(this.#metricErrors);
    this.#metricErrors = collected.errors;
    if (JSON.stringify(collected.errors) !== errorsBefore) {
      for (const [metric, message] of Object.entries(collected.errors)) {
        this.#log.warn(`metric ${metric} unavailable: ${message}`);
      }
      this.#heartbeat.changed();
    }
    const sample: Sample = { timestamp: collected.timestamp, metrics: collected.metrics };
    this.#counts.collected++;
    const last: LastSample = { collected: sample };
    if (Object.keys(sample.metrics).length === 0) {
      this.#counts.empty++;
      this.#last = last;
      this.#flushAlerts(send, last);
      return last;
    }
    const result = await this.#pipeline.run(sample);
    if (result.sample) last.sent = result.sample;
    else {
      last.dropped_by = result.droppedBy;
      this.#counts.dropped_by_plugins++;
    }
    this.#last = last;
    if (send && result.sample) {
      const alerts = this.#pendingAlerts.splice(0);
      last.seq = this.#link.submit([this.#wireSample(result.sample, collected.counters)], alerts);
      this.#counts.sent++;
    } else this.#flushAlerts(send, last);
    return last;
  }

  /**
   * The sample as sent: what the pipeline left, plus the raw counters, the
   * interval and the keep-alive window (additive fields of `monitoring-data`).
   */
  #wireSample(sample: Sample, counters: Record<string, number>): WireSample {
    const config = this.#config?.config;
    const interval = config?.interval ?? 0;
    const filter = config?.plugins.find((p) =>
      p.kind === "builtin" && p.name === "duplicate_filter"
    );
    return {
      timestamp: sample.timestamp,
      metrics: sample.metrics,
      counters,
      interval,
      keepalive: interval > 0 ? keepAliveSeconds(interval, filter?.config) : 0,
    };
  }

  /** Sends alerts raised while their sample was dropped (or not sent). */
  #flushAlerts(send: boolean, last: LastSample) {
    if (!send || this.#pendingAlerts.length === 0) return;
    last.seq = this.#link.submit([], this.#pendingAlerts.splice(0));
  }

  #reasons(): string[] {
    const reasons: string[] = [];
    const state = this.#config;
    if (state?.problem) {
      reasons.push(
        `invalid config ${state.problem.key} (revision ${state.problem.revision}): ${
          state.problem.issues[0] ?? "rejected"
        }${state.problem.issues.length > 1 ? ` (+${state.problem.issues.length - 1} more)` : ""}`,
      );
    }
    reasons.push(...this.#pipeline.problems());
    const link = this.#link.status();
    if (link.state !== "connected" && link.last_error) {
      reasons.push(`broker unreachable: ${link.last_error}`);
    }
    for (const [metric, message] of Object.entries(this.#metricErrors)) {
      reasons.push(`metric ${metric} unavailable: ${message}`);
    }
    const heartbeatError = this.#heartbeat.lastError;
    if (heartbeatError) {
      reasons.push(`store unreachable (heartbeat not written): ${heartbeatError}`);
    }
    return reasons;
  }

  heartbeat(): HeartbeatValue {
    const reasons = this.#reasons();
    return {
      agent_id: this.agentId,
      hostname: this.hostname,
      timestamp: Date.now() / 1000,
      version: AGENT_VERSION,
      status: reasons.length === 0 ? "ok" : "degraded",
      reasons,
      config_revision: this.#config?.revision ?? 0,
      config_source: this.#config?.source ?? "builtin",
      plugins: this.#pipeline.states().map((p) => ({ name: p.name, state: p.state })),
      uptime: Math.round((Date.now() - this.#startedAt) / 1000),
      pid: Deno.pid,
    };
  }

  // ------------------------------------------------------------ commands

  status(): Record<string, unknown> {
    const reasons = this.#reasons();
    const state = this.#config;
    return {
      agent_id: this.agentId,
      hostname: this.hostname,
      version: AGENT_VERSION,
      pid: Deno.pid,
      uptime: Math.round((Date.now() - this.#startedAt) / 100) / 10,
      status: reasons.length === 0 ? "ok" : "degraded",
      problems: reasons,
      config: this.config(),
      plugins: this.#pipeline.states(),
      last_sample: this.#last ?? null,
      samples: { ...this.#counts },
      buffer: this.#buffer.stats(),
      broker: this.#link.status(),
      metrics_source: this.#collector.source,
      metric_errors: { ...this.#metricErrors },
      config_revision: state?.revision ?? 0,
    };
  }

  ping(): Record<string, unknown> {
    return { pong: true, agent_id: this.agentId, timestamp: Date.now() / 1000 };
  }

  async collect(send: boolean): Promise<Record<string, unknown>> {
    const last = await this.#collectAndSend(send);
    return { ...last, sent_to_broker: send && last.seq !== undefined };
  }

  async reload(): Promise<Record<string, unknown>> {
    if (!this.#watcher) throw new Error("the agent is not running");
    const state = await this.#watcher.reload();
    const retried = await this.#pipeline.retryDisabled();
    return {
      source: state.source,
      key: state.key,
      revision: state.revision,
      problem: state.problem ?? null,
      retried_plugins: retried,
      config: state.config,
    };
  }

  plugins(): Record<string, unknown> {
    return { plugins: this.#pipeline.states() };
  }

  config(): Record<string, unknown> {
    const state = this.#config;
    if (!state) return { source: "none" };
    return {
      source: state.source,
      key: state.key,
      revision: state.revision,
      applied_at: state.applied_at,
      problem: state.problem ?? null,
      ...state.config,
    };
  }

  metrics(): Record<string, unknown> {
    return { last_sample: this.#last ?? null };
  }

  // ------------------------------------------------------------ handle

  async command(
    type: string,
    args: Record<string, unknown> | string = "",
  ): Promise<{ status: string; output: unknown }> {
    const result = await runCommand(this, {
      command_id: `local-${Date.now()}`,
      command_type: type,
      args_json: typeof args === "string" ? args : JSON.stringify(args),
      timestamp: Date.now() / 1000,
    });
    return { status: result.status, output: JSON.parse(result.output_json) };
  }

  collectNow(send = true): Promise<LastSample> {
    return this.#collectAndSend(send);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#collectTask.cancel();
    await this.#collecting;
    const flushMs = this.#options.flushMs ?? 3000;
    if (this.#buffer.size > 0 && this.#link.connected) {
      const flushed = await this.#link.flush(flushMs);
      if (!flushed) {
        this.#log.warn(
          `stopping with ${this.#buffer.size} unacknowledged batch(es) after waiting ${flushMs} ms`,
        );
      }
    } else if (this.#buffer.size > 0) {
      this.#log.warn(
        `stopping with ${this.#buffer.size} unacknowledged batch(es): the broker is not connected`,
      );
    }
    await this.#link.stop();
    await this.#watcher?.close();
    await this.#heartbeat.stop();
    await this.#pipeline.close();
    await this.#collector.close();
    this.#ticker.close();
    if (this.#options.ownsStore) await this.#options.store.close();
    this.#log.info(`agent ${this.agentId} stopped`);
  }
}

/** What {@linkcode runOnce} did. */
export interface OneShotResult {
  agentId: string;
  hostname: string;
  /** The collection and what the pipeline made of it. */
  sample: LastSample;
  /** Alerts the plugins raised on it (`test`: not sent). */
  alerts: WireAlert[];
  /** The pipeline's plugins, in order. */
  plugins: string[];
  /** `once`: the broker acknowledged the batch within the wait. */
  acknowledged?: boolean;
}

/**
 * Telegraf's `--test` and `--once`: reads the agent's configuration, runs
 * one collection through its pipeline, then stops. `test` prints rather
 * than sends (no broker, no heartbeat); `once` sends the one batch and
 * waits up to `waitMs` for the broker's acknowledgement.
 */
export async function runOnce(
  options: AgentOptions,
  mode: "test" | "once",
  waitMs = 15_000,
): Promise<OneShotResult> {
  return await new Agent(options).oneShot(mode, waitMs);
}

/**
 * Starts an agent: reads its configuration (applying it), connects to the
 * broker, writes its heartbeat and begins collecting.
 */
export async function startAgent(options: AgentOptions): Promise<AgentHandle> {
  const agent = new Agent(options);
  try {
    await agent.start();
  } catch (error) {
    await agent.stop().catch(() => {});
    throw error;
  }
  return agent;
}
