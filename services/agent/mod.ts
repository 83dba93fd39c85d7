/**
 * The agent: collects metrics, runs them through the plugin pipeline and
 * streams them to the broker; follows its configuration in the store live,
 * keeps a heartbeat on a lease and answers commands.
 *
 * ```ts
 * import type { Store } from "../store/types.ts";
 * declare const store: Store; // from openStore (services/store/mod.ts)
 *
 * const agent = await startAgent({ store, broker: "127.0.0.1:50052", agentId: "web-1" });
 * // ...
 * await agent.stop();
 * ```
 *
 * @module
 */
export {
  type AgentHandle,
  type AgentOptions,
  type LastSample,
  type OneShotResult,
  runOnce,
  startAgent,
} from "./agent.ts";
export { AGENT_VERSION } from "./version.ts";
export { AGENT_COMMANDS, describeCommands, parseCommandArgs, runCommand } from "./commands.ts";
export type { CommandTarget } from "./commands.ts";
export { BatchBuffer, type BufferStats } from "./buffer.ts";
export { Backoff, type BackoffOptions } from "./backoff.ts";
export type { HeartbeatValue } from "./heartbeat.ts";
export { type ConfigSource, type ConfigState, ConfigWatcher } from "./config_watch.ts";
export {
  type Collected,
  createCollector,
  type MetricsCollector,
  type MetricsSource,
} from "./metrics.ts";
export {
  Pipeline,
  type PipelineResult,
  type PluginState,
  type UrlPluginLoader,
} from "./pipeline.ts";
export {
  agentPermissionFlags,
  type AgentPermissionInput,
  type AgentPermissions,
  agentPermissions,
} from "./permissions.ts";
