/**
 * The agent's live configuration from the store.
 *
 * Reads `<prefix>/config/<id>` at start and falls back to
 * `<prefix>/config/default` when the agent has no key of its own; watches
 * both (list, then watch from the listed revision + 1, so nothing is missed)
 * and the URL plugin pins under `<prefix>/plugins/`. Every change is
 * validated: a valid one is handed to `onChange` at once; an invalid one is
 * rejected with a log line naming what is wrong, the last good configuration
 * stays in force, and the problem is kept for `status` and the heartbeat.
 * With no configuration at all the built-in defaults (the seed's default)
 * apply, and the agent says so.
 *
 * @module
 */
import { errorMessage, type Logger } from "../common/log.ts";
import { formatIssue } from "../config/issues.ts";
import {
  type AgentConfig,
  DEFAULT_AGENT_CONFIG_JSON,
  parseAgentConfigText,
  validateAgentConfig,
} from "../config/agent_config.ts";
import { storeKeys } from "../store/keys.ts";
import type { Store, Watcher, WatchEvent } from "../store/types.ts";

/** Where the configuration in force came from. */
export type ConfigSource = "own" | "default" | "builtin";

/** A configuration that was refused. */
export interface ConfigProblem {
  /** Store key of the refused value. */
  key: string;
  revision: number;
  /** One line per issue. */
  issues: string[];
}

/** The configuration in force and what happened to the latest change. */
export interface ConfigState {
  config: AgentConfig;
  source: ConfigSource;
  /** Store key the configuration came from (`(built-in defaults)` for builtin). */
  key: string;
  /** Store revision of that key (0 for built-in defaults). */
  revision: number;
  /** Set while the latest value of the key that applies is refused. */
  problem?: ConfigProblem;
  /** Unix seconds when this configuration was applied. */
  applied_at: number;
  /** URL plugin pins in the store when it was applied: name -> pin JSON text. */
  pins: ReadonlyMap<string, string>;
}

/** Options of {@linkcode ConfigWatcher}. */
export interface ConfigWatcherOptions {
  store: Store;
  /** Key prefix, e.g. `/monitor`. */
  prefix: string;
  agentId: string;
  log: Logger;
  /**
   * Called with each new valid configuration (and when a refused one is
   * reported). Awaited; changes are applied one at a time.
   */
  onChange(state: ConfigState, previous: ConfigState | undefined): void | Promise<void>;
}

interface KeyState {
  key: string;
  value?: string;
  revision: number;
}

const BUILTIN_KEY = "(built-in defaults)";

/** Follows the agent's configuration keys. */
export class ConfigWatcher {
  #options: ConfigWatcherOptions;
  #own: KeyState;
  #default: KeyState;
  #pins = new Map<string, string>();
  #pinsPrefix: string;
  #state: ConfigState | undefined;
  #watchers: Watcher[] = [];
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  #lastFingerprint = "";

  private constructor(options: ConfigWatcherOptions) {
    this.#options = options;
    const keys = storeKeys(options.prefix);
    this.#own = { key: keys.config(options.agentId), revision: 0 };
    this.#default = { key: keys.config("default"), revision: 0 };
    this.#pinsPrefix = keys.pluginPrefix;
  }

  /**
   * Reads the configuration, applies it through `onChange`, and starts watching.
   * @param options store, prefix, agent id, change handler
   */
  static async start(options: ConfigWatcherOptions): Promise<ConfigWatcher> {
    const watcher = new ConfigWatcher(options);
    const revisions = await watcher.#readAll();
    await watcher.#evaluate("start");
    await watcher.#watch(revisions);
    return watcher;
  }

  /** The configuration in force. */
  get state(): ConfigState {
    return this.#state!;
  }

  /** URL plugin pins currently in the store: name -> pin JSON text. */
  get pins(): ReadonlyMap<string, string> {
    return this.#pins;
  }

  async #readKey(target: KeyState): Promise<number> {
    const listed = await this.#options.store.list(target.key);
    const item = listed.items.find((kv) => kv.key === target.key);
    target.value = item?.value;
    target.revision = item?.modRevision ?? 0;
    return listed.revision;
  }

  async #readPins(): Promise<number> {
    const listed = await this.#options.store.list(this.#pinsPrefix);
    this.#pins.clear();
    for (const item of listed.items) {
      const name = item.key.slice(this.#pinsPrefix.length);
      if (name && !name.includes("/")) this.#pins.set(name, item.value);
    }
    return listed.revision;
  }

  async #readAll(): Promise<{ own: number; default: number; pins: number }> {
    return {
      own: await this.#readKey(this.#own),
      default: await this.#readKey(this.#default),
      pins: await this.#readPins(),
    };
  }

  async #watch(revisions: { own: number; default: number; pins: number }) {
    const store = this.#options.store;
    const onKey = (target: KeyState) => (event: WatchEvent) => {
      if (event.key !== target.key) return;
      if (event.type === "put") {
        target.value = event.value;
        target.revision = event.revision;
      } else {
        target.value = undefined;
        target.revision = event.revision;
      }
      this.#enqueue(`${event.type} ${event.key}`);
    };
    this.#watchers.push(
      await store.watch(this.#own.key, { fromRevision: revisions.own + 1 }, onKey(this.#own)),
    );
    if (this.#default.key !== this.#own.key) {
      this.#watchers.push(
        await store.watch(
          this.#default.key,
          { fromRevision: revisions.default + 1 },
          onKey(this.#default),
        ),
      );
    }
    this.#watchers.push(
      await store.watch(this.#pinsPrefix, { fromRevision: revisions.pins + 1 }, (event) => {
        const name = event.key.slice(this.#pinsPrefix.length);
        if (!name || name.includes("/")) return;
        if (event.type === "put") this.#pins.set(name, event.value);
        else this.#pins.delete(name);
        this.#enqueue(`${event.type} pin ${name}`);
      }),
    );
  }

  #enqueue(why: string) {
    this.#queue = this.#queue.then(() => this.#evaluate(why)).catch((error) =>
      this.#options.log.error(`applying configuration (${why}) failed: ${errorMessage(error)}`)
    );
  }

  /** Re-reads both keys and the pins from the store and applies the result (`reload`). */
  async reload(): Promise<ConfigState> {
    const run = this.#queue.then(async () => {
      await this.#readAll();
      this.#lastFingerprint = "";
      await this.#evaluate("reload");
    });
    this.#queue = run.catch(() => {});
    await run;
    return this.state;
  }

  async #evaluate(why: string): Promise<void> {
    if (this.#closed) return;
    const log = this.#options.log;
    const target = this.#own.value !== undefined
      ? this.#own
      : this.#default.value !== undefined
      ? this.#default
      : undefined;
    const source: ConfigSource = target === this.#own
      ? "own"
      : target === this.#default
      ? "default"
      : "builtin";
    const fingerprint = JSON.stringify([
      target?.key,
      target?.revision,
      target?.value,
      [...this.#pins.entries()].sort(),
    ]);
    if (fingerprint === this.#lastFingerprint && this.#state) return;
    this.#lastFingerprint = fingerprint;
    const known = { url: [...this.#pins.keys()] };
    const previous = this.#state;
    const now = Date.now() / 1000;

    if (!target) {
      if (!previous || previous.source !== "builtin" || previous.problem) {
        log.info(
          `no configuration in the store (${this.#own.key} and ${this.#default.key} are absent); running with the built-in defaults`,
        );
      }
      this.#state = this.#builtinState(now);
      await this.#options.onChange(this.#state, previous);
      return;
    }

    const outcome = parseAgentConfigText(target.value!, target.key, { knownPlugins: known });
    if (!outcome.config) {
      const lines = outcome.issues.map((issue) => formatIssue(issue, target.key));
      const problem: ConfigProblem = { key: target.key, revision: target.revision, issues: lines };
      if (previous) {
        log.error(
          `configuration ${target.key} (revision ${target.revision}) rejected; keeping the configuration from ${previous.key} (revision ${previous.revision}):\n  ${
            lines.join("\n  ")
          }`,
        );
        this.#state = { ...previous, problem, pins: new Map(this.#pins) };
      } else {
        log.error(
          `configuration ${target.key} (revision ${target.revision}) rejected; running with the built-in defaults until it is fixed:\n  ${
            lines.join("\n  ")
          }`,
        );
        this.#state = this.#builtinState(now, problem);
      }
      await this.#options.onChange(this.#state, previous);
      return;
    }
    this.#state = {
      config: outcome.config,
      source,
      key: target.key,
      revision: target.revision,
      applied_at: now,
      pins: new Map(this.#pins),
    };
    log.info(
      `configuration from ${target.key} (revision ${target.revision}${
        why === "start" ? "" : `, ${why}`
      }) applied: interval ${outcome.config.interval} s, metrics ${
        outcome.config.metrics.join(", ")
      }, plugins ${outcome.config.plugins.map((p) => p.name).join(", ") || "none"}`,
    );
    await this.#options.onChange(this.#state, previous);
  }

  /**
   * The built-in default configuration as the state applied at `now` (Unix
   * seconds), with `problem` when a stored configuration was rejected.
   */
  #builtinState(now: number, problem?: ConfigProblem): ConfigState {
    const { config } = validateAgentConfig(DEFAULT_AGENT_CONFIG_JSON, "", {});
    return {
      config: config!,
      source: "builtin",
      key: BUILTIN_KEY,
      revision: 0,
      applied_at: now,
      ...(problem ? { problem } : {}),
      pins: new Map(this.#pins),
    };
  }

  /** Stops watching. */
  async close(): Promise<void> {
    this.#closed = true;
    const watchers = this.#watchers;
    this.#watchers = [];
    await Promise.allSettled(watchers.map((w) => w.close()));
    await this.#queue.catch(() => {});
  }
}
