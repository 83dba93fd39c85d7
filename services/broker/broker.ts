/**
 * The broker: accepts agent streams, publishes their data and alerts to the
 * bus (acknowledging only afterwards), routes commands from the bus to
 * agents and their results back, watches heartbeats, keeps statistics and
 * serves the admin API.
 *
 * @module
 */
import type { Bus } from "../bus/types.ts";
import { errorMessage, getLogger, type Logger } from "../common/log.ts";
import {
  type DataMessage,
  DEFAULT_TOPICS,
  type ResultMessage,
  type TopicNames,
} from "../common/messages.ts";
import {
  type RpcServer,
  RpcStatus,
  type ServerTlsOptions,
  startRpcServer,
} from "../rpc/server_mod.ts";
import { MONITOR_DEFAULTS } from "../config/defaults.ts";
import { DEFAULT_STORE_PREFIX } from "../store/keys.ts";
import type { Store } from "../store/types.ts";
import type { Subscription } from "../bus/types.ts";
import { type AdminServer, startAdminServer } from "./admin.ts";
import { coalescingBus } from "./coalesce.ts";
import { sendCommand, type SendEvent, type SendRequest } from "./send.ts";
import { readAgentConfig, writeAgentConfig } from "../config/config_store.ts";
import { Fleet, type SessionRecord } from "./fleet.ts";
import { HealthMonitor } from "./health.ts";
import { AgentStateTable } from "../common/agent_state.ts";
import { createPublishHistogram, type ExpositionFormat, renderExposition } from "./prometheus.ts";
import { Registry } from "./registry.ts";
import { CommandRouter } from "./router.ts";
import { AgentSession, type SessionContext } from "./session.ts";
import { DataSink } from "./sink.ts";
import { ScopeStats, type StatsSnapshot } from "./stats.ts";
import type { AgentInfo, Broker, BrokerStats, FleetBroker, HealthEntry } from "./types.ts";
import { DEFAULT_LIMITS, type MessageLimits } from "./validate.ts";

/** Version string the broker reports in Welcome. */
export const BROKER_VERSION = "1.0.0";
/** Default gRPC listen address. */
export const DEFAULT_LISTEN: string = MONITOR_DEFAULTS.broker.listen;
/** Default admin API address. */
export const DEFAULT_ADMIN: string = MONITOR_DEFAULTS.broker.admin;
/** How long start-up waits for the commands consumer group before going on (ms). */
export const COMMANDS_JOIN_WAIT_MS = 5000;
/** Default time an agent has to answer a command (ms). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
/**
 * Default most agent streams one broker process accepts (see
 * services/config/defaults.ts for why 5,000). Beyond the ceiling a new stream
 * is refused RESOURCE_EXHAUSTED and its agent goes to another broker.
 */
export const DEFAULT_MAX_STREAMS: number = MONITOR_DEFAULTS.broker.max_streams;
/** Seconds an agent refused at the ceiling is told to wait before trying this broker again. */
export const RETRY_AFTER_S = 5;

export type { SendEvent, SendRequest, SendSummary } from "./send.ts";
export type { AgentInfo, Broker, BrokerStats, FleetBroker, HealthEntry } from "./types.ts";

/** Options of {@linkcode startBroker}. */
export interface BrokerOptions {
  /** gRPC `host:port` (port 0 picks a free port). Default `127.0.0.1:50052`. */
  listen?: string;
  /** The bus (opened by the caller). */
  bus: Bus;
  /** The store (opened by the caller). */
  store: Store;
  /** Store key prefix. Default `/monitor`. */
  prefix?: string;
  /** Topic names. Default {@linkcode DEFAULT_TOPICS}. */
  topics?: Partial<TopicNames>;
  /** Admin HTTP API `host:port` (loopback), or false for none. Default `127.0.0.1:50053`. */
  admin?: string | false;
  /** Bearer token the admin API requires, when set. Required for a non-loopback admin address. */
  adminToken?: string;
  /** Shared secret agents must present in Hello, when set. */
  token?: string;
  /** TLS for the gRPC listener. */
  tls?: ServerTlsOptions;
  /** Largest gRPC message (bytes). Default 4 MiB. */
  maxMessageBytes?: number;
  /** Limits on batches. */
  limits?: Partial<MessageLimits>;
  /** How long an agent has to answer a command (ms). Default 10000. */
  commandTimeoutMs?: number;
  /** Consumer group on the commands topic. Default `broker`. */
  commandsGroup?: string;
  /**
   * How long start-up waits to join the commands consumer group before going on
   * without it (ms). Default {@linkcode COMMANDS_JOIN_WAIT_MS}.
   */
  commandsJoinWaitMs?: number;
  /** Append every published sample as a JSON line to this file. */
  sinkPath?: string;
  /** Close the bus and store on stop. Default false. */
  closeBackends?: boolean;
  /**
   * This broker's id in the fleet (unique per deployment). Default
   * `<host>:<port>` of the gRPC address, the hostname for a wildcard host.
   */
  brokerId?: string;
  /** Most agent streams at once; more are refused RESOURCE_EXHAUSTED. Default {@linkcode DEFAULT_MAX_STREAMS}. */
  maxStreams?: number;
  /** Logger. Default `broker`. */
  log?: Logger;
}

/** A result message read back from the results topic, or undefined when it is not one. */
function parseResultMessage(value: string): ResultMessage | undefined {
  try {
    const r = JSON.parse(value) as Partial<ResultMessage>;
    if (
      typeof r === "object" && r !== null && typeof r.command_id === "string" &&
      typeof r.agent_id === "string" && (r.status === "ok" || r.status === "error")
    ) {
      return r as ResultMessage;
    }
  } catch { /* not JSON: not a result */ }
  return undefined;
}

/** The default broker id: `<host>:<port>` of `address`, the hostname for a wildcard host. */
export function defaultBrokerId(address: string): string {
  const colon = address.lastIndexOf(":");
  let host = address.slice(0, colon);
  if (host === "0.0.0.0" || host === "[::]" || host === "::") {
    try {
      host = Deno.hostname();
    } catch { /* no --allow-sys=hostname: keep the address */ }
  }
  return `${host}:${address.slice(colon + 1)}`.replaceAll("/", "_");
}

function remoteAgent(r: SessionRecord): AgentInfo {
  return {
    agent_id: r.agent_id,
    hostname: r.hostname,
    version: r.version,
    peer: r.peer,
    connected_since: r.connected_since,
    last_batch: null,
    batches: 0,
    latest: null,
    broker: r.broker_id,
  };
}

/** Starts the broker; resolves once it listens and consumes commands. */
export async function startBroker(options: BrokerOptions): Promise<Broker> {
  const log = options.log ?? getLogger("broker");
  const topics: TopicNames = { ...DEFAULT_TOPICS, ...options.topics };
  const prefix = options.prefix ?? DEFAULT_STORE_PREFIX;
  const limits: MessageLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const { bus, store } = options;
  const startedAt = Date.now();
  const publishDuration = createPublishHistogram();
  const total = new ScopeStats(startedAt, (ms) => publishDuration.observe(ms / 1000));
  const perAgent = new Map<string, ScopeStats>();
  const agentStats = (id: string) => {
    let stats = perAgent.get(id);
    if (!stats) perAgent.set(id, stats = new ScopeStats());
    return stats;
  };
  // Every agent's current state: values carried forward while the keep-alive window holds.
  const states = new AgentStateTable();
  const registry = new Registry<AgentSession>();
  const sessions = new Set<AgentSession>();
  let stopping = false;

  const cleanups: Array<() => Promise<void> | void> = [];
  const undo = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        log.warn(`cleanup failed: ${errorMessage(error)}`);
      }
    }
  };

  try {
    let sink: DataSink | undefined;
    if (options.sinkPath) {
      sink = await DataSink.open(options.sinkPath, log);
      cleanups.push(() => sink?.close());
      log.info(`writing received samples to ${options.sinkPath}`);
    }
    await bus.ensureTopics([topics.data, topics.commands, topics.results, topics.alerts]);
    // Publishes of many sessions (and results of a command to all) go out together.
    const publisher = coalescingBus(bus);

    const publishResults = async (results: ResultMessage[]) => {
      await publisher.publish(
        topics.results,
        results.map((r) => ({ key: r.agent_id, value: JSON.stringify(r) })),
      );
    };
    const healthMonitor = await HealthMonitor.start(store, prefix, log.child("health"));
    cleanups.push(() => healthMonitor.close());
    // The fleet starts once the gRPC address is known; until then this broker is alone.
    const late: { fleet?: Fleet } = {};
    const router = new CommandRouter({
      get: (id) => registry.get(id),
      list: () => registry.list(),
      fleet: {
        leader: () => late.fleet?.leader ?? true,
        async heldElsewhere(agentId) {
          const fleet = late.fleet;
          if (!fleet) return false;
          const record = await fleet.lookup(agentId).catch(() => fleet?.session(agentId));
          return record !== undefined && record.instance !== fleet.instance &&
            fleet.brokers().some((b) => b.broker_id === record.broker_id);
        },
        unheld: () =>
          healthMonitor.list().filter((h) =>
            h.status === "alive" && !registry.get(h.agent_id) && !late.fleet?.session(h.agent_id)
          ).map((h) => h.agent_id),
        heldCount: () => Math.max(registry.size, late.fleet?.sessions().length ?? 0),
      },
      publishResults,
      timeoutMs: commandTimeoutMs,
      log: log.child("commands"),
      count(counter, agentId) {
        total.count(counter);
        if (agentId && agentId !== "all") agentStats(agentId).count(counter);
      },
    });
    cleanups.push(() => router.close("the broker stopped before the agent answered"));

    for (const h of healthMonitor.list()) {
      states.heartbeat(h.agent_id, h.status === "alive", h.since, h.hostname);
    }
    healthMonitor.onTransition((h) =>
      states.heartbeat(h.agent_id, h.status === "alive", h.since, h.hostname)
    );
    /** The states now, with each agent's connection to this broker. */
    const snapshots = (now = Date.now() / 1000) => {
      for (const id of states.ids()) states.connection(id, registry.get(id) !== undefined);
      for (const s of registry.list()) states.connection(s.agentId, true, s.hostname);
      return states.list(now);
    };

    const ctx: SessionContext = {
      bus: publisher,
      topics,
      limits,
      token: options.token,
      brokerVersion: BROKER_VERSION,
      registry,
      log,
      total,
      agentStats,
      onPublished(_agentId: string, messages: DataMessage[]) {
        const now = Date.now() / 1000;
        for (const m of messages) states.ingest(m, now);
        sink?.write(messages);
      },
      onResult(agentId, result) {
        void router.onResult(agentId, result);
      },
      onConnection(session, connected) {
        if (connected) void late.fleet?.held(session);
        else void late.fleet?.released(session.agentId);
      },
    };
    const maxStreams = options.maxStreams ?? DEFAULT_MAX_STREAMS;
    let refusedAtCeiling = 0;

    const server: RpcServer = await startRpcServer({
      listen: options.listen ?? DEFAULT_LISTEN,
      tls: options.tls,
      maxMessageBytes: options.maxMessageBytes,
      onStream(stream) {
        if (stopping) {
          stream.fail(RpcStatus.UNAVAILABLE, "the broker is shutting down; reconnect later");
          return;
        }
        if (sessions.size >= maxStreams) {
          // Refused before the runtime's HTTP/2 layer is pushed past what it holds.
          total.count("errors");
          if (refusedAtCeiling++ % 100 === 0) {
            log.warn(
              `refused a stream from ${stream.peer}: this broker carries its maximum of ${maxStreams} streams (broker.max_streams; ${refusedAtCeiling} refused so far)`,
            );
          }
          stream.fail(
            RpcStatus.RESOURCE_EXHAUSTED,
            `this broker carries its maximum of ${maxStreams} agent streams (broker.max_streams); connect to another broker, or retry this one in ${RETRY_AFTER_S} s`,
          );
          return;
        }
        const session = new AgentSession(stream, ctx);
        sessions.add(session);
        stream.onClose(() => sessions.delete(session));
      },
    });
    cleanups.push(() => server.close(1000));

    const brokerId = options.brokerId ?? defaultBrokerId(server.address);
    const fleetNow = await Fleet.start({
      store,
      prefix,
      brokerId,
      address: server.address,
      holds(agentId) {
        const s = registry.get(agentId);
        return s && !s.ended ? s : undefined;
      },
      onConflict(agentId, record) {
        // The same agent id on two brokers. Every broker applies the same rule, so exactly one
        // stream stays: a reconnect of the same process keeps the newer stream; of two
        // processes claiming one id the older keeps it and the newer is refused ALREADY_EXISTS.
        const mine = registry.get(agentId);
        if (!mine) return;
        const theirs = record.connected_since * 1000;
        const theirsNewer = theirs > mine.connectedAt ||
          (theirs === mine.connectedAt && record.broker_id > brokerId);
        const sameProcess = !record.agent_instance || !mine.instanceId ||
          record.agent_instance === mine.instanceId;
        if (sameProcess && theirsNewer) {
          mine.close(
            `agent ${agentId} connected to broker ${record.broker_id} (${record.broker_address}) since`,
          );
        } else if (!sameProcess && !theirsNewer) {
          mine.fail(
            RpcStatus.ALREADY_EXISTS,
            `hello.agent_id: agent ${agentId} is already connected from another process (broker ${record.broker_id}, peer ${record.peer}); give each agent its own id`,
          );
        } else void late.fleet?.held(mine);
      },
      log: log.child("fleet"),
    });
    late.fleet = fleetNow;
    cleanups.push(() => fleetNow.close());
    // Agents that connected while the fleet key was being written.
    for (const s of registry.list()) void fleetNow.held(s);

    // Joining the commands consumer group can take until the session of a crashed
    // predecessor expires (Kafka: 30 s). The group then has committed offsets, so nothing
    // is missed by not waiting: after COMMANDS_JOIN_WAIT_MS the broker starts anyway.
    // Every broker reads every command (its own consumer group) and delivers it to the
    // agents it holds; the group keeps the broker's id, so a restarted broker resumes.
    const group = `${options.commandsGroup ?? "broker"}.${
      brokerId.replace(/[^A-Za-z0-9._-]/g, "_")
    }`;
    const subscribing: Promise<Subscription> = bus.subscribe({
      topics: [topics.commands],
      group,
      fromBeginning: false,
      handler: (message) => router.handleBusMessage(message),
    });
    let unsubscribed: Promise<void> | undefined;
    const unsubscribe = () => unsubscribed ??= subscribing.then((s) => s.close(), () => {});
    cleanups.push(unsubscribe);
    let joinTimer: ReturnType<typeof setTimeout> | undefined;
    const joined = await Promise.race([
      subscribing.then(() => true),
      new Promise<false>((resolve) =>
        joinTimer = setTimeout(
          () => resolve(false),
          options.commandsJoinWaitMs ?? COMMANDS_JOIN_WAIT_MS,
        )
      ),
    ]).finally(() => clearTimeout(joinTimer));
    if (!joined) {
      log.warn(
        `still joining consumer group ${group} on ${topics.commands} (a previous broker may hold it until its session expires); commands are routed once it is joined`,
      );
      subscribing.then(
        () => log.info(`joined consumer group ${group}; routing commands`),
        (error) => log.error(`cannot consume ${topics.commands}: ${errorMessage(error)}`),
      );
    }

    const agents = (): AgentInfo[] => {
      const out: AgentInfo[] = registry.list().map((s) => ({
        agent_id: s.agentId,
        hostname: s.hostname,
        version: s.version,
        peer: s.peer,
        connected_since: s.connectedAt / 1000,
        last_batch: s.lastBatchAt === undefined ? null : s.lastBatchAt / 1000,
        batches: s.batches,
        latest: states.get(s.agentId) ? states.values(s.agentId) : null,
        broker: brokerId,
      }));
      const here = new Set(out.map((a) => a.agent_id));
      for (const r of fleetNow.sessions()) {
        if (here.has(r.agent_id) || r.instance === fleetNow.instance) continue;
        out.push(remoteAgent(r));
      }
      return out.sort((a, b) => a.agent_id.localeCompare(b.agent_id));
    };

    const healthList = (): HealthEntry[] => {
      const byId = new Map<string, HealthEntry>();
      const now = Date.now() / 1000;
      for (const h of healthMonitor.list()) {
        byId.set(h.agent_id, {
          agent_id: h.agent_id,
          status: h.status,
          last_seen: h.last_seen,
          since: h.since,
          connected: false,
          broker: null,
          hostname: h.hostname,
        });
      }
      for (const r of fleetNow.sessions()) {
        const entry = byId.get(r.agent_id) ?? {
          agent_id: r.agent_id,
          status: "unknown" as const,
          last_seen: null,
          since: null,
          connected: false,
          broker: null,
          hostname: r.hostname,
        };
        entry.connected = true;
        entry.broker = r.broker_id;
        byId.set(r.agent_id, entry);
      }
      for (const s of registry.list()) {
        const entry = byId.get(s.agentId) ?? {
          agent_id: s.agentId,
          status: "unknown" as const,
          last_seen: null,
          since: null,
          connected: false,
          broker: null,
          hostname: s.hostname,
        };
        entry.connected = true;
        entry.broker = brokerId;
        const lastBatch = s.lastBatchAt === undefined ? undefined : s.lastBatchAt / 1000;
        if (lastBatch !== undefined && entry.status !== "dead") {
          entry.last_seen = Math.max(entry.last_seen ?? 0, lastBatch);
        }
        byId.set(s.agentId, entry);
      }
      for (const entry of byId.values()) {
        const state = states.get(entry.agent_id, now);
        entry.last_sample = state?.last_sample ?? null;
        entry.stale_metrics = Object.entries(state?.metrics ?? {})
          .filter(([, m]) => m.stale).map(([name]) => name);
      }
      return [...byId.values()].sort((a, b) => a.agent_id.localeCompare(b.agent_id));
    };

    const stats = (): BrokerStats => {
      const now = Date.now();
      const agentsOut: Record<string, StatsSnapshot> = {};
      for (const [id, s] of [...perAgent.entries()].sort(([a], [b]) => a.localeCompare(b))) {
        agentsOut[id] = s.snapshot(now);
      }
      const held = new Map<string, number>();
      for (const r of fleetNow.sessions()) held.set(r.broker_id, (held.get(r.broker_id) ?? 0) + 1);
      held.set(brokerId, registry.size);
      const fleetOut: FleetBroker[] = fleetNow.brokers().map((b) => ({
        broker_id: b.broker_id,
        address: b.address,
        ...(b.admin ? { admin: b.admin } : {}),
        connected: held.get(b.broker_id) ?? 0,
        self: b.broker_id === brokerId,
      }));
      return {
        uptime_s: Math.round((now - startedAt) / 100) / 10,
        broker_id: brokerId,
        connected: registry.size,
        fleet: fleetOut,
        pending_commands: router.pendingCount,
        total: total.snapshot(now),
        agents: agentsOut,
      };
    };

    // `send` follows the results of every broker of the fleet: they are read back from
    // the results topic (this broker's own group, from now on).
    const resultsSubscription = bus.subscribe({
      topics: [topics.results],
      group: `${group}.results`,
      fromBeginning: false,
      handler(message) {
        const result = parseResultMessage(message.value);
        if (result) router.remoteResult(result);
      },
    });
    resultsSubscription.catch((error) =>
      log.warn(
        `cannot read ${topics.results}: console sends see only this broker's agents (${
          errorMessage(error)
        })`,
      )
    );
    cleanups.push(() => resultsSubscription.then((s) => s.close(), () => {}));
    const fleetTargets = (target: string): string[] => {
      const held = new Set([
        ...fleetNow.sessions().map((r) => r.agent_id),
        ...registry.list().map((s) => s.agentId),
      ]);
      if (target !== "all") return held.has(target) ? [target] : [];
      for (const h of healthMonitor.list()) if (h.status === "alive") held.add(h.agent_id);
      return [...held].sort();
    };
    const send = (request: SendRequest, onEvent?: (event: SendEvent) => void) =>
      sendCommand(
        {
          bus,
          topic: topics.commands,
          router,
          timeoutMs: commandTimeoutMs + 5000,
          log,
          fleetTargets,
        },
        request,
        onEvent,
      );

    let stopped: Promise<void> | undefined;
    let adminAddress: string | undefined;
    const broker: Broker = {
      address: server.address,
      brokerId,
      get adminAddress() {
        return adminAddress;
      },
      agents,
      health: healthList,
      stats,
      getConfig: (agentId) => readAgentConfig(store, prefix, agentId),
      putConfig: async (agentId, config) => {
        const written = await writeAgentConfig(store, prefix, agentId, config);
        log.info(`configuration of ${agentId} written to ${written.key}`);
        return written;
      },
      send,
      metrics: (format: ExpositionFormat = "prometheus") =>
        renderExposition({
          startTimeSeconds: startedAt / 1000,
          connectedAgents: registry.size,
          pendingCommands: router.pendingCount,
          total: total.counters,
          perAgent: new Map([...perAgent].map(([id, s]) => [id, s.counters])),
          agents: snapshots(),
          publishDuration,
        }, format),
      onRouterEvent: (listener) => router.subscribe(listener),
      stop(reason = "the broker is shutting down") {
        stopped ??= (async () => {
          stopping = true;
          log.info(`stopping: ${reason}`);
          // No new commands; in-flight batches are published and acknowledged first.
          await unsubscribe().catch((error) =>
            log.warn(`closing the commands subscription: ${errorMessage(error)}`)
          );
          await Promise.all([...sessions].map((s) => s.drain()));
          // The fleet lease is revoked below (every session key at once), not key by key.
          fleetNow.quiesce();
          for (const s of [...sessions]) s.close(reason);
          // Commands still waiting get their error results now, which also ends any
          // admin `send` in progress, so the admin server can shut down at once.
          await router.close("the broker stopped before the agent answered");
          await undo();
          if (options.closeBackends) {
            await bus.close().catch((e) => log.warn(`closing the bus: ${errorMessage(e)}`));
            await store.close().catch((e) => log.warn(`closing the store: ${errorMessage(e)}`));
          }
          log.info("stopped");
        })();
        return stopped;
      },
    };

    if (options.admin !== false) {
      const admin: AdminServer = await startAdminServer({
        listen: options.admin ?? DEFAULT_ADMIN,
        token: options.adminToken,
        broker,
        log: log.child("admin"),
      });
      cleanups.push(() => admin.close());
      adminAddress = admin.address;
    }
    log.info(
      `listening on ${server.address} (bus ${bus.backend}, store ${store.backend})${
        broker.adminAddress ? `, admin API on http://${broker.adminAddress}` : ""
      }`,
    );
    return broker;
  } catch (error) {
    stopping = true;
    for (const s of [...sessions]) s.close("the broker failed to start");
    await undo();
    if (options.closeBackends) {
      await bus.close().catch(() => {});
      await store.close().catch(() => {});
    }
    throw error;
  }
}
