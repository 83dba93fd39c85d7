/**
 * What the broker process needs from Deno's permission system beyond its
 * Store and Bus (see services/bus/permissions.ts and the
 * store's equivalent), so that a launcher can grant exactly that.
 *
 * @module
 */
import { dirname } from "node:path";
import { permissionFlags, type PermissionLists, YAML_ENV_VARS } from "../common/permissions.ts";
import { CONSOLE_ENV_VARS } from "../console/permissions.ts";

/** The flag rendering, from services/common/permissions.ts. */
export { permissionFlags };

/** Permission lists of a service process (services/common/permissions.ts). */
export type ServicePermissions = PermissionLists;

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

/**
 * The broker's own permissions (add the store's and the bus's). Its gRPC
 * server (services/rpc/server.ts) loads no gRPC library and reads no file:
 * no GRPC_* variables and no `.proto` file (the etcd store's builder adds
 * what etcd3's grpc-js reads when that backend is used).
 */
export function brokerPermissions(input: ServicePermissionInput): ServicePermissions {
  return {
    read: [
      input.stateDir,
      ...(input.configFile ? [input.configFile] : []),
      ...(input.tlsFiles ?? []),
      ...(input.secretFiles ?? []),
    ],
    write: [input.stateDir, ...(input.sink ? [dirname(input.sink)] : [])],
    net: [input.listen, input.admin].filter((a): a is string => a !== undefined),
    env: [
      ...CONSOLE_ENV_VARS,
      ...(input.configFile ? YAML_ENV_VARS : []),
      ...(input.secretEnv ?? []),
    ],
    // The default broker id of a broker listening on 0.0.0.0 is the hostname and its port.
    sys: ["hostname"],
  };
}

/** {@linkcode brokerPermissions} as `deno run` flags (the store's and bus's flags come on top). */
export function brokerPermissionFlags(input: ServicePermissionInput): string[] {
  return permissionFlags(brokerPermissions(input));
}
