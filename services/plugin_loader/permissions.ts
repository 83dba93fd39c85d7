/**
 * What the agent process needs from Deno's permission system to run URL
 * plugins, so that whoever launches it (the supervisor) can grant exactly
 * that: fetching the pinned modules, the module cache, and every permission
 * a plugin declares (a Worker cannot get more than its parent).
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NPM_REGISTRY_HOST } from "./npm.ts";
import type { PluginPermissions } from "./types.ts";

/** Name of the module cache directory inside the state directory. */
export const PLUGIN_CACHE_DIR = "plugin-cache";

/** `<state_dir>/plugin-cache`. */
export function pluginCacheDir(stateDir: string): string {
  return join(stateDir, PLUGIN_CACHE_DIR);
}

/** Permission lists of {@linkcode agentPluginPermissions}. */
export interface PluginHostPermissions {
  /** `--allow-read` paths. */
  read: string[];
  /** `--allow-write` paths. */
  write: string[];
  /** `--allow-net` hosts. */
  net: string[];
  /** `--allow-env` names. */
  env: string[];
  /** Other flags: `--unstable-worker-options` when any plugin is declared. */
  flags: string[];
}

/** What is known of a plugin before or after pinning (a spec or a pin). */
export interface PluginRequirement {
  url: string;
  permissions?: Partial<PluginPermissions>;
  /** Pinned modules, when pinned (their hosts must be reachable to fetch them). */
  modules?: { url: string }[];
}

function hostOf(url: URL): string {
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return `${url.hostname}:${port}`;
}

/**
 * The permissions an agent needs to fetch, cache and run these plugins.
 * Pass pins when available (they name every module host); a spec names
 * only its entry's host.
 */
export function agentPluginPermissions(
  plugins: readonly PluginRequirement[],
  stateDir: string,
): PluginHostPermissions {
  const read = new Set<string>();
  const net = new Set<string>();
  const env = new Set<string>();
  const cache = pluginCacheDir(stateDir);
  if (plugins.length > 0) read.add(cache);
  for (const plugin of plugins) {
    const urls = [plugin.url, ...(plugin.modules ?? []).map((m) => m.url)];
    for (const text of urls) {
      const url = new URL(text);
      if (url.protocol === "npm:") net.add(NPM_REGISTRY_HOST); // files of a tarball
      else if (url.protocol === "file:") read.add(fileURLToPath(url));
      else net.add(hostOf(url));
    }
    for (const host of plugin.permissions?.net ?? []) net.add(host);
    for (const path of plugin.permissions?.read ?? []) read.add(path);
    for (const name of plugin.permissions?.env ?? []) env.add(name);
  }
  return {
    read: [...read].sort(),
    write: plugins.length > 0 ? [cache] : [],
    net: [...net].sort(),
    env: [...env].sort(),
    flags: plugins.length > 0 ? ["--unstable-worker-options"] : [],
  };
}
