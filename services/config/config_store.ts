/**
 * Reading and writing agent configurations in the Store for the admin API
 * and consoles. Writes are validated with the agent-config validator first,
 * so nothing an agent would refuse reaches the store.
 *
 * @module
 */
import { checkAgentId } from "../common/ids.ts";
import { ConfigError, type ConfigIssue } from "./issues.ts";
import { type Store, storeKeys } from "../store/mod.ts";
import { validateAgentConfig } from "./agent_config.ts";

/**
 * Validates an agent configuration the way the agent will when it reads it
 * from the store; returns its issues (none when valid).
 */
function validateAgentConfigValue(value: unknown): ConfigIssue[] {
  return validateAgentConfig(value, "").issues;
}

/** An agent's configuration as the admin API shows it. */
export interface ConfigView {
  agent_id: string;
  /** The store key read: the agent's own, or `config/default`. */
  key: string;
  /** `own`: the agent's key; `default`: the default applies; `none`: neither exists. */
  source: "own" | "default" | "none";
  /** The configuration (parsed JSON), or null when none exists. */
  config: unknown;
  /** Store revision of the key read (0 when none). */
  revision: number;
}

/** Result of a successful write. */
export interface ConfigWrite {
  agent_id: string;
  key: string;
  revision: number;
}

/** Checks an agent id used in `config <agent>` (`default` allowed). */
export function checkConfigTarget(agentId: string): string | undefined {
  if (agentId === "default") return undefined;
  return checkAgentId(agentId);
}

function configKey(prefix: string, agentId: string): string {
  return storeKeys(prefix).config(agentId);
}

/** Reads an agent's configuration (its own key, else the default). */
export async function readAgentConfig(
  store: Store,
  prefix: string,
  agentId: string,
): Promise<ConfigView> {
  const problem = checkConfigTarget(agentId);
  if (problem) throw new TypeError(problem);
  const ownKey = configKey(prefix, agentId);
  const own = await store.get(ownKey);
  const found = own ?? (agentId === "default" ? undefined : await store.get(
    configKey(prefix, "default"),
  ));
  if (!found) {
    return { agent_id: agentId, key: ownKey, source: "none", config: null, revision: 0 };
  }
  let config: unknown;
  try {
    config = JSON.parse(found.value);
  } catch {
    config = found.value;
  }
  return {
    agent_id: agentId,
    key: found.key,
    source: own ? "own" : "default",
    config,
    revision: found.modRevision,
  };
}

/**
 * Validates `config` and writes it to `<prefix>/config/<agent>`. Throws a
 * {@linkcode ConfigError} listing every problem when it is not valid.
 */
export async function writeAgentConfig(
  store: Store,
  prefix: string,
  agentId: string,
  config: unknown,
): Promise<ConfigWrite> {
  const problem = checkConfigTarget(agentId);
  if (problem) throw new TypeError(problem);
  const key = configKey(prefix, agentId);
  const issues: ConfigIssue[] = validateAgentConfigValue(config);
  if (issues.length > 0) throw new ConfigError(issues, key);
  const revision = await store.put(key, JSON.stringify(config));
  return { agent_id: agentId, key, revision };
}
