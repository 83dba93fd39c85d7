/**
 * Configuration: monitor.yaml (parse, validate, resolve, render), the agent
 * configuration format, and configuration issues with their positions.
 *
 * @module
 */
export {
  type AgentTlsConfig,
  type AnalysisConfig,
  type BrokerConfig,
  brokerReplicas,
  type BrokerTlsConfig,
  type BusConfig,
  checkMonitorSource,
  configPath,
  databasePath,
  EMPTY_SOURCE,
  type LocalAgentConfig,
  MONITOR_DEFAULTS,
  MONITOR_KEYS,
  type MonitorCheck,
  type MonitorConfig,
  type ParseOptions,
  resolveMonitorValue,
  resolveWithoutFile,
  stateDirPath,
  type StoreConfig,
  type UrlPluginConfig,
} from "./monitor_config.ts";
export {
  checkMonitorConfig,
  loadMonitorConfig,
  parseMonitorConfig,
  resolveConfig,
  type ResolveOptions,
} from "./monitor_yaml.ts";
export { agentConfigDocument, monitorConfigDocument, renderMonitorConfig } from "./render.ts";
export { runValidate, type ValidateHooks, type ValidateOutput } from "./validate_main.ts";
export {
  type AgentConfig,
  DEFAULT_AGENT_CONFIG_JSON,
  parseAgentConfigText,
  sameAgentConfig,
  validateAgentConfig,
} from "./agent_config.ts";
export { ConfigError, type ConfigIssue, describeValue, didYouMean, formatIssue } from "./issues.ts";
export { parseYamlSource, type YamlSource } from "./yaml_source.ts";
