/**
 * Running a pinned URL plugin: verify every module against the pin (cache
 * first, re-verified, else fetched), write the verified local copy, and run
 * it in a Worker with exactly the declared permissions. The returned object
 * implements the Plugin API, so the agent's pipeline needs to know nothing
 * about Workers.
 *
 * The plugin runs from blob: URLs of the verified bytes (nothing runnable is
 * written to disk; the lockfile plays no part). The agent process needs
 * `--unstable-worker-options`, read/write access to the cache directory, net
 * access to the module hosts, and every permission a plugin declares (a
 * Worker cannot get more than its parent).
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
import { ModuleCache } from "./cache.ts";
import {
  PluginError,
  PluginPermissionError,
  PluginRuntimeError,
  PluginTimeoutError,
} from "./errors.ts";
import {
  type BatchReply,
  type ContextFields,
  type HostCall,
  missingPermission,
  type WireError,
  type WorkerMessage,
} from "./protocol.ts";
import type { PluginPermissions, PluginPin } from "./types.ts";
import { type BlobGraph, blobGraph, collectVerified } from "./verify.ts";

/** Default time budget of one `run()` call (ms). */
export const DEFAULT_RUN_TIMEOUT_MS = 1_000;
/** Default time budget of loading, `initialize()` and `finalize()` (ms). */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;

const LOG_LEVELS: readonly string[] = ["debug", "info", "warn", "error"];
const MAX_LOG_LENGTH = 4_000;

/** Options of {@linkcode loadUrlPlugin}. */
export interface LoadOptions {
  /** Module cache directory, `<state_dir>/plugin-cache` (verified copies by sha256). */
  cacheDir: string;
  /** Time budget of `run()` (default {@linkcode DEFAULT_RUN_TIMEOUT_MS}). */
  timeoutMs?: number;
  /** Time budget of loading, `initialize()` and `finalize()` (default {@linkcode DEFAULT_CALL_TIMEOUT_MS}). */
  callTimeoutMs?: number;
  /** Time budget of one module fetch (ms). */
  fetchTimeoutMs?: number;
  /**
   * Receives the loader's own notes about this plugin: a corrupt cache entry,
   * an uncaught error inside the plugin, a restart after a timeout, a
   * malformed alert. Default: nothing.
   */
  log?: (level: PluginLogLevel, message: string) => void;
}

/** What a URL plugin is doing. */
export interface UrlPluginStatus {
  /**
   * `ready`: its Worker answers; `restarting`: its Worker was stopped after a
   * timeout and starts again on the next call; `stopped`: it broke its
   * sandbox or its Worker failed, every call fails with `error`;
   * `closed`: {@linkcode UrlPlugin.close} was called.
   */
  state: "ready" | "restarting" | "stopped" | "closed";
  /** Why it was stopped, or the last fault reported. */
  error?: string;
  /** Workers started after the first one. */
  restarts: number;
  /** Uncaught errors inside the plugin reported so far. */
  faults: number;
}

/** What run() did with one sample of {@linkcode UrlPlugin.runBatch}. */
export type RunOutcome =
  | { ok: true; sample: Sample | null }
  | {
    ok: false;
    /** A {@linkcode PluginError}, as run() would have rejected with. */
    error: Error;
    /** The sample's run() took longer than the time budget. */
    timeout?: boolean;
  };

/** A running URL plugin: the Plugin API plus lifecycle. */
export interface UrlPlugin extends Plugin {
  /** The pin it was loaded from. */
  readonly pin: PluginPin;
  /** Name and version the plugin reports itself (the pin's are `name` and `version`). */
  readonly reported: { name: string; version: string };
  /** Sample in, sample (or `null` to drop it) out; rejects with a {@linkcode PluginError}. */
  run(sample: Sample): Promise<Sample | null>;
  /**
   * Runs `samples` in order in one message each way. One outcome per sample,
   * in order, except that the batch ends at the first sample whose run()
   * threw (its outcome is the last; the rest were not run, so that the
   * caller can decide as after a failed run(): retry them, or not when the
   * plugin is now disabled). A permission violation stops the plugin as in
   * run(). The batch's time budget is the run() budget times its size; when
   * it runs out the Worker is restarted and every sample not answered is a
   * timeout. A sample whose run() finished later than the budget is a
   * timeout too.
   */
  runBatch(samples: readonly Sample[]): Promise<RunOutcome[]>;
  /** Calls the plugin's initialize with its settings; context functions stay in the agent. */
  initialize(config: Record<string, unknown>, context: PluginContext): Promise<void>;
  /** Calls the plugin's finalize. */
  finalize(): Promise<void>;
  /** State, restarts and faults. */
  status(): UrlPluginStatus;
  /** Stops the Worker. Idempotent; later calls fail. */
  close(): Promise<void>;
}

/** The Worker permissions for a plugin: exactly what it declared, nothing else. */
export function workerPermissions(permissions: PluginPermissions): Deno.PermissionOptionsObject {
  const list = (items: string[]) => items.length > 0 ? [...items] : false;
  return {
    env: list(permissions.env),
    net: list(permissions.net),
    read: list(permissions.read),
    write: false,
    run: false,
    ffi: false,
    sys: false,
    import: false,
  } as Deno.PermissionOptionsObject;
}

function describeGrant(permissions: PluginPermissions, kind: string): string {
  const granted = (permissions as unknown as Record<string, string[] | undefined>)[kind];
  return granted && granted.length > 0 ? granted.join(", ") : "none";
}

function describeOperation(operation: string): string {
  return operation === "background" ? "a background task" : `${operation}()`;
}

function permissionError(pin: PluginPin, operation: string, error: WireError): PluginError {
  const missing = missingPermission(error);
  if (!missing) {
    const hint = /not a dependency and not in import map/.test(error.message)
      ? " (a computed import specifier: only static imports and import() of a literal string " +
        "are pinned and can be loaded)"
      : "";
    return new PluginRuntimeError(pin.name, operation, `${error.name}: ${error.message}${hint}`);
  }
  return new PluginPermissionError(
    pin.name,
    missing.permission,
    missing.target,
    `plugin "${pin.name}" was stopped: ${describeOperation(operation)} needed ` +
      `${missing.permission} access to ` +
      `"${missing.target}", which it was not granted (declared ${missing.permission}: ` +
      `${describeGrant(pin.permissions, missing.permission)})`,
  );
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

function checkSample(value: unknown): Sample | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "expected a sample object {timestamp, metrics}";
  }
  const { timestamp, metrics } = value as Record<string, unknown>;
  if (!isFiniteNumber(timestamp)) return "timestamp: expected Unix seconds";
  if (typeof metrics !== "object" || metrics === null || Array.isArray(metrics)) {
    return "metrics: expected a mapping of metric name to number";
  }
  for (const [name, v] of Object.entries(metrics)) {
    if (!isFiniteNumber(v)) return `metrics.${JSON.stringify(name)}: expected a finite number`;
  }
  return { timestamp, metrics: { ...(metrics as Record<string, number>) } };
}

function checkAlert(value: unknown): AlertEvent | string {
  if (typeof value !== "object" || value === null) return "expected an alert object";
  const a = value as Record<string, unknown>;
  if (typeof a.metric !== "string" || a.metric === "") return "metric: expected a metric name";
  if (!isFiniteNumber(a.value)) return "value: expected a number";
  if (!isFiniteNumber(a.threshold)) return "threshold: expected a number";
  if (a.state !== "firing" && a.state !== "resolved") {
    return 'state: expected "firing" or "resolved"';
  }
  if (!isFiniteNumber(a.timestamp)) return "timestamp: expected Unix seconds";
  return {
    metric: a.metric,
    value: a.value,
    threshold: a.threshold,
    state: a.state,
    timestamp: a.timestamp,
  };
}

interface Pending {
  op: string;
  resolve(value: string | undefined): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

class WorkerPlugin implements UrlPlugin {
  readonly name: string;
  readonly version: string;
  reported = { name: "", version: "" };
  #worker?: Worker;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #state: UrlPluginStatus["state"] = "restarting";
  #stopError?: PluginError;
  #lastFault?: string;
  #restarts = -1;
  #faults = 0;
  #config?: string;
  #context?: PluginContext;
  #sentInterval?: number;
  #cache: ModuleCache;
  #blobs?: BlobGraph;
  #starting?: Promise<void>;

  constructor(readonly pin: PluginPin, readonly options: LoadOptions) {
    this.name = pin.name;
    this.version = pin.version;
    this.#cache = new ModuleCache(options.cacheDir);
  }

  #note(level: PluginLogLevel, message: string) {
    try {
      this.options.log?.(level, message);
    } catch {
      // the agent's log callback failed; nothing better to do than to go on
    }
  }

  get #runTimeout() {
    return this.options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
  }

  get #callTimeout() {
    return this.options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  }

  /** Verifies the graph, makes its blob: copy and starts a Worker on it. */
  async start(): Promise<void> {
    const verified = await collectVerified(this.pin, {
      cache: this.#cache,
      timeoutMs: this.options.fetchTimeoutMs,
      warn: (message) => this.#note("warn", message),
    });
    this.#blobs?.revoke();
    this.#blobs = blobGraph(this.pin, verified);
    let worker: Worker;
    try {
      worker = new Worker(this.#blobs.bootstrap, {
        type: "module",
        name: `plugin ${this.pin.name}`,
        deno: { permissions: workerPermissions(this.pin.permissions) },
      });
    } catch (error) {
      throw this.#grantError(error);
    }
    this.#worker = worker;
    this.#restarts++;
    worker.onmessage = (event: MessageEvent<WorkerMessage>) => this.#receive(worker, event.data);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      if (worker !== this.#worker) return;
      this.#stop(new PluginRuntimeError(this.pin.name, "worker", event.message));
    };
    worker.onmessageerror = () => {
      if (worker !== this.#worker) return;
      this.#note("warn", `plugin "${this.pin.name}": a message from its worker could not be read`);
    };
    this.#state = "ready";
    const reported = await this.#call({ op: "load" }, this.#callTimeout);
    const parsed = JSON.parse(reported ?? "{}") as { name?: string; version?: string };
    this.reported = { name: String(parsed.name ?? ""), version: String(parsed.version ?? "") };
    if (this.#config !== undefined && this.#context) {
      await this.#call(
        { op: "initialize", config: this.#config, context: this.#fields(this.#context) },
        this.#callTimeout,
      );
    }
  }

  #grantError(error: unknown): PluginError {
    const message = (error as Error)?.message ?? String(error);
    const missing = missingPermission({ name: (error as Error)?.name ?? "Error", message });
    return new PluginPermissionError(
      this.pin.name,
      missing?.permission ?? "unknown",
      missing?.target ?? "",
      `plugin "${this.pin.name}" cannot start: the agent process lacks permissions the plugin ` +
        `declares (net: ${describeGrant(this.pin.permissions, "net")}; read: ` +
        `${describeGrant(this.pin.permissions, "read")}; env: ` +
        `${describeGrant(this.pin.permissions, "env")}); grant them to the agent ` +
        `(--allow-net/--allow-read/--allow-env): ${message}`,
    );
  }

  #fields(context: PluginContext): ContextFields {
    return {
      agentId: String(context.agentId),
      hostname: String(context.hostname),
      interval: Number(context.interval),
    };
  }

  #receive(worker: Worker, message: WorkerMessage) {
    if (worker !== this.#worker || typeof message !== "object" || message === null) return;
    try {
      this.#dispatch(message);
    } catch (error) {
      // A throwing log or emitAlert callback must not become an uncaught error of the agent.
      this.#note(
        "error",
        `plugin "${this.pin.name}": handling its ${message.type} message failed: ${
          (error as Error)?.message ?? String(error)
        }`,
      );
    }
  }

  #dispatch(message: WorkerMessage) {
    switch (message.type) {
      case "reply": {
        const pending = this.#pending.get(message.id);
        if (!pending) return;
        this.#pending.delete(message.id);
        clearTimeout(pending.timer);
        if (message.ok) {
          pending.resolve(typeof message.value === "string" ? message.value : undefined);
        } else {
          const error = permissionError(this.pin, pending.op, message.error ?? toWire(message));
          if (error instanceof PluginPermissionError) this.#stop(error);
          pending.reject(error);
        }
        return;
      }
      case "log": {
        const level = LOG_LEVELS.includes(message.level) ? message.level as PluginLogLevel : "info";
        const text = String(message.message).slice(0, MAX_LOG_LENGTH);
        if (this.#context) this.#context.log(level, text);
        else this.#note(level, `plugin "${this.pin.name}": ${text}`);
        return;
      }
      case "alert": {
        let alert: AlertEvent | string;
        try {
          alert = checkAlert(JSON.parse(String(message.alert)));
        } catch {
          alert = "not JSON";
        }
        if (typeof alert === "string") {
          this.#note("warn", `plugin "${this.pin.name}" emitted an invalid alert: ${alert}`);
        } else this.#context?.emitAlert(alert);
        return;
      }
      case "fault": {
        this.#faults++;
        const error = message.error ?? toWire(message);
        const failure = permissionError(this.pin, "background", error);
        this.#lastFault = failure.message;
        if (failure instanceof PluginPermissionError) {
          this.#note("error", failure.message);
          this.#stop(failure);
        } else {
          this.#note(
            "error",
            `plugin "${this.pin.name}": uncaught error in the plugin: ${error.name}: ${error.message}`,
          );
        }
        return;
      }
    }
  }

  #terminate() {
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#blobs?.revoke();
    this.#blobs = undefined;
  }

  #failPending(error: Error) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
  }

  /** Stops the plugin for good (sandbox violation or broken Worker). */
  #stop(error: PluginError) {
    if (this.#state === "closed") return;
    this.#terminate();
    this.#state = "stopped";
    this.#stopError = error;
    this.#failPending(error);
  }

  #call(
    body:
      | { op: "load" }
      | {
        op: "initialize";
        config: string;
        context: ContextFields;
      }
      | { op: "run"; sample: string; interval?: number }
      | { op: "runBatch"; samples: string; budgetMs: number; interval?: number }
      | { op: "finalize" },
    timeoutMs: number,
  ): Promise<string | undefined> {
    const worker = this.#worker;
    if (!worker || this.#state !== "ready") {
      return Promise.reject(
        this.#stopError ??
          new PluginRuntimeError(this.pin.name, body.op, "the plugin is not running"),
      );
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.#pending.delete(id)) return;
        const error = new PluginTimeoutError(this.pin.name, body.op, timeoutMs);
        this.#note("warn", error.message);
        this.#terminate();
        this.#state = "restarting";
        this.#failPending(error);
        reject(error);
      }, timeoutMs);
      this.#pending.set(id, { op: body.op, resolve, reject, timer });
      worker.postMessage({ type: "call", id, ...body } as HostCall);
    });
  }

  async #ensureRunning(): Promise<void> {
    // One restart at a time; calls made meanwhile wait for it (and then see its outcome).
    while (this.#starting) await this.#starting.catch(() => {});
    if (this.#state === "ready") return;
    if (this.#state === "stopped") throw this.#stopError!;
    if (this.#state === "closed") {
      throw new PluginRuntimeError(this.pin.name, "call", "the plugin was closed");
    }
    this.#starting = this.#restart();
    try {
      await this.#starting;
    } finally {
      this.#starting = undefined;
    }
  }

  async #restart(): Promise<void> {
    this.#sentInterval = undefined;
    try {
      await this.start();
    } catch (error) {
      if (error instanceof PluginTimeoutError) throw error;
      const failure = error instanceof PluginError
        ? error
        : new PluginRuntimeError(this.pin.name, "restart", (error as Error).message);
      this.#stop(failure);
      throw failure;
    }
  }

  async initialize(config: Record<string, unknown>, context: PluginContext): Promise<void> {
    let text: string;
    try {
      text = JSON.stringify(config ?? {});
    } catch (error) {
      throw new PluginRuntimeError(
        this.pin.name,
        "initialize",
        `settings are not JSON: ${(error as Error).message}`,
      );
    }
    await this.#ensureRunning();
    this.#config = text;
    this.#context = context;
    this.#sentInterval = Number(context.interval);
    await this.#call(
      { op: "initialize", config: text, context: this.#fields(context) },
      this.#callTimeout,
    );
  }

  async run(sample: Sample): Promise<Sample | null> {
    await this.#ensureRunning();
    const interval = this.#context ? Number(this.#context.interval) : undefined;
    const body: { op: "run"; sample: string; interval?: number } = {
      op: "run",
      sample: JSON.stringify(sample),
    };
    if (interval !== undefined && interval !== this.#sentInterval) {
      body.interval = interval;
      this.#sentInterval = interval;
    }
    const reply = await this.#call(body, this.#runTimeout);
    if (reply === undefined) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(reply);
    } catch {
      throw new PluginRuntimeError(this.pin.name, "run", "returned something that is not JSON");
    }
    const checked = checkSample(parsed);
    if (typeof checked === "string") {
      throw new PluginRuntimeError(this.pin.name, "run", `returned an invalid sample: ${checked}`);
    }
    return checked;
  }

  async runBatch(samples: readonly Sample[]): Promise<RunOutcome[]> {
    if (samples.length === 0) return [];
    const body: { op: "runBatch"; samples: string; budgetMs: number; interval?: number } = {
      op: "runBatch",
      samples: JSON.stringify(samples),
      budgetMs: this.#runTimeout,
    };
    let text: string | undefined;
    try {
      await this.#ensureRunning();
      const interval = this.#context ? Number(this.#context.interval) : undefined;
      if (interval !== undefined && interval !== this.#sentInterval) {
        body.interval = interval;
        this.#sentInterval = interval;
      }
      text = await this.#call(body, this.#runTimeout * samples.length);
    } catch (error) {
      const failure = error as Error;
      // Timed out: no sample was answered, each counts as one run() that overran.
      if (failure instanceof PluginTimeoutError) {
        return samples.map(() => ({ ok: false, error: failure, timeout: true }));
      }
      return [{ ok: false, error: failure }];
    }
    let reply: BatchReply;
    try {
      reply = JSON.parse(text ?? "") as BatchReply;
      if (!Array.isArray(reply.out) || !Array.isArray(reply.overran)) throw new Error();
    } catch {
      return [{
        ok: false,
        error: new PluginRuntimeError(this.pin.name, "run", "answered a batch that is not JSON"),
      }];
    }
    const overran = new Set(reply.overran);
    const outcomes: RunOutcome[] = reply.out.map((value, i) => {
      if (overran.has(i)) {
        return {
          ok: false,
          timeout: true,
          error: new PluginTimeoutError(this.pin.name, "run", this.#runTimeout),
        };
      }
      if (value === null) return { ok: true, sample: null };
      const checked = checkSample(value);
      return typeof checked === "string"
        ? {
          ok: false,
          error: new PluginRuntimeError(
            this.pin.name,
            "run",
            `returned an invalid sample: ${checked}`,
          ),
        }
        : { ok: true, sample: checked };
    });
    if (reply.error) {
      // As a run() that rejected: a permission violation stops the plugin.
      const error = permissionError(this.pin, "run", reply.error);
      if (error instanceof PluginPermissionError) this.#stop(error);
      outcomes.push({ ok: false, error });
    }
    return outcomes;
  }

  async finalize(): Promise<void> {
    if (this.#state !== "ready") return;
    await this.#call({ op: "finalize" }, this.#callTimeout);
  }

  status(): UrlPluginStatus {
    const status: UrlPluginStatus = {
      state: this.#state,
      restarts: Math.max(0, this.#restarts),
      faults: this.#faults,
    };
    const error = this.#stopError?.message ?? this.#lastFault;
    if (error !== undefined) status.error = error;
    return status;
  }

  close(): Promise<void> {
    if (this.#state !== "closed") {
      this.#terminate();
      this.#state = "closed";
      this.#failPending(new PluginRuntimeError(this.pin.name, "call", "the plugin was closed"));
    }
    return Promise.resolve();
  }
}

function toWire(message: unknown): WireError {
  return {
    name: "Error",
    message: `malformed message from the worker: ${JSON.stringify(message)}`,
  };
}

/**
 * Loads a pinned URL plugin: verifies every module against `pin` before any
 * of its code runs (cached copies are re-verified; a corrupt one is fetched
 * again), then starts it in a Worker with exactly the declared permissions.
 * Throws {@linkcode PluginIntegrityError}, {@linkcode PluginFetchError},
 * {@linkcode PluginPermissionError} (the agent lacks a declared permission),
 * {@linkcode PluginTimeoutError} or {@linkcode PluginRuntimeError}; none of
 * them ends the agent process.
 */
export async function loadUrlPlugin(pin: PluginPin, options: LoadOptions): Promise<UrlPlugin> {
  const plugin = new WorkerPlugin(pin, options);
  try {
    await plugin.start();
  } catch (error) {
    await plugin.close();
    if (error instanceof PluginError) throw error;
    throw new PluginRuntimeError(pin.name, "load", (error as Error).message);
  }
  return plugin;
}
