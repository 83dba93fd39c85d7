/**
 * Binding to the agent-config validator (services/config/agent_config.ts),
 * returning the issues found in a configuration value (empty when valid).
 *
 * @module
 */
import { ConfigError, type ConfigIssue } from "../config/issues.ts";

type Validator = (value: unknown, source?: string) => unknown;

let loaded: Promise<Validator> | undefined;

function loadValidator(): Promise<Validator> {
  loaded ??= (async () => {
    const path = "../config/agent_config.ts";
    const module = await import(path) as Record<string, unknown>;
    const fn = module.validateAgentConfig;
    if (typeof fn !== "function") {
      throw new Error("services/config/agent_config.ts does not export validateAgentConfig");
    }
    return fn as Validator;
  })();
  return loaded;
}

/** Validates an agent configuration; returns its issues (none when valid). */
export async function validateAgentConfigValue(
  value: unknown,
  source: string,
): Promise<ConfigIssue[]> {
  const validate = await loadValidator();
  try {
    const outcome = validate(value, source);
    if (outcome && typeof outcome === "object" && "issues" in outcome) {
      const issues = (outcome as { issues: unknown }).issues;
      if (Array.isArray(issues)) return issues as ConfigIssue[];
    }
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.issues;
    throw error;
  }
}
