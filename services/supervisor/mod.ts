/**
 * The supervisor (`deno task up`): reads monitor.yaml, starts the broker,
 * the analysis application and the local agent as `deno run` subprocesses
 * with scoped permissions, restarts crashed services, applies edits live.
 *
 * ```ts
 * import { formatCommand, loadPlan, serviceCommands } from "./mod.ts";
 *
 * const plan = await loadPlan("monitor.yaml");
 * for (const [name, command] of Object.entries(serviceCommands(plan.deployment))) {
 *   console.log(name, formatCommand(command));
 * }
 * ```
 *
 * @module
 */
export {
  agentPermissionSet,
  analysisPermissionSet,
  brokerPermissionSet,
  brokerReplicaCommand,
  brokerReplicaName,
  type DeploymentSettings,
  formatCommand,
  mergePermissions,
  permissionArgs,
  type PermissionSet,
  pinCommand,
  type PluginNeeds,
  RELAUNCH_EXIT_CODE,
  REPO_ROOT,
  SERVICE_NAMES,
  SERVICE_SCRIPTS,
  serviceCommand,
  serviceCommands,
  type ServiceName,
  shellQuote,
  supervisorCommand,
  supervisorPermissionSet,
} from "./commands.ts";
export { loadPlan, parsePlan, planFromConfig } from "./from_config.ts";
export {
  canonicalJson,
  diffPlans,
  isEmptyDiff,
  type PlanDiff,
  type SupervisorPlan,
} from "./plan.ts";
export {
  type ChildExit,
  type ChildHandle,
  ManagedService,
  type ManagedServiceOptions,
  READY_LINE,
  type ServiceCommand,
  type ServiceReporter,
  type ServiceState,
  type Spawner,
  spawnSubprocess,
} from "./process.ts";
export {
  DEFAULT_RESTART_POLICY,
  type RestartDecision,
  RestartPolicy,
  type RestartPolicyOptions,
} from "./restart_policy.ts";
export {
  colorWanted,
  type LineWriter,
  ServiceOutput,
  type ServiceOutputOptions,
} from "./output.ts";
export { agentConfigText, type AgentWrites, writeAgentConfigs } from "./agents.ts";
export { type FileWatch, watchFile, type WatchFileOptions } from "./watch.ts";
export { Supervisor, type SupervisorOptions } from "./supervisor.ts";
