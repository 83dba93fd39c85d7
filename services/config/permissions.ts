/**
 * What `deno task validate` needs from Deno's permission system: read access
 * to exactly the file it checks (anywhere, e.g. /etc/monitor/monitor.yaml),
 * the variables npm:yaml and commander read, and the hostname (the local agent's default
 * id). Computed by its launcher (validate_task.ts).
 *
 * @module
 */
import { COMMANDER_ENV_VARS, type PermissionLists, YAML_ENV_VARS } from "../common/permissions.ts";

/**
 * The permissions of validate_main.ts checking `file` (absolute).
 *
 * @example
 * ```ts
 * import { validatePermissions } from "./permissions.ts";
 * console.assert(validatePermissions("/etc/monitor/monitor.yaml").read[0] === "/etc/monitor/monitor.yaml");
 * ```
 */
export function validatePermissions(file: string): PermissionLists {
  return {
    read: [file],
    write: [],
    net: [],
    env: [...YAML_ENV_VARS, ...COMMANDER_ENV_VARS],
    sys: ["hostname"],
  };
}

/** The file `deno task validate <args>` checks: its first argument that is not an option. */
export function validateFileArgument(args: readonly string[]): string {
  return args.find((a) => !a.startsWith("-") || a === "-") ?? "monitor.yaml";
}
