/**
 * The supervisor's plan from a validated monitor.yaml
 * ({@linkcode MonitorConfig} from services/config).
 *
 * @module
 */
import { resolve } from "node:path";
import {
  brokerReplicas,
  configPath,
  databasePath,
  type MonitorConfig,
  stateDirPath,
} from "../config/monitor_config.ts";
import { loadMonitorConfig, parseMonitorConfig } from "../config/monitor_yaml.ts";
import type { DeploymentSettings, PluginNeeds } from "./commands.ts";
import type { SupervisorPlan } from "./plan.ts";

/**
 * Builds the plan of a resolved configuration read from `file` (none: a
 * service run alone on its flags and the defaults).
 */
export function planFromConfig(config: MonitorConfig, file?: string): SupervisorPlan {
  const path = databasePath(config);
  const broker = config.broker;
  const tls = (files: Array<string | undefined>) =>
    files.filter((f): f is string => f !== undefined).map((f) => configPath(config, f));
  const plugins: PluginNeeds[] = Object.values(config.plugins).map((p) => ({
    url: p.url,
    permissions: p.permissions,
  }));
  const deployment: DeploymentSettings = {
    configFile: file === undefined ? undefined : resolve(file),
    stateDir: stateDirPath(config),
    store: {
      backend: config.store.backend,
      endpoints: [...config.store.endpoints],
      prefix: config.store.prefix,
      path,
    },
    bus: { backend: config.bus.backend, brokers: [...config.bus.brokers], path },
    logLevel: config.log_level,
    logFormat: config.log_format,
    broker: {
      listen: broker.listen,
      admin: broker.admin === "off" ? undefined : broker.admin,
      sink: broker.sink === undefined ? undefined : configPath(config, broker.sink),
      tlsFiles: tls([broker.tls?.cert, broker.tls?.key, broker.tls?.ca]),
      secretFiles: tls([broker.token_file, broker.admin_token_file]),
      secretEnv: [broker.token_env, broker.admin_token_env].filter((e): e is string =>
        e !== undefined
      ),
      adminTokenFile: broker.admin_token_file === undefined
        ? undefined
        : configPath(config, broker.admin_token_file),
      adminTokenEnv: broker.admin_token_env,
      replicas: brokerReplicas(broker),
    },
    analysis: {
      http: config.analysis.http === "off" ? undefined : config.analysis.http,
      tls: config.analysis.tls !== undefined,
      files: tls([
        config.analysis.tls?.cert,
        config.analysis.tls?.key,
        config.analysis.http_token_file,
      ]),
      env: config.analysis.http_token_env ? [config.analysis.http_token_env] : [],
    },
    agent: {
      broker: config.agent.broker,
      tlsFiles: tls([config.agent.tls?.ca, config.agent.tls?.cert, config.agent.tls?.key]),
      tokenFile: config.agent.token_file === undefined
        ? undefined
        : configPath(config, config.agent.token_file),
      tokenEnv: config.agent.token_env,
      metricsSource: config.agent.metrics_source,
    },
    plugins,
  };
  return {
    deployment,
    agents: config.agent_documents,
    plugins: config.plugins,
    serviceInputs: {
      broker: config.broker,
      analysis: config.analysis,
      agent: config.agent,
    },
    sharedInputs: {
      state_dir: deployment.stateDir,
      log_level: config.log_level,
      log_format: config.log_format,
      store: config.store,
      bus: config.bus,
    },
  };
}

/**
 * Reads and validates monitor.yaml.
 * @throws ConfigError naming file:line:column of every issue
 */
export async function loadPlan(file: string): Promise<SupervisorPlan> {
  const path = resolve(file);
  return planFromConfig(await loadMonitorConfig(path), path);
}

/**
 * Validates monitor.yaml text read from `file`.
 * @throws ConfigError naming file:line:column of every issue
 */
export function parsePlan(text: string, file: string): SupervisorPlan {
  const path = resolve(file);
  return planFromConfig(parseMonitorConfig(text, path, { dir: resolve(path, "..") }), path);
}
