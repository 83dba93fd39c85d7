/**
 * The brokers of one deployment as peers: each broker keeps, on its own
 * store lease, a key naming itself (`<prefix>/brokers/<broker-id>`) and one
 * per agent whose stream it holds (`<prefix>/sessions/<agent-id>`), and
 * watches both prefixes. So every broker knows the whole fleet (which broker
 * holds each agent) and which brokers are alive; a broker that dies loses
 * its keys when its lease expires, and an agent that reconnects elsewhere
 * overwrites its session key (attached to the new broker's lease).
 *
 * Invariants kept here:
 * - a session key names the broker instance that registered the agent last;
 *   a broker deletes a session key only while it still names itself;
 * - conflicts are reported, not resolved here: a session key of an agent
 *   this broker holds that names another broker (`onConflict`), and a
 *   session key that names this broker for an agent it does not hold, or
 *   that vanished while it holds the agent (`onStale`);
 * - exactly one live broker is the leader (the lowest broker id among the
 *   broker keys); it answers for agents no broker holds.
 *
 * @module
 */
import { errorMessage, type Logger } from "../common/log.ts";
import { concurrencyLimit } from "../common/limit.ts";
import {
  type Lease,
  type Store,
  type StoreKeys,
  storeKeys,
  type Watcher,
  type WatchEvent,
} from "../store/mod.ts";

/** Seconds a broker's keys outlive it (its lease's TTL). */
export const FLEET_LEASE_TTL_S = 10;

/**
 * Session-key writes a broker has in flight at most. Thousands of agents
 * connecting at once (a broker's start, another broker's loss) would
 * otherwise be thousands of concurrent store calls, a stream storm on the
 * store client's one HTTP/2 connection (the storms Deno's HTTP/2 layer
 * handles worst, denoland/deno#36788); limited, they wait in a queue, each
 * agent's own writes still in order.
 */
export const SESSION_WRITES_IN_FLIGHT = 64;

/** `<prefix>/brokers/<broker-id>`: a live broker. */
export interface BrokerRecord {
  broker_id: string;
  /** gRPC address agents connect to. */
  address: string;
  /** Admin API address, when enabled. */
  admin?: string;
  /** Random id of this process (tells a restarted broker with the same id apart). */
  instance: string;
  /** Unix seconds. */
  started: number;
}

/** `<prefix>/sessions/<agent-id>`: the broker holding an agent's stream. */
export interface SessionRecord {
  agent_id: string;
  broker_id: string;
  /** The broker's gRPC address. */
  broker_address: string;
  /** The broker process's instance id. */
  instance: string;
  hostname: string;
  version: string;
  peer: string;
  /** Unix seconds. */
  connected_since: number;
  /** The agent process's instance id from its Hello, when it sent one. */
  agent_instance?: string;
}

/** A session this broker holds, as the fleet needs it. */
export interface HeldSession {
  agentId: string;
  hostname: string;
  version: string;
  peer: string;
  /** The agent process's instance id ("" when it sent none). */
  instanceId?: string;
  /** Unix ms. */
  connectedAt: number;
}

/** Options of {@linkcode Fleet.start}. */
export interface FleetOptions {
  store: Store;
  /** Product key prefix, e.g. `/monitor`. */
  prefix: string;
  /** This broker's id (unique in the deployment). */
  brokerId: string;
  /** This broker's gRPC address. */
  address: string;
  admin?: string;
  /** Lease TTL (s), default {@linkcode FLEET_LEASE_TTL_S}. */
  ttlSeconds?: number;
  /** Is this agent's stream held here right now? */
  holds(agentId: string): HeldSession | undefined;
  /** A session key of an agent held here names another broker. */
  onConflict(agentId: string, record: SessionRecord): void;
  log: Logger;
}

function parse<T>(value: string): T | undefined {
  try {
    const parsed = JSON.parse(value);
    return typeof parsed === "object" && parsed !== null ? parsed as T : undefined;
  } catch {
    return undefined;
  }
}

/** This broker's membership in the fleet and its view of the others. */
export class Fleet {
  /** This broker's id. */
  readonly brokerId: string;
  /** This process's instance id. */
  readonly instance: string = crypto.randomUUID();
  #options: FleetOptions;
  #keys: StoreKeys;
  #lease!: Lease;
  #brokers = new Map<string, BrokerRecord>();
  #sessions = new Map<string, SessionRecord>();
  #watchers: Watcher[] = [];
  /** Store operations per agent, in order (a put and the delete after it never cross). */
  #ops = new Map<string, Promise<void>>();
  /** At most SESSION_WRITES_IN_FLIGHT of those run at once. */
  #limited = concurrencyLimit(SESSION_WRITES_IN_FLIGHT);
  #closed = false;
  #quiet = false;
  #record: BrokerRecord;

  private constructor(options: FleetOptions) {
    this.#options = options;
    this.brokerId = options.brokerId;
    this.#keys = storeKeys(options.prefix);
    this.#record = {
      broker_id: options.brokerId,
      address: options.address,
      instance: this.instance,
      started: Date.now() / 1000,
    };
    if (options.admin) this.#record.admin = options.admin;
  }

  /** Grants the lease, announces this broker, lists and watches the fleet. */
  static async start(options: FleetOptions): Promise<Fleet> {
    const fleet = new Fleet(options);
    const { store } = options;
    fleet.#lease = await store.lease(options.ttlSeconds ?? FLEET_LEASE_TTL_S);
    try {
      await fleet.#lease.put(fleet.#keys.broker(fleet.brokerId), JSON.stringify(fleet.#record));
      for (const prefix of [fleet.#keys.brokerPrefix, fleet.#keys.sessionPrefix]) {
        const listed = await store.list(prefix);
        for (const item of listed.items) fleet.#event({ type: "put", ...item, revision: 0 }, true);
        fleet.#watchers.push(
          await store.watch(prefix, { fromRevision: listed.revision + 1 }, (e) => fleet.#event(e)),
        );
      }
    } catch (error) {
      await fleet.close();
      throw error;
    }
    return fleet;
  }

  /** Live brokers, sorted by id. */
  brokers(): BrokerRecord[] {
    return [...this.#brokers.values()].sort((a, b) => a.broker_id < b.broker_id ? -1 : 1);
  }

  /** Every agent held by some broker, sorted by agent id. */
  sessions(): SessionRecord[] {
    return [...this.#sessions.values()].sort((a, b) => a.agent_id < b.agent_id ? -1 : 1);
  }

  /** The session of one agent, if a broker holds it. */
  session(agentId: string): SessionRecord | undefined {
    return this.#sessions.get(agentId);
  }

  /** True when this broker has the lowest id of the live brokers. */
  get leader(): boolean {
    let lowest: string | undefined;
    for (const id of this.#brokers.keys()) if (lowest === undefined || id < lowest) lowest = id;
    return lowest === undefined || lowest === this.brokerId;
  }

  /** Reads an agent's session key from the store (not the cached view). */
  async lookup(agentId: string): Promise<SessionRecord | undefined> {
    const kv = await this.#options.store.get(this.#keys.session(agentId));
    return kv ? parse<SessionRecord>(kv.value) : undefined;
  }

  /** Records that this broker holds `session` (its key on this broker's lease). */
  held(session: HeldSession): Promise<void> {
    return this.#queue(session.agentId, async () => {
      if (this.#options.holds(session.agentId) === undefined) return;
      const record: SessionRecord = {
        agent_id: session.agentId,
        broker_id: this.brokerId,
        broker_address: this.#options.address,
        instance: this.instance,
        hostname: session.hostname,
        version: session.version,
        peer: session.peer,
        connected_since: session.connectedAt / 1000,
      };
      if (session.instanceId) record.agent_instance = session.instanceId;
      await this.#lease.put(this.#keys.session(session.agentId), JSON.stringify(record));
    });
  }

  /** This broker no longer holds `agentId`: deletes its key if it still names this broker. */
  released(agentId: string): Promise<void> {
    return this.#queue(agentId, async () => {
      if (this.#options.holds(agentId) !== undefined) return;
      const key = this.#keys.session(agentId);
      const kv = await this.#options.store.get(key);
      const record = kv ? parse<SessionRecord>(kv.value) : undefined;
      if (record?.instance === this.instance) await this.#options.store.delete(key);
    });
  }

  /** Stops writing session keys (the broker is stopping; close() revokes them all at once). */
  quiesce(): void {
    this.#quiet = true;
  }

  #queue(agentId: string, op: () => Promise<void>): Promise<void> {
    if (this.#closed || this.#quiet) return Promise.resolve();
    const previous = this.#ops.get(agentId) ?? Promise.resolve();
    const next = previous.then(() => this.#limited(op)).catch((error) => {
      if (!this.#closed) {
        this.#options.log.warn(
          `session key of agent ${agentId}: ${errorMessage(error)} (the fleet view may lag)`,
        );
      }
    });
    this.#ops.set(agentId, next);
    next.finally(() => {
      if (this.#ops.get(agentId) === next) this.#ops.delete(agentId);
    });
    return next;
  }

  #event(event: WatchEvent, initial = false) {
    const brokerId = this.#keys.nameOf(event.key, this.#keys.brokerPrefix);
    if (brokerId !== undefined) {
      if (event.type === "delete") {
        if (this.#brokers.delete(brokerId)) {
          this.#options.log.info(`broker ${brokerId} left the fleet`);
        }
        return;
      }
      const record = parse<BrokerRecord>(event.value);
      if (!record) return;
      if (!initial && !this.#brokers.has(brokerId) && brokerId !== this.brokerId) {
        this.#options.log.info(`broker ${brokerId} (${record.address}) joined the fleet`);
      }
      this.#brokers.set(brokerId, record);
      return;
    }
    const agentId = this.#keys.nameOf(event.key, this.#keys.sessionPrefix);
    if (agentId === undefined) return;
    const held = this.#options.holds(agentId);
    if (event.type === "delete") {
      this.#sessions.delete(agentId);
      // Deleted while this broker holds the agent (e.g. by a broker that lost it): put it back.
      if (held && !initial) void this.held(held);
      return;
    }
    const record = parse<SessionRecord>(event.value);
    if (!record) return;
    this.#sessions.set(agentId, record);
    if (initial) return;
    if (record.instance === this.instance) {
      // A key naming this broker for an agent it does not hold (a lease re-put it): remove it.
      if (!held) void this.released(agentId);
      return;
    }
    if (held) this.#options.onConflict(agentId, record);
  }

  /** Stops watching and revokes the lease (this broker's keys go at once). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#quiet = true;
    await Promise.allSettled([...this.#ops.values()]);
    for (const watcher of this.#watchers.splice(0)) {
      await watcher.close().catch(() => {});
    }
    await this.#lease?.revoke().catch((error) =>
      this.#options.log.warn(`revoking the fleet lease: ${errorMessage(error)}`)
    );
  }
}
