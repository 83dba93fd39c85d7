/**
 * monitor.yaml as text: parsed with npm:yaml (services/config/yaml_source.ts)
 * and checked by the resolver of services/config/monitor_config.ts, whose
 * issues then carry line and column. Kept apart from monitor_config.ts so
 * that a process started without a monitor.yaml (the agent, usually) never
 * loads the YAML parser (about 4 MiB and 40 ms of start-up CPU; see README.md,
 * Performance): `resolveServiceSettings` imports this module only for a file.
 *
 * ```ts
 * import { checkMonitorConfig } from "./monitor_yaml.ts";
 * const { config, issues } = checkMonitorConfig("agent:\n  id: web-1\n", "monitor.yaml");
 * console.log(config?.agent.id, issues.length); // "web-1" 0
 * ```
 *
 * @module
 */
import { dirname, resolve } from "node:path";
import { parseYamlSource } from "./yaml_source.ts";
import { ConfigError, type ConfigIssue } from "./issues.ts";
import {
  checkMonitorSource,
  type MonitorCheck,
  type MonitorConfig,
  monitorConfigError,
  type ParseOptions,
  resolveWithoutFile,
} from "./monitor_config.ts";

/**
 * Parses and validates monitor.yaml text without throwing.
 * @param text the YAML text
 * @param file the file name used in messages (and, without `options.dir`, for relative paths)
 * @param options defaults that depend on the machine
 */
export function checkMonitorConfig(
  text: string,
  file: string,
  options: ParseOptions = {},
): MonitorCheck {
  return checkMonitorSource(parseYamlSource(text), file, options);
}

/**
 * Parses and validates monitor.yaml text (pure: reads nothing).
 * @param text the YAML text
 * @param file the file name used in messages
 * @param options defaults that depend on the machine
 * @throws ConfigError listing every issue, each with line and column
 */
export function parseMonitorConfig(
  text: string,
  file: string,
  options: ParseOptions = {},
): MonitorConfig {
  const { config, issues } = checkMonitorConfig(text, file, options);
  if (!config) throw monitorConfigError(issues, file);
  return config;
}

/** Options of {@linkcode resolveConfig}. */
export interface ResolveOptions extends ParseOptions {
  /** The monitor.yaml to read; none: the defaults and the flags alone. */
  file?: string;
  /** Base of relative paths without a file (default: the current folder). */
  cwd?: string;
}

/**
 * THE resolution of a process's configuration: monitor.yaml (when given)
 * with the command-line flags written at their key paths, validated once
 * and every default filled in. Relative paths of the file are relative to
 * its folder; without a file, to `cwd`.
 * @throws ConfigError listing every issue (flag issues name the flag)
 */
export async function resolveConfig(options: ResolveOptions = {}): Promise<MonitorConfig> {
  const { file, ...rest } = options;
  if (file !== undefined) {
    const { cwd: _cwd, ...parse } = rest;
    return await loadMonitorConfig(file, parse);
  }
  return resolveWithoutFile(rest);
}

/**
 * Reads, parses and validates a monitor.yaml.
 * @param path the file; relative paths in it are relative to its folder
 * @param options defaults that depend on the machine
 * @throws ConfigError listing every issue (or naming the file when it cannot be read)
 */
export async function loadMonitorConfig(
  path: string,
  options: ParseOptions = {},
): Promise<MonitorConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ? "no permission to read it"
      : error instanceof Error
      ? error.message
      : String(error);
    const issue: ConfigIssue = { path: "", expected: "a readable monitor.yaml", found: reason };
    throw new ConfigError([issue], path);
  }
  return parseMonitorConfig(text, path, { dir: resolve(dirname(path)), ...options });
}
