/**
 * Binding to the agent-config validator (services/config/agent_config.ts),
 * returning the issues found in a configuration value (empty when valid).
 *
 * @module
 */
import { validateAgentConfig } from "../config/agent_config.ts";
import type { ConfigIssue } from "../config/issues.ts";

/**
 * Validates an agent configuration the way the agent will when it reads it
 * from the store; returns its issues (none when valid).
 */
export function validateAgentConfigValue(value: unknown): ConfigIssue[] {
  return validateAgentConfig(value, "").issues;
}
