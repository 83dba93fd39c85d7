/**
 * What a process needs from Deno's permission system to use the Store, so
 * that whoever launches it (the supervisor) can grant exactly that.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stripScheme } from "../common/net.ts";
import {
  GRPC_CLIENT_PROXY_ENV_VARS,
  GRPC_ENV_VARS,
  permissionFlags,
  type PermissionLists,
} from "../common/permissions.ts";
import type { EtcdClientOptions, StoreSettings } from "./types.ts";

/** Environment variables grpc-js (under etcd3) reads when it is used (etcd backend). */
export const ETCD_ENV_VARS: readonly string[] = Object.freeze([
  ...GRPC_ENV_VARS,
  ...GRPC_CLIENT_PROXY_ENV_VARS,
]);

/**
 * The directory of etcd3's `rpc.proto`, which etcd3 reads when it is loaded
 * (a file in Deno's npm cache, so the process needs read access to it).
 * Undefined when the package cannot be resolved.
 */
export function etcd3ProtoDir(): string | undefined {
  try {
    const entry = fileURLToPath(import.meta.resolve("etcd3"));
    // <package>/lib/index.js -> <package>/proto
    return join(dirname(dirname(entry)), "proto");
  } catch {
    return undefined;
  }
}

/** Permission lists for {@linkcode storePermissions}. */
export type StorePermissions = PermissionLists;

/**
 * The permissions a process needs to open a store with `settings` (and the
 * same `options` it passes to `openStore`):
 * etcd: network access to the endpoints; with the etcd3 client (the
 * default) also the variables grpc-js reads and read access to etcd3's
 * proto directory ({@linkcode etcd3ProtoDir}); with `etcd: { client: "http" }`
 * nothing more;
 * embedded: read/write on the directory of the SQLite file (SQLite also
 * creates `-wal` and `-shm` files next to it).
 *
 * ```ts
 * import { storePermissions } from "./permissions.ts";
 * const settings = { backend: "etcd" as const, endpoints: ["10.0.0.5:2379"], prefix: "/monitor", path: "" };
 * storePermissions(settings, { etcd: { client: "http" } });
 * // { read: [], write: [], net: ["10.0.0.5:2379"], env: [] }
 * ```
 */
export function storePermissions(
  settings: StoreSettings,
  options: { etcd?: EtcdClientOptions } = {},
): StorePermissions {
  if (settings.backend === "etcd") {
    const net = settings.endpoints.map(stripScheme);
    if (options.etcd?.client === "http") return { read: [], write: [], net, env: [] };
    const proto = etcd3ProtoDir();
    return {
      read: proto === undefined ? [] : [proto],
      write: [],
      net,
      env: [...ETCD_ENV_VARS],
    };
  }
  const dir = dirname(settings.path);
  return { read: [dir], write: [dir], net: [], env: [] };
}

/** {@linkcode storePermissions} as `deno run` flags. */
export function storePermissionFlags(
  settings: StoreSettings,
  options: { etcd?: EtcdClientOptions } = {},
): string[] {
  return permissionFlags(storePermissions(settings, options));
}
