/**
 * Agent health from heartbeats: watches `<prefix>/heartbeat/` (list, then
 * watch from the listed revision + 1 so nothing is missed). A heartbeat key
 * that exists means alive; deleted (or removed with its expired lease) means
 * dead. Transitions are logged.
 *
 * @module
 */
import { errorMessage, type Logger } from "../common/log.ts";
import {
  type Store,
  type StoreKeys,
  storeKeys,
  type Watcher,
  type WatchEvent,
} from "../store/mod.ts";

/** One agent's health as last observed. */
export interface AgentHealth {
  agent_id: string;
  status: "alive" | "dead";
  /** Last sign of life (Unix seconds): a heartbeat write, or the heartbeat's own timestamp. */
  last_seen: number | null;
  /** When the current status began (Unix seconds). */
  since: number;
  /** Hostname from the heartbeat, when it had one. */
  hostname?: string;
  /** The agent's own status string from its heartbeat (e.g. "running"). */
  agent_status?: string;
}

interface Entry extends AgentHealth {
  /** Unix seconds when the heartbeat key last changed (this process's clock). */
  observed: number;
}

/** Watches heartbeats and keeps each agent's health. */
export class HealthMonitor {
  #entries = new Map<string, Entry>();
  #watcher: Watcher | undefined;
  #keys: StoreKeys;
  #log: Logger;
  #listeners = new Set<(health: AgentHealth) => void>();
  #changeListeners = new Set<(agentId: string) => void>();
  /** The latest heartbeat value of each agent (parsed JSON object), as the agent wrote it. */
  #details = new Map<string, Record<string, unknown>>();

  private constructor(keys: StoreKeys, log: Logger) {
    this.#keys = keys;
    this.#log = log;
  }

  /**
   * Lists current heartbeats and starts watching.
   * @param store the Store
   * @param prefix the product's key prefix, e.g. `/monitor`
   */
  static async start(store: Store, prefix: string, log: Logger): Promise<HealthMonitor> {
    const monitor = new HealthMonitor(storeKeys(prefix), log);
    const listed = await store.list(monitor.#keys.heartbeatPrefix);
    const now = Date.now() / 1000;
    for (const item of listed.items) monitor.#put(item.key, item.value, now, true);
    monitor.#watcher = await store.watch(
      monitor.#keys.heartbeatPrefix,
      { fromRevision: listed.revision + 1 },
      (event) => monitor.#event(event),
    );
    return monitor;
  }

  /** Registers a listener for status transitions; returns a function that removes it. */
  onTransition(listener: (health: AgentHealth) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Registers a listener called after every heartbeat write or deletion
   * (not only transitions); returns a function that removes it.
   */
  onChange(listener: (agentId: string) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** The latest heartbeat value of `agentId` as written (a copy), when it was a JSON object. */
  details(agentId: string): Record<string, unknown> | undefined {
    const value = this.#details.get(agentId);
    return value ? structuredClone(value) : undefined;
  }

  /** Every agent seen, sorted by id. */
  list(): AgentHealth[] {
    return [...this.#entries.values()]
      .sort((a, b) => a.agent_id.localeCompare(b.agent_id))
      .map(({ observed: _observed, ...health }) => ({ ...health }));
  }

  /** One agent's health. */
  get(agentId: string): AgentHealth | undefined {
    const entry = this.#entries.get(agentId);
    if (!entry) return undefined;
    const { observed: _observed, ...health } = entry;
    return { ...health };
  }

  #agentId(key: string): string | undefined {
    return this.#keys.nameOf(key, this.#keys.heartbeatPrefix);
  }

  #event(event: WatchEvent) {
    try {
      const now = Date.now() / 1000;
      if (event.type === "put") this.#put(event.key, event.value, now, false);
      else this.#delete(event.key, now);
    } catch (error) {
      this.#log.warn(`heartbeat event for ${event.key} not understood: ${errorMessage(error)}`);
    }
  }

  #put(key: string, value: string, now: number, initial: boolean) {
    const agentId = this.#agentId(key);
    if (!agentId) return;
    let hostname: string | undefined;
    let agentStatus: string | undefined;
    let stamped: number | undefined;
    try {
      const parsed = JSON.parse(value) as Record<string, unknown>;
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
        this.#details.set(agentId, parsed);
      }
      if (typeof parsed.hostname === "string") hostname = parsed.hostname;
      if (typeof parsed.status === "string") agentStatus = parsed.status;
      if (typeof parsed.timestamp === "number" && Number.isFinite(parsed.timestamp)) {
        stamped = parsed.timestamp;
      }
    } catch {
      this.#log.warn(`heartbeat ${key} is not JSON; the agent counts as alive anyway`);
    }
    const previous = this.#entries.get(agentId);
    // On the initial list the key's write time is unknown: trust the heartbeat's timestamp.
    const lastSeen = initial ? (stamped ?? now) : Math.max(now, stamped ?? 0);
    const entry: Entry = {
      agent_id: agentId,
      status: "alive",
      last_seen: lastSeen,
      since: previous?.status === "alive" ? previous.since : now,
      hostname: hostname ?? previous?.hostname,
      agent_status: agentStatus,
      observed: now,
    };
    this.#entries.set(agentId, entry);
    this.#changed(agentId);
    if (previous?.status !== "alive") {
      this.#log.info(
        `agent ${agentId} is alive${previous ? " again" : ""} (heartbeat ${
          agentStatus ?? "present"
        })`,
      );
      this.#notify(entry);
    }
  }

  #delete(key: string, now: number) {
    const agentId = this.#agentId(key);
    if (!agentId) return;
    const previous = this.#entries.get(agentId);
    if (previous?.status === "dead") return;
    const entry: Entry = {
      agent_id: agentId,
      status: "dead",
      last_seen: previous?.last_seen ?? null,
      since: now,
      hostname: previous?.hostname,
      agent_status: previous?.agent_status,
      observed: now,
    };
    this.#entries.set(agentId, entry);
    this.#changed(agentId);
    if (previous?.agent_status === "stopping") {
      // The agent wrote "stopping" before removing its heartbeat: a clean stop, not a death.
      this.#log.info(`agent ${agentId} stopped (its heartbeat was removed on shutdown)`);
      this.#notify(entry);
      return;
    }
    this.#log.warn(
      `agent ${agentId} is dead: its heartbeat expired or was deleted${
        previous?.last_seen
          ? ` (last seen ${new Date(previous.last_seen * 1000).toISOString()})`
          : ""
      }`,
    );
    this.#notify(entry);
  }

  #changed(agentId: string) {
    for (const listener of [...this.#changeListeners]) {
      try {
        listener(agentId);
      } catch (error) {
        this.#log.warn(`health listener failed: ${errorMessage(error)}`);
      }
    }
  }

  #notify(entry: Entry) {
    const { observed: _observed, ...health } = entry;
    for (const listener of [...this.#listeners]) {
      try {
        listener({ ...health });
      } catch (error) {
        this.#log.warn(`health listener failed: ${errorMessage(error)}`);
      }
    }
  }

  /** Stops watching. */
  async close(): Promise<void> {
    const watcher = this.#watcher;
    this.#watcher = undefined;
    this.#listeners.clear();
    this.#changeListeners.clear();
    if (watcher) await watcher.close();
  }
}
