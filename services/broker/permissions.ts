/**
 * What the broker process needs from Deno's permission system beyond its
 * Store and Bus (see services/bus/permissions.ts and the
 * store's equivalent), so that a launcher can grant exactly that.
 *
 * @module
 */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { YAML_ENV_VARS } from "../common/service_settings.ts";
import { CONSOLE_ENV_VARS } from "../console/permissions.ts";

/** Environment variables @grpc/grpc-js reads when it is loaded and when it listens. */
export const GRPC_ENV_VARS: readonly string[] = Object.freeze([
  "GRPC_NODE_VERBOSITY",
  "GRPC_VERBOSITY",
  "GRPC_NODE_TRACE",
  "GRPC_TRACE",
  "GRPC_SSL_CIPHER_SUITES",
  "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
  "GRPC_NODE_USE_ALTERNATIVE_RESOLVER",
  "GRPC_NODE_DEBUG_SEND_ERROR_DETAILS",
  "GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION",
]);

/** Permission lists, as in services/bus/permissions.ts. */
export interface ServicePermissions {
  read: string[];
  write: string[];
  net: string[];
  env: string[];
}

/** Where a service process reads and writes. */
export interface ServicePermissionInput {
  /** State directory (history files; the embedded database is the bus's and store's business). */
  stateDir: string;
  /** monitor.yaml, when passed with --config. */
  configFile?: string;
  /** broker only: gRPC listen address and admin address (`host:port`). */
  listen?: string;
  admin?: string;
  /** broker only: the sink file. */
  sink?: string;
  /** broker only: TLS files. */
  tlsFiles?: string[];
  /** broker only: files holding the agent and admin tokens (`token_file`, `admin_token_file`). */
  secretFiles?: string[];
  /** broker only: environment variables holding them (`token_env`, `admin_token_env`). */
  secretEnv?: string[];
}

/** The protocol file the gRPC adapter loads at start. */
export const PROTO_FILE: string = fileURLToPath(
  new URL("../../proto/monitoring.proto", import.meta.url),
);

/** The broker's own permissions (add the store's and the bus's). */
export function brokerPermissions(input: ServicePermissionInput): ServicePermissions {
  return {
    read: [
      PROTO_FILE,
      input.stateDir,
      ...(input.configFile ? [input.configFile] : []),
      ...(input.tlsFiles ?? []),
      ...(input.secretFiles ?? []),
    ],
    write: [input.stateDir, ...(input.sink ? [dirname(input.sink)] : [])],
    net: [input.listen, input.admin].filter((a): a is string => a !== undefined),
    env: [
      ...GRPC_ENV_VARS,
      ...CONSOLE_ENV_VARS,
      ...(input.configFile ? YAML_ENV_VARS : []),
      ...(input.secretEnv ?? []),
    ],
  };
}

/** Permission lists as `deno run` flags (empty lists give no flag). */
export function permissionFlags(p: ServicePermissions): string[] {
  const flags: string[] = [];
  const unique = (list: string[]) => [...new Set(list)].join(",");
  if (p.read.length) flags.push(`--allow-read=${unique(p.read)}`);
  if (p.write.length) flags.push(`--allow-write=${unique(p.write)}`);
  if (p.net.length) flags.push(`--allow-net=${unique(p.net)}`);
  if (p.env.length) flags.push(`--allow-env=${unique(p.env)}`);
  return flags;
}

/** {@linkcode brokerPermissions} as `deno run` flags (the store's and bus's flags come on top). */
export function brokerPermissionFlags(input: ServicePermissionInput): string[] {
  return permissionFlags(brokerPermissions(input));
}
