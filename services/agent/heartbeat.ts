/**
 * The agent's heartbeat: `<prefix>/heartbeat/<agent-id>` on a lease (TTL from
 * the configuration, default 10 s). The key exists while the agent lives; its
 * JSON value says how it is doing. Rewritten every TTL/2 (fresh timestamp;
 * up to TTL/8 earlier to share the agent's collection wake-up, {@linkcode Ticker})
 * and soon after any state change; the lease is re-granted when the TTL
 * changes and revoked on stop.
 *
 * @module
 */
import { errorMessage, type Logger } from "../common/log.ts";
import type { Lease, Store } from "../store/types.ts";
import { Ticker, type TickerTask } from "./ticker.ts";

/** The heartbeat's JSON value. */
export interface HeartbeatValue {
  agent_id: string;
  hostname: string;
  /** Unix seconds. */
  timestamp: number;
  version: string;
  /** `stopping`: the last value, written by an agent stopping on purpose just before the key goes. */
  status: "ok" | "degraded" | "stopping";
  /** Why degraded: invalid config, plugin failing/disabled, broker unreachable, metric unavailable. */
  reasons: string[];
  /** Store revision of the configuration in force (0 for built-in defaults). */
  config_revision: number;
  /** Where the configuration in force came from. */
  config_source: string;
  plugins: Array<{ name: string; state: string }>;
  /** Seconds since the agent started. */
  uptime: number;
  pid: number;
}

/** Options of {@linkcode Heartbeat}. */
export interface HeartbeatOptions {
  store: Store;
  /** Full key, e.g. `/monitor/heartbeat/web-1`. */
  key: string;
  /** Builds the current value. */
  snapshot(): HeartbeatValue;
  log: Logger;
  /**
   * The agent's one timer: the refresh every TTL/2 may run up to a quarter
   * of that early to share the collection's wake-up (default: a ticker of
   * its own, i.e. a timer of its own).
   */
  ticker?: Ticker;
}

/** Writes the heartbeat on a lease. */
export class Heartbeat {
  #options: HeartbeatOptions;
  #lease: Lease | undefined;
  #ttl = 0;
  #ownTicker: Ticker | undefined;
  #refresh: TickerTask;
  #soon: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> = Promise.resolve();
  #stopped = false;
  #lastError: string | undefined;
  #writes = 0;

  /** @param options store, key, value builder */
  constructor(options: HeartbeatOptions) {
    this.#options = options;
    if (!options.ticker) this.#ownTicker = new Ticker();
    this.#refresh = (options.ticker ?? this.#ownTicker!).task(() => {
      if (!this.#lease) void this.setTtl(this.#ttl || 10);
      else void this.write();
    });
  }

  /** Why the last write failed, while it keeps failing. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Heartbeats written so far. */
  get writes(): number {
    return this.#writes;
  }

  /** Grants the lease (or a new one when the TTL changed) and writes the value. */
  async start(ttlSeconds: number): Promise<void> {
    await this.setTtl(ttlSeconds);
  }

  /** Applies a new TTL: a lease with the new TTL replaces the old one. */
  async setTtl(ttlSeconds: number): Promise<void> {
    if (this.#stopped) return;
    if (this.#lease && this.#ttl === ttlSeconds) return;
    const old = this.#lease;
    try {
      const lease = await this.#options.store.lease(ttlSeconds);
      lease.onLost((error) =>
        this.#options.log.warn(
          `heartbeat lease was lost and re-established (${errorMessage(error)})`,
        )
      );
      this.#lease = lease;
      this.#ttl = ttlSeconds;
    } catch (error) {
      this.#options.log.error(
        `cannot grant the heartbeat lease (TTL ${ttlSeconds} s): ${errorMessage(error)}`,
      );
      this.#schedule(1000);
      return;
    }
    await this.write();
    if (old) {
      try {
        await old.revoke();
      } catch (error) {
        this.#options.log.debug(`revoking the previous heartbeat lease: ${errorMessage(error)}`);
      }
      // Revoking the old lease deleted the key; write it again through the new one.
      await this.write();
    }
  }

  /** Writes the current value now (serialized with other writes). */
  write(): Promise<void> {
    this.#writing = this.#writing.then(() => this.#write());
    return this.#writing;
  }

  async #write(): Promise<void> {
    if (this.#stopped) return;
    this.#refresh.cancel();
    const lease = this.#lease;
    if (!lease) {
      this.#schedule(1000);
      return;
    }
    try {
      await lease.put(this.#options.key, JSON.stringify(this.#options.snapshot()));
      this.#writes++;
      if (this.#lastError) {
        this.#options.log.info("heartbeat written again");
        this.#lastError = undefined;
      }
    } catch (error) {
      const message = errorMessage(error);
      if (message !== this.#lastError) {
        this.#options.log.warn(`cannot write the heartbeat ${this.#options.key}: ${message}`);
      }
      this.#lastError = message;
    }
    const period = Math.max(500, (this.#ttl * 1000) / 2);
    this.#schedule(period, period / 4);
  }

  /** The next refresh in `ms`, or up to `slackMs` earlier when the agent wakes up anyway. */
  #schedule(ms: number, slackMs = 0) {
    if (this.#stopped) return;
    this.#refresh.in(ms, slackMs);
  }

  /** Asks for a write soon (coalesces bursts of state changes). */
  changed(): void {
    if (this.#stopped || this.#soon !== undefined) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      void this.write();
    }, 50);
  }

  /**
   * Stops refreshing, writes a last value with status `stopping` (so that
   * whoever watches tells a clean stop from a death), then revokes the lease
   * (deleting the key).
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#refresh.cancel();
    this.#ownTicker?.close();
    clearTimeout(this.#soon);
    this.#soon = undefined;
    await this.#writing.catch(() => {});
    const lease = this.#lease;
    this.#lease = undefined;
    if (lease) {
      try {
        const last: HeartbeatValue = { ...this.#options.snapshot(), status: "stopping" };
        last.timestamp = Date.now() / 1000;
        await lease.put(this.#options.key, JSON.stringify(last));
      } catch (error) {
        this.#options.log.debug(`cannot write the last heartbeat: ${errorMessage(error)}`);
      }
      try {
        await lease.revoke();
      } catch (error) {
        this.#options.log.warn(`cannot revoke the heartbeat lease: ${errorMessage(error)}`);
      }
    }
  }
}
