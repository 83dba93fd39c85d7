/**
 * Writes monitor.yaml's `agents:` entries to the store
 * (`<prefix>/config/<agent-id>`, JSON), where agents pick them up live.
 *
 * @module
 */
import { storeKeys } from "../store/keys.ts";
import type { Store } from "../store/types.ts";
import { canonicalJson } from "./plan.ts";

/** What {@linkcode writeAgentConfigs} did. */
export interface AgentWrites {
  /** Agent ids whose key was written. */
  written: string[];
  /** Agent ids whose key already held exactly this configuration. */
  unchanged: string[];
  /** Agent ids whose key was deleted. */
  deleted: string[];
}

/** The JSON text stored for one agent configuration. */
export function agentConfigText(config: unknown): string {
  return JSON.stringify(config);
}

/**
 * Writes `agents` (id -> configuration) under `prefix`, skipping keys that
 * already hold the same JSON, and deletes the keys of `deleted` ids.
 */
export async function writeAgentConfigs(
  store: Store,
  prefix: string,
  agents: Record<string, unknown>,
  deleted: readonly string[] = [],
): Promise<AgentWrites> {
  const keys = storeKeys(prefix);
  const result: AgentWrites = { written: [], unchanged: [], deleted: [] };
  for (const [id, config] of Object.entries(agents)) {
    const key = keys.config(id);
    const text = agentConfigText(config);
    const current = await store.get(key);
    if (current !== undefined && sameJsonText(current.value, text)) {
      result.unchanged.push(id);
      continue;
    }
    await store.put(key, text);
    result.written.push(id);
  }
  for (const id of deleted) {
    if (await store.delete(keys.config(id))) result.deleted.push(id);
  }
  return result;
}

function sameJsonText(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    return canonicalJson(JSON.parse(a)) === canonicalJson(JSON.parse(b));
  } catch {
    return false;
  }
}
