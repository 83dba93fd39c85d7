/**
 * What the analysis process needs from Deno's permission system beyond its
 * Bus and Store (see services/bus/permissions.ts and
 * services/store/permissions.ts), so that a launcher can grant exactly that.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import type { ServicePermissionInput, ServicePermissions } from "../broker/permissions.ts";
import { permissionFlags, YAML_ENV_VARS } from "../common/permissions.ts";
import { CONSOLE_ENV_VARS } from "../console/permissions.ts";

/** The dashboard's static files (read once at start). */
export const DASHBOARD_WEB_DIR: string = fileURLToPath(new URL("./web/", import.meta.url))
  .replace(/\/$/, "");

/** What the analysis permissions depend on. */
export interface AnalysisPermissionInput
  extends Pick<ServicePermissionInput, "stateDir" | "configFile"> {
  /** The dashboard's address `host:port` (none when `off`). */
  http?: string;
  /** The dashboard's TLS files and the file holding its token. */
  files?: string[];
  /** The environment variable holding the dashboard's token. */
  env?: string[];
}

/** The analysis application's own permissions (add the bus's and the store's). */
export function analysisPermissions(input: AnalysisPermissionInput): ServicePermissions {
  return {
    read: [
      input.stateDir,
      ...(input.configFile ? [input.configFile] : []),
      ...(input.http ? [DASHBOARD_WEB_DIR] : []),
      ...(input.files ?? []),
    ],
    write: [input.stateDir],
    net: input.http ? [input.http] : [],
    env: [...CONSOLE_ENV_VARS, ...(input.configFile ? YAML_ENV_VARS : []), ...(input.env ?? [])],
  };
}

/** {@linkcode analysisPermissions} as `deno run` flags (the bus's and store's flags come on top). */
export function analysisPermissionFlags(input: AnalysisPermissionInput): string[] {
  return permissionFlags(analysisPermissions(input));
}
