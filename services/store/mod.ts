/**
 * The Store: keys with revisions, prefix watches and leases, on etcd
 * (`etcd`) or on the SQLite file of the state directory (`embedded`, the
 * single-machine default). Services use only this module.
 *
 * @module
 */
import type { EtcdClientOptions, Store, StoreSettings } from "./types.ts";
import type { EmbeddedStoreOptions } from "./embedded.ts";

export * from "./types.ts";
export { DEFAULT_STORE_PREFIX, type StoreKeys, storeKeys } from "./keys.ts";
export {
  etcd3ProtoDir,
  ETCD_ENV_VARS,
  storePermissionFlags,
  type StorePermissions,
  storePermissions,
} from "./permissions.ts";
export { DEFAULT_CONNECT_TIMEOUT_MS } from "./common.ts";

export type { EmbeddedStoreOptions };

/** Tuning of a process's store, per backend (not part of monitor.yaml). */
export interface OpenStoreOptions {
  /** Used when `settings.backend` is `embedded` (e.g. `watchFiles: false` for a quiet process). */
  embedded?: EmbeddedStoreOptions;
  /** Used when `settings.backend` is `etcd`: which client (`{ client: "http" }` loads no etcd3). */
  etcd?: EtcdClientOptions;
}

/**
 * Opens the backend chosen by `settings.backend`. An unreachable backend
 * fails with {@linkcode StoreUnavailableError} naming the endpoint within
 * `connectTimeoutMs` (default 5 s).
 */
export async function openStore(
  settings: StoreSettings,
  options: OpenStoreOptions = {},
): Promise<Store> {
  if (typeof settings !== "object" || settings === null) {
    throw new TypeError("store settings: expected an object");
  }
  switch (settings.backend) {
    case "embedded": {
      const { openEmbeddedStore } = await import("./embedded.ts");
      return await openEmbeddedStore(settings, options.embedded);
    }
    case "etcd": {
      const client = options.etcd?.client ?? "etcd3";
      if (client === "http") {
        const { openEtcdHttpStore } = await import("./etcd_http.ts");
        return await openEtcdHttpStore(settings);
      }
      if (client !== "etcd3") {
        throw new TypeError(
          `store options: etcd.client: expected "etcd3" or "http", got ${
            JSON.stringify(client) ?? String(client)
          }`,
        );
      }
      // Loaded on demand so that processes on the embedded store (or the HTTP client) never load etcd3.
      const { openEtcdStore } = await import("./etcd.ts");
      return await openEtcdStore(settings);
    }
    default:
      throw new TypeError(
        `store.backend: expected "embedded" or "etcd", got ${
          JSON.stringify(settings.backend) ?? String(settings.backend)
        }`,
      );
  }
}
