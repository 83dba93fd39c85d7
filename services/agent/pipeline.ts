/**
 * The plugin pipeline: runs the configured plugins in order on every sample.
 *
 * - `run()` may be sync or async and returns the sample, a changed sample, or
 *   nothing to drop it.
 * - Each call has a time budget (`plugin_timeout_ms`). A plugin that throws,
 *   overruns its budget or returns something that is not a sample does not
 *   stop the agent: the failure is counted and logged, and the sample goes on
 *   unchanged (as the failing plugin received it). A synchronous plugin cannot
 *   be interrupted; its overrun is noticed when it returns.
 * - After `plugin_max_failures` consecutive failures the plugin is disabled
 *   with a log message; its state shows in `status` and the heartbeat. It gets
 *   another chance when its settings change or on `reload`. A plugin that
 *   throws {@linkcode PluginStoppedError} (a URL plugin stopped by its sandbox)
 *   is disabled at once: it cannot run again.
 * - A configuration change finalizes removed plugins, initializes new ones and
 *   re-initializes plugins whose settings changed.
 *
 * @module
 */
import type {
  AlertEvent,
  Plugin,
  PluginContext,
  PluginLogLevel,
  Sample,
} from "../../plugins/api.ts";
import { findBuiltinPlugin } from "../../plugins/mod.ts";
import type { PluginSpec } from "../config/agent_config.ts";
import { errorMessage, type Logger } from "../common/log.ts";

/** What a plugin is doing. */
export type PluginStateName = "active" | "failing" | "disabled" | "failed";

/** A plugin's state as shown by `status`, `plugins` and the heartbeat. */
export interface PluginState {
  name: string;
  kind: "builtin" | "url";
  version: string;
  /**
   * `active`: runs normally; `failing`: its last call failed; `disabled`:
   * turned off after too many consecutive failures; `failed`: could not be
   * loaded or initialized.
   */
  state: PluginStateName;
  /** Samples it handled without failing. */
  runs: number;
  /** Failures since it was (re)initialized. */
  failures: number;
  consecutive_failures: number;
  /** Samples it dropped. */
  dropped: number;
  last_error?: string;
  settings: Record<string, unknown>;
}

/** What one plugin did with one sample of a batch (see {@linkcode BatchPlugin}). */
export type RunOutcome =
  | { ok: true; sample: Sample | null }
  | { ok: false; error: unknown; timeout?: boolean };

/**
 * A plugin that can take many samples in one call (URL plugins: one Worker
 * message for the batch). `runBatch` answers one outcome per sample in order,
 * ending early at the first sample whose run() threw (the rest were not run).
 */
export interface BatchPlugin {
  runBatch(samples: readonly Sample[]): Promise<RunOutcome[]>;
}

/** A pipeline plugin: a Plugin, optionally with close() and runBatch(). */
export type PipelinePlugin = Plugin & Partial<BatchPlugin> & { close?(): Promise<void> | void };

/** Loads a URL plugin (the plugin loader); resolves a Plugin, optionally with close(). */
export type UrlPluginLoader = (spec: PluginSpec) => Promise<PipelinePlugin>;

/** Options of {@linkcode Pipeline}. */
export interface PipelineOptions {
  agentId: string;
  hostname: string;
  /** Current collection interval (seconds), read by plugins through their context. */
  interval(): number;
  /** Receives every alert transition a plugin emits. */
  emitAlert(alert: AlertEvent): void;
  log: Logger;
  /** Loads URL plugins; without it, URL plugins fail with a message saying so. */
  loadUrlPlugin?: UrlPluginLoader;
  /** Called after any plugin state change (for the heartbeat). */
  onStateChange?(): void;
}

/** Limits applied to plugin calls. */
export interface PipelineLimits {
  /** Time budget of one call (ms). */
  timeoutMs: number;
  /** Consecutive failures before a plugin is disabled. */
  maxFailures: number;
}

/** Result of running a sample through the pipeline. */
export interface PipelineResult {
  /** The sample to send; undefined when a plugin dropped it. */
  sample?: Sample;
  /** The plugin that dropped it. */
  droppedBy?: string;
}

interface Slot {
  spec: PluginSpec;
  /** What the plugin was loaded from (URL plugins: the pin), to notice a re-pin. */
  source?: string;
  plugin?: PipelinePlugin;
  state: PluginState;
  /** It threw {@linkcode PluginStoppedError}: a retry loads it again. */
  stopped?: boolean;
}

const TIMEOUT = Symbol("timeout");
/** {@linkcode Pipeline} bookkeeping: the plugin failed on the sample, which goes on as it was. */
const FAILED = Symbol("failed");
/** {@linkcode Pipeline} bookkeeping: the plugin dropped the sample. */
const DROPPED = Symbol("dropped");

/** What a plugin call on one sample came to. */
type CallOutcome =
  | { kind: "value"; value: unknown }
  | { kind: "threw"; error: unknown }
  | { kind: "timeout" };

/** Races `work` against `ms`; resolves TIMEOUT when the budget runs out. */
async function withBudget<T>(work: () => T | Promise<T>, ms: number): Promise<T | typeof TIMEOUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const started = performance.now();
  try {
    const value = work();
    if (!(value instanceof Promise)) {
      if (performance.now() - started > ms) return TIMEOUT;
      return value;
    }
    // A late rejection must not become an unhandled rejection.
    value.catch(() => {});
    return await Promise.race([
      value,
      new Promise<typeof TIMEOUT>((resolve) => {
        timer = setTimeout(() => resolve(TIMEOUT), Math.max(0, ms - (performance.now() - started)));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function copySample(sample: Sample): Sample {
  return { timestamp: sample.timestamp, metrics: { ...sample.metrics } };
}

/** Checks what a plugin returned; a message when it is not a sample. */
export function checkPluginOutput(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return `returned ${
      Array.isArray(value) ? "a list" : typeof value
    }, expected a sample or nothing`;
  }
  const sample = value as Partial<Sample>;
  if (typeof sample.timestamp !== "number" || !Number.isFinite(sample.timestamp)) {
    return "returned a sample without a finite timestamp";
  }
  if (typeof sample.metrics !== "object" || sample.metrics === null) {
    return "returned a sample without metrics";
  }
  for (const [name, metric] of Object.entries(sample.metrics)) {
    if (typeof metric !== "number" || !Number.isFinite(metric)) {
      return `returned metric ${JSON.stringify(name)} = ${
        String(metric)
      }, expected a finite number`;
    }
  }
  return undefined;
}

/**
 * Thrown by a plugin that can never run again (a URL plugin whose sandbox
 * stopped it after a permission violation): the pipeline disables it at once
 * instead of counting failures up to `plugin_max_failures`.
 */
export class PluginStoppedError extends Error {
  /** @param message why the plugin stopped (already naming the plugin) */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PluginStoppedError";
  }
}

/** Runs plugins in order with budgets, failure counting and live reconfiguration. */
export class Pipeline {
  #options: PipelineOptions;
  #limits: PipelineLimits = { timeoutMs: 1000, maxFailures: 5 };
  #slots: Slot[] = [];
  #log: Logger;

  /** @param options agent identity, alert sink, logger, URL plugin loader */
  constructor(options: PipelineOptions) {
    this.#options = options;
    this.#log = options.log;
  }

  /** Plugin states in pipeline order. */
  states(): PluginState[] {
    return this.#slots.map((s) => ({ ...s.state, settings: { ...s.state.settings } }));
  }

  /** Names of plugins that are failing, disabled or failed (for degraded status). */
  problems(): string[] {
    return this.#slots.filter((s) => s.state.state !== "active").map((s) =>
      `plugin ${s.spec.name} ${s.state.state}${s.state.last_error ? `: ${s.state.last_error}` : ""}`
    );
  }

  #context(name: string): PluginContext {
    const options = this.#options;
    const log = this.#log.child(name);
    return {
      agentId: options.agentId,
      hostname: options.hostname,
      get interval() {
        return options.interval();
      },
      log: (level: PluginLogLevel, message: string) => log.log(level, String(message)),
      emitAlert: (alert: AlertEvent) => options.emitAlert(alert),
    };
  }

  #newState(spec: PluginSpec): PluginState {
    return {
      name: spec.name,
      kind: spec.kind,
      version: "",
      state: "active",
      runs: 0,
      failures: 0,
      consecutive_failures: 0,
      dropped: 0,
      settings: { ...spec.config },
    };
  }

  async #create(spec: PluginSpec, source?: string): Promise<Slot> {
    const slot: Slot = { spec, source, state: this.#newState(spec) };
    try {
      if (spec.kind === "builtin") {
        const builtin = findBuiltinPlugin(spec.name);
        if (!builtin) throw new Error(`no built-in plugin named ${spec.name}`);
        slot.plugin = builtin.create();
      } else {
        if (!this.#options.loadUrlPlugin) {
          throw new Error("URL plugins cannot be loaded: the plugin loader is not available");
        }
        slot.plugin = await this.#options.loadUrlPlugin(spec);
      }
      slot.state.version = String(slot.plugin.version ?? "");
    } catch (error) {
      slot.state.state = "failed";
      slot.state.last_error = `could not load: ${errorMessage(error)}`;
      this.#log.error(`plugin ${spec.name} ${slot.state.last_error}; the pipeline runs without it`);
      return slot;
    }
    await this.#initialize(slot);
    return slot;
  }

  async #initialize(slot: Slot): Promise<void> {
    const plugin = slot.plugin;
    if (!plugin) return;
    const budget = Math.max(this.#limits.timeoutMs, 5000);
    try {
      const outcome = await withBudget(
        () => plugin.initialize({ ...slot.spec.config }, this.#context(slot.spec.name)),
        budget,
      );
      if (outcome === TIMEOUT) throw new Error(`initialize() took longer than ${budget} ms`);
      slot.state.state = "active";
      slot.state.last_error = undefined;
      slot.state.consecutive_failures = 0;
    } catch (error) {
      slot.state.state = "failed";
      slot.state.last_error = `initialize failed: ${errorMessage(error)}`;
      this.#log.error(`plugin ${slot.spec.name} ${slot.state.last_error}; it is skipped`);
    }
  }

  async #finalize(slot: Slot): Promise<void> {
    const plugin = slot.plugin;
    if (!plugin) return;
    const budget = Math.max(this.#limits.timeoutMs, 5000);
    try {
      const outcome = await withBudget(() => plugin.finalize(), budget);
      if (outcome === TIMEOUT) throw new Error(`finalize() took longer than ${budget} ms`);
    } catch (error) {
      this.#log.warn(`plugin ${slot.spec.name} finalize failed: ${errorMessage(error)}`);
    }
    try {
      await plugin.close?.();
    } catch (error) {
      this.#log.warn(`plugin ${slot.spec.name} close failed: ${errorMessage(error)}`);
    }
  }

  /**
   * Applies a plugin list: finalizes removed plugins, initializes new ones,
   * re-initializes those whose settings changed, reloads those whose url or
   * source (`sources`: URL plugin name -> pin text) changed, keeps the order given.
   */
  async apply(
    specs: readonly PluginSpec[],
    limits: PipelineLimits,
    sources: ReadonlyMap<string, string> = new Map(),
  ): Promise<void> {
    this.#limits = { ...limits };
    const old = new Map(this.#slots.map((s) => [s.spec.name, s]));
    const next: Slot[] = [];
    for (const spec of specs) {
      const existing = old.get(spec.name);
      const source = spec.kind === "url" ? sources.get(spec.name) : undefined;
      if (
        existing && existing.spec.kind === spec.kind && existing.spec.url === spec.url &&
        existing.source === source
      ) {
        old.delete(spec.name);
        if (JSON.stringify(existing.spec.config) !== JSON.stringify(spec.config)) {
          existing.spec = spec;
          existing.state.settings = { ...spec.config };
          existing.state.failures = 0;
          if (existing.plugin) {
            this.#log.info(`plugin ${spec.name}: new settings ${JSON.stringify(spec.config)}`);
            await this.#initialize(existing);
          } else {
            await this.#finalize(existing);
            next.push(await this.#create(spec, source));
            continue;
          }
        }
        next.push(existing);
        continue;
      }
      if (existing) {
        old.delete(spec.name);
        await this.#finalize(existing);
      }
      this.#log.info(`plugin ${spec.name} (${spec.kind}) ${existing ? "reloaded" : "added"}`);
      next.push(await this.#create(spec, source));
    }
    for (const removed of old.values()) {
      this.#log.info(`plugin ${removed.spec.name} removed`);
      await this.#finalize(removed);
    }
    this.#slots = next;
    this.#options.onStateChange?.();
  }

  /** Gives disabled and failed plugins another chance (re-initializes them). */
  async retryDisabled(): Promise<string[]> {
    const retried: string[] = [];
    for (const [i, slot] of this.#slots.entries()) {
      if (slot.state.state !== "disabled" && slot.state.state !== "failed") continue;
      retried.push(slot.spec.name);
      slot.state.failures = 0;
      slot.state.consecutive_failures = 0;
      if (slot.stopped) {
        // Its sandbox refuses every call, finalize() too: only its Worker is closed.
        try {
          await slot.plugin?.close?.();
        } catch (error) {
          this.#log.warn(`plugin ${slot.spec.name} close failed: ${errorMessage(error)}`);
        }
      }
      if (slot.plugin && !slot.stopped) await this.#initialize(slot);
      else this.#slots[i] = await this.#create(slot.spec, slot.source);
    }
    if (retried.length > 0) this.#options.onStateChange?.();
    return retried;
  }

  #fail(slot: Slot, message: string, stopped = false) {
    const state = slot.state;
    state.failures++;
    state.consecutive_failures++;
    state.last_error = message;
    if (stopped) {
      slot.stopped = true;
      state.state = "disabled";
      this.#log.error(
        `plugin ${slot.spec.name} disabled: ${message}; it cannot run again until reloaded, samples pass it unchanged`,
      );
    } else if (state.consecutive_failures >= this.#limits.maxFailures) {
      state.state = "disabled";
      this.#log.error(
        `plugin ${slot.spec.name} disabled after ${state.consecutive_failures} consecutive failures (last: ${message}); samples pass it unchanged`,
      );
    } else {
      const wasActive = state.state === "active";
      state.state = "failing";
      this.#log.warn(
        `plugin ${slot.spec.name} failed (${state.consecutive_failures}/${this.#limits.maxFailures} in a row): ${message}; the sample continues unchanged`,
      );
      if (!wasActive) return;
    }
    this.#options.onStateChange?.();
  }

  #runnable(slot: Slot): boolean {
    return slot.plugin !== undefined && slot.state.state !== "disabled" &&
      slot.state.state !== "failed";
  }

  /** One run() with its time budget. */
  async #call(plugin: Plugin, input: Sample): Promise<CallOutcome> {
    try {
      const value = await withBudget(() => plugin.run(input), this.#limits.timeoutMs);
      return value === TIMEOUT ? { kind: "timeout" } : { kind: "value", value };
    } catch (error) {
      return { kind: "threw", error };
    }
  }

  /**
   * The bookkeeping of one call: failures counted (and the plugin disabled
   * after too many in a row), runs and drops counted; what goes on.
   */
  #settle(slot: Slot, outcome: CallOutcome): Sample | typeof FAILED | typeof DROPPED {
    if (outcome.kind === "threw") {
      this.#fail(
        slot,
        `run() threw: ${errorMessage(outcome.error)}`,
        outcome.error instanceof PluginStoppedError,
      );
      return FAILED;
    }
    if (outcome.kind === "timeout") {
      this.#fail(slot, `run() took longer than its budget of ${this.#limits.timeoutMs} ms`);
      return FAILED;
    }
    const value = outcome.value;
    if (value !== undefined && value !== null) {
      const problem = checkPluginOutput(value);
      if (problem) {
        this.#fail(slot, problem);
        return FAILED;
      }
    }
    const recovered = slot.state.state === "failing";
    slot.state.runs++;
    slot.state.consecutive_failures = 0;
    if (recovered) {
      slot.state.state = "active";
      this.#log.info(`plugin ${slot.spec.name} works again`);
      this.#options.onStateChange?.();
    }
    if (value === undefined || value === null) {
      slot.state.dropped++;
      return DROPPED;
    }
    return value as Sample;
  }

  /** Runs `sample` through every active plugin in order. */
  async run(sample: Sample): Promise<PipelineResult> {
    let current = copySample(sample);
    for (const slot of this.#slots) {
      if (!this.#runnable(slot)) continue;
      const after = this.#settle(slot, await this.#call(slot.plugin!, copySample(current)));
      if (after === DROPPED) return { droppedBy: slot.spec.name };
      if (after !== FAILED) current = copySample(after);
    }
    return { sample: current };
  }

  /**
   * Runs `samples` through the pipeline: every active plugin in order takes
   * the samples still going, in order, so each plugin sees the same sequence
   * as from {@linkcode run} one sample at a time, with the same budgets,
   * failure counting and disabling. A plugin with `runBatch` (a URL plugin)
   * gets them in one call instead of one Worker message per sample; after a
   * sample it threw on, the rest are sent again unless that disabled it. One
   * difference: a plugin disabled by bad results in the middle of a batch has
   * already run the rest of that batch (their results are not used).
   */
  async runBatch(samples: readonly Sample[]): Promise<PipelineResult[]> {
    const results: PipelineResult[] = samples.map((s) => ({ sample: copySample(s) }));
    const settle = (slot: Slot, result: PipelineResult, outcome: CallOutcome) => {
      const after = this.#settle(slot, outcome);
      if (after === DROPPED) {
        delete result.sample;
        result.droppedBy = slot.spec.name;
      } else if (after !== FAILED) result.sample = copySample(after);
    };
    for (const slot of this.#slots) {
      const going = results.filter((r) => r.sample !== undefined);
      let i = 0;
      while (i < going.length && this.#runnable(slot)) {
        const plugin = slot.plugin!;
        if (!plugin.runBatch) {
          const result = going[i++];
          settle(slot, result, await this.#call(plugin, copySample(result.sample!)));
          continue;
        }
        const batch = going.slice(i);
        let outcomes: RunOutcome[];
        try {
          outcomes = await plugin.runBatch(batch.map((r) => copySample(r.sample!)));
        } catch (error) {
          outcomes = [{ ok: false, error }];
        }
        if (outcomes.length === 0) {
          outcomes = [{ ok: false, error: new Error("runBatch() answered no sample") }];
        }
        for (const outcome of outcomes.slice(0, batch.length)) {
          // Disabled in the middle: the rest pass it unchanged, as from run().
          if (!this.#runnable(slot)) break;
          settle(
            slot,
            going[i++],
            outcome.ok
              ? { kind: "value", value: outcome.sample }
              : outcome.timeout
              ? { kind: "timeout" }
              : { kind: "threw", error: outcome.error },
          );
        }
      }
    }
    return results;
  }

  /** Finalizes every plugin (agent stop). */
  async close(): Promise<void> {
    const slots = this.#slots;
    this.#slots = [];
    for (const slot of slots) await this.#finalize(slot);
  }
}
