/**
 * Shapes of the URL plugin loader: what monitor.yaml declares for a plugin
 * ({@linkcode PluginSpec}) and what is pinned in the store at
 * `<prefix>/plugins/<name>` ({@linkcode PluginPin}).
 *
 * @module
 */

/** What monitor.yaml declares for a plugin: services/config/plugin_spec.ts. */
import type { PluginPermissions } from "../config/plugin_spec.ts";
export type { PluginPermissions, PluginSpec } from "../config/plugin_spec.ts";

/** A code dependency of a pinned module: the specifier as written and the module it loads. */
export interface PinnedDependency {
  /** Specifier as written in the importing module, e.g. `./dep.ts`. */
  specifier: string;
  /** URL of the pinned module it loads (after redirects), or a `node:` builtin. */
  url: string;
}

/** One module of a pinned graph. */
export interface PinnedModule {
  /**
   * Final URL the bytes are fetched from (after redirects), or
   * `npm:/<name>@<version>/<path>` for a file of a pinned npm package.
   */
  url: string;
  /** `sha256-<base64>` of the exact bytes (Subresource Integrity form). */
  integrity: string;
  /** Size in bytes. */
  size: number;
  /** Deno media type: `TypeScript`, `JavaScript`, `Mjs`, `Mts` or `Json`. */
  media_type: string;
  /** Code dependencies (static imports, re-exports, literal dynamic imports). */
  dependencies: PinnedDependency[];
}

/** An npm package of a pinned graph, at its resolved exact version. */
export interface PinnedNpmPackage {
  /** Package name, e.g. `fast-string-width` or `@scope/name`. */
  name: string;
  /** Exact version the pin resolved. */
  version: string;
  /** Tarball URL on the registry (`dist.tarball`). */
  tarball: string;
  /** The registry's `dist.integrity` of the tarball: `sha512-<base64>`, checked when pinning. */
  integrity: string;
}

/** An earlier pin of the same plugin, kept to refuse re-pinning changed bytes. */
export interface PinHistoryEntry {
  url: string;
  version: string;
  /** Graph digest of that pin. */
  integrity: string;
  pinned_at: number;
}

/** Current format of {@linkcode PluginPin}. */
export const PIN_FORMAT = 1;

/** The pin of a URL plugin, stored as JSON at `<prefix>/plugins/<name>`. */
export interface PluginPin {
  /** Pin format, {@linkcode PIN_FORMAT}. */
  format: number;
  /** Plugin name (the key's last segment). */
  name: string;
  /** Entry module URL as declared. */
  url: string;
  /** Entry module URL after redirects (a key of `modules`). */
  entry: string;
  version: string;
  /** Graph digest: `sha256-<base64>` over every module's URL and integrity (and npm package). */
  integrity: string;
  /** Unix seconds. */
  pinned_at: number;
  permissions: PluginPermissions;
  /** Settings from monitor.yaml (the agent's own plugin settings override them). */
  config: Record<string, unknown>;
  /**
   * Every module of the graph, sorted by URL; files of npm packages have URLs
   * `npm:/<name>@<version>/<path>`.
   */
  modules: PinnedModule[];
  /** The npm packages those files come from (omitted when the plugin imports none). */
  npm?: PinnedNpmPackage[];
  /** Earlier pins (newest first, bounded), for tamper detection across versions. */
  history: PinHistoryEntry[];
}
