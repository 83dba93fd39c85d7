/**
 * The broker as a library: {@linkcode startBroker} accepts agent streams,
 * publishes to the bus, routes commands and serves the admin API. The CLI
 * is `services/broker/main.ts`.
 *
 * ```ts
 * import type { Bus } from "../bus/types.ts";
 * import type { Store } from "../store/types.ts";
 * declare const bus: Bus; // from openBus (services/bus/mod.ts)
 * declare const store: Store; // from openStore (services/store/mod.ts)
 *
 * const broker = await startBroker({ listen: "127.0.0.1:0", admin: "127.0.0.1:0", bus, store });
 * console.log(broker.address, broker.stats().total.samples);
 * await broker.stop();
 * ```
 *
 * @module
 */
export {
  type AgentInfo,
  type Broker,
  BROKER_VERSION,
  type BrokerOptions,
  type BrokerStats,
  COMMANDS_JOIN_WAIT_MS,
  DEFAULT_ADMIN,
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_LISTEN,
  DEFAULT_MAX_STREAMS,
  defaultBrokerId,
  type FleetBroker,
  type HealthEntry,
  RETRY_AFTER_S,
  type SendEvent,
  type SendRequest,
  type SendSummary,
  startBroker,
} from "./broker.ts";
export type { AdminServer } from "./admin.ts";
export {
  AdminApiError,
  adminBaseUrl,
  AdminClient,
  type AdminClientOptions,
} from "./admin_client.ts";
// The broker's console (./console.ts) is imported from its own module: it loads the
// terminal prompts, which users of the broker as a library do not need.
export type { BrokerBackend } from "./types.ts";
export { isLoopbackHost, splitHostPort } from "../common/net.ts";
export type { ConfigView, ConfigWrite } from "../config/config_store.ts";
export type { AgentHealth } from "./health.ts";
export { type BrokerRecord, FLEET_LEASE_TTL_S, type SessionRecord } from "./fleet.ts";
export type { RouterEvent } from "./router.ts";
export type { Counters, StatsSnapshot } from "./stats.ts";
export { DEFAULT_LIMITS, type MessageLimits } from "./validate.ts";
export { sanitizeMetricName } from "./prometheus.ts";
export {
  brokerPermissionFlags,
  brokerPermissions,
  permissionFlags,
  type ServicePermissionInput,
  type ServicePermissions,
} from "./permissions.ts";
export {
  type AgentSnapshot,
  AgentStateTable,
  DEFAULT_KEEPALIVE_SECONDS,
  type MetricState,
  STALE_GRACE_SECONDS,
} from "../common/agent_state.ts";
