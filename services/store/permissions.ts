/**
 * What a process needs from Deno's permission system to use the Store, so
 * that whoever launches it (the supervisor) can grant exactly that.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { StoreSettings } from "./types.ts";

/** Environment variables grpc-js (under etcd3) reads when it is used (etcd backend). */
export const ETCD_ENV_VARS: readonly string[] = Object.freeze([
  "GRPC_NODE_VERBOSITY",
  "GRPC_VERBOSITY",
  "GRPC_NODE_TRACE",
  "GRPC_TRACE",
  "GRPC_SSL_CIPHER_SUITES",
  "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
  "GRPC_NODE_USE_ALTERNATIVE_RESOLVER",
  "GRPC_NODE_DEBUG_SEND_ERROR_DETAILS",
  "GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION",
  "grpc_proxy",
  "https_proxy",
  "http_proxy",
  "no_grpc_proxy",
  "no_proxy",
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
export interface StorePermissions {
  /** `--allow-read` paths. */
  read: string[];
  /** `--allow-write` paths. */
  write: string[];
  /** `--allow-net` hosts (`host:port`). */
  net: string[];
  /** `--allow-env` variable names. */
  env: string[];
}

/** `host:port` of an endpoint given as `host:port` or `http(s)://host:port[/]`. */
function hostPort(endpoint: string): string {
  return endpoint.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "");
}

/**
 * The permissions a process needs to open a store with `settings`:
 * etcd: network access to the endpoints, the variables grpc-js reads, and
 * read access to etcd3's proto directory ({@linkcode etcd3ProtoDir});
 * embedded: read/write on the directory of the SQLite file (SQLite also
 * creates `-wal` and `-shm` files next to it).
 */
export function storePermissions(settings: StoreSettings): StorePermissions {
  if (settings.backend === "etcd") {
    const proto = etcd3ProtoDir();
    return {
      read: proto === undefined ? [] : [proto],
      write: [],
      net: settings.endpoints.map(hostPort),
      env: [...ETCD_ENV_VARS],
    };
  }
  const dir = dirname(settings.path);
  return { read: [dir], write: [dir], net: [], env: [] };
}

/** {@linkcode storePermissions} as `deno run` flags. */
export function storePermissionFlags(settings: StoreSettings): string[] {
  const p = storePermissions(settings);
  const flags: string[] = [];
  if (p.read.length) flags.push(`--allow-read=${p.read.join(",")}`);
  if (p.write.length) flags.push(`--allow-write=${p.write.join(",")}`);
  if (p.net.length) flags.push(`--allow-net=${p.net.join(",")}`);
  if (p.env.length) flags.push(`--allow-env=${p.env.join(",")}`);
  return flags;
}
