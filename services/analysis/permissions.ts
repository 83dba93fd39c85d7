/**
 * What the analysis process needs from Deno's permission system beyond its
 * Bus (see services/bus/permissions.ts), so that a launcher can grant
 * exactly that.
 *
 * @module
 */
import type { ServicePermissionInput, ServicePermissions } from "../broker/permissions.ts";
import { permissionFlags, YAML_ENV_VARS } from "../common/permissions.ts";
import { CONSOLE_ENV_VARS } from "../console/permissions.ts";

/** The analysis application's own permissions (add the bus's). */
export function analysisPermissions(
  input: Pick<ServicePermissionInput, "stateDir" | "configFile">,
): ServicePermissions {
  return {
    read: [input.stateDir, ...(input.configFile ? [input.configFile] : [])],
    write: [input.stateDir],
    net: [],
    env: [...CONSOLE_ENV_VARS, ...(input.configFile ? YAML_ENV_VARS : [])],
  };
}

/** {@linkcode analysisPermissions} as `deno run` flags (the bus's flags come on top). */
export function analysisPermissionFlags(
  input: Pick<ServicePermissionInput, "stateDir" | "configFile">,
): string[] {
  return permissionFlags(analysisPermissions(input));
}
