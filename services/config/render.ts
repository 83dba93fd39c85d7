/**
 * Renders a resolved {@linkcode MonitorConfig} back to monitor.yaml form with
 * every default written out (what `deno task validate` prints). The output is
 * itself a valid monitor.yaml that resolves to the same configuration.
 *
 * @module
 */
import { stringify } from "yaml";
import { findBuiltinPlugin } from "../../plugins/mod.ts";
import type { AgentConfig } from "./agent_config.ts";
import type { MonitorConfig } from "./monitor_config.ts";

/**
 * An agent configuration in the object form monitor.yaml and the store accept
 * (plugins as `{name, url?, config}` with the built-ins' setting defaults written out).
 */
export function agentConfigDocument(config: AgentConfig): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    interval: config.interval,
    metrics: [...config.metrics],
    plugins: config.plugins.map((plugin) => {
      const entry: Record<string, unknown> = { name: plugin.name };
      if (plugin.url !== undefined) entry.url = plugin.url;
      const builtin = plugin.kind === "builtin" ? findBuiltinPlugin(plugin.name) : undefined;
      const defaults: Record<string, unknown> = {};
      for (const [key, spec] of Object.entries(builtin?.settings.fields ?? {})) {
        if (spec.default !== undefined) defaults[key] = spec.default;
      }
      entry.config = { ...defaults, ...structuredClone(plugin.config) };
      return entry;
    }),
    heartbeat_ttl: config.heartbeat_ttl,
    buffer: config.buffer,
    batch_max_samples: config.batch_max_samples,
    plugin_timeout_ms: config.plugin_timeout_ms,
    plugin_max_failures: config.plugin_max_failures,
  };
  if (config.log_level !== undefined) doc.log_level = config.log_level;
  return doc;
}

/** The resolved configuration as a plain monitor.yaml value (no `source`). */
export function monitorConfigDocument(config: MonitorConfig): Record<string, unknown> {
  const agents: Record<string, unknown> = {};
  for (const [id, agent] of Object.entries(config.agents)) agents[id] = agentConfigDocument(agent);
  return structuredClone({
    state_dir: config.state_dir,
    log_level: config.log_level,
    log_format: config.log_format,
    store: config.store,
    bus: config.bus,
    broker: config.broker,
    analysis: config.analysis,
    agent: config.agent,
    agents,
    plugins: config.plugins,
  });
}

/**
 * The resolved configuration as YAML text with a header naming its source.
 * @param config a resolved configuration
 */
export function renderMonitorConfig(config: MonitorConfig): string {
  const from = config.source.file ?? "monitor.yaml";
  const header = `# ${from}, resolved: every default filled in (deno task validate)\n`;
  return header + stringify(monitorConfigDocument(config), { lineWidth: 100 });
}
