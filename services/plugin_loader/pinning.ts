/**
 * Pinning URL plugins: resolve the whole module graph, hash every module,
 * check that the verified local copy loads exactly that graph, and record
 * the pin at `<prefix>/plugins/<name>` through the Store port. Re-pinning the
 * same URL and version with different bytes is refused unless forced.
 *
 * @module
 */
import { join } from "node:path";
import { storeKeys } from "../store/keys.ts";
import type { Store, Watcher } from "../store/types.ts";
import { ModuleCache } from "./cache.ts";
import { PinError, PinTamperError } from "./errors.ts";
import { fetchModule, ModuleFetchError } from "./fetch.ts";
import { checkLocalGraph, DEFAULT_RESOLVE_TIMEOUT_MS, GraphError, resolveGraph } from "./graph.ts";
import { graphIntegrity, sha256Integrity } from "./integrity.ts";
import { dependencyOrder, planLayout } from "./layout.ts";
import { decodePin, encodePin, PIN_HISTORY_LIMIT } from "./pin_codec.ts";
import {
  isPluginName,
  normalizePermissions,
  parsePluginSpec,
  specVersion,
} from "../config/plugin_spec.ts";
import { PIN_FORMAT, type PinnedModule, type PluginPin, type PluginSpec } from "./types.ts";
import { materializeGraph } from "./verify.ts";

/** The store key of a plugin's pin: `<prefix>/plugins/<name>`. */
export function pinKey(prefix: string, name: string): string {
  if (!isPluginName(name)) {
    throw new TypeError(
      `plugin name ${JSON.stringify(name)}: expected letters, digits, '.', '_' or '-'`,
    );
  }
  return storeKeys(prefix).plugin(name);
}

/** The store prefix of every pin: `<prefix>/plugins/`. */
export function pinPrefix(prefix: string): string {
  return storeKeys(prefix).pluginPrefix;
}

/** Options of {@linkcode pinPlugin}. */
export interface PinOptions {
  /** Re-pin the same URL and version even though its bytes changed. */
  force?: boolean;
  /**
   * Scratch directory (the `deno info` subprocess's DENO_DIR and the check of
   * the local copy); default `<cacheDir>/tmp`, else the system temp dir.
   */
  workDir?: string;
  /** Module cache directory (`<state_dir>/plugin-cache`); filled with the verified modules. */
  cacheDir?: string;
  /** Time budget of one module fetch (ms). */
  fetchTimeoutMs?: number;
  /** Time budget of resolving the graph (ms). */
  resolveTimeoutMs?: number;
  /** Clock in Unix seconds (tests). */
  now?: () => number;
}

/** What {@linkcode pinPlugin} did. */
export interface PinOutcome {
  /** The pin now in the store. */
  pin: PluginPin;
  /**
   * `created`: first pin of this name; `unchanged`: identical pin already
   * stored (nothing written); `updated`: same bytes, new permissions or
   * config; `new-version`: another URL or version; `forced`: same URL and
   * version re-pinned with changed bytes.
   */
  action: "created" | "unchanged" | "updated" | "new-version" | "forced";
  /** The pin that was replaced, if any. */
  previous?: PluginPin;
  /** Modules whose bytes differ from the previous pin of the same URL and version. */
  changed?: string[];
}

function changedModules(before: PinnedModule[], after: PinnedModule[]): string[] {
  const old = new Map(before.map((m) => [m.url, m.integrity]));
  const now = new Map(after.map((m) => [m.url, m.integrity]));
  const changed: string[] = [];
  for (const [url, integrity] of now) {
    if (!old.has(url)) changed.push(`${url} (new)`);
    else if (old.get(url) !== integrity) changed.push(url);
  }
  for (const url of old.keys()) if (!now.has(url)) changed.push(`${url} (gone)`);
  return changed.sort();
}

/** True for the URL of a file of a pinned npm package (`npm:/<name>@<version>/<path>`). */
function isNpmModule(url: string): boolean {
  return url.startsWith("npm:");
}

/**
 * True when `before` and `after` (same URL and version) differ only in their
 * npm packages: same entry, and every module that is not a file of an npm
 * package has the same URL, integrity and non-npm dependencies in both.
 */
function onlyNpmDiffers(before: PluginPin, after: PluginPin): boolean {
  if (before.entry !== after.entry) return false;
  const own = (pin: PluginPin) =>
    pin.modules.filter((m) => !isNpmModule(m.url)).map((m) => ({
      url: m.url,
      integrity: m.integrity,
      dependencies: m.dependencies.filter((d) => !isNpmModule(d.url)),
    }));
  return sameJson(own(before), own(after));
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Builds the pin of `spec` without storing it: resolves the graph, fetches
 * and hashes every module, checks the local copy.
 */
export async function buildPin(
  name: string,
  spec: PluginSpec,
  options: PinOptions = {},
): Promise<{ pin: PluginPin; bytes: Map<string, Uint8Array> }> {
  const checked = parsePluginSpec(spec, `plugins.${name}`);
  const own = options.workDir === undefined && options.cacheDir === undefined;
  const workDir = options.workDir ??
    (options.cacheDir ? join(options.cacheDir, "tmp") : await Deno.makeTempDir());
  try {
    await Deno.mkdir(workDir, { recursive: true });
    return await buildPinIn(name, checked, workDir, options);
  } finally {
    if (own) await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
}

async function buildPinIn(
  name: string,
  checked: PluginSpec,
  workDir: string,
  options: PinOptions,
): Promise<{ pin: PluginPin; bytes: Map<string, Uint8Array> }> {
  const version = specVersion(checked);
  const fail = (message: string, cause?: unknown): never => {
    throw new PinError(name, checked.url, message, { cause });
  };
  const resolveOptions = {
    workDir,
    timeoutMs: options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS,
  };
  let graph;
  try {
    graph = await resolveGraph(checked.url, resolveOptions);
  } catch (error) {
    if (error instanceof GraphError) fail(error.message, error);
    throw error;
  }
  const bytes = new Map<string, Uint8Array>();
  const modules: PinnedModule[] = [];
  for (const module of graph.modules) {
    let data: Uint8Array;
    try {
      data = module.bytes ?? await fetchModule(module.url, { timeoutMs: options.fetchTimeoutMs });
    } catch (error) {
      const reason = error instanceof ModuleFetchError ? error.reason : (error as Error).message;
      return fail(`cannot fetch module ${module.url}: ${reason}`, error);
    }
    if (module.size >= 0 && module.size !== data.length) {
      fail(
        `module ${module.url} was served with different bytes to two consecutive downloads ` +
          `(${module.size} then ${data.length} bytes)`,
      );
    }
    bytes.set(module.url, data);
    modules.push({
      url: module.url,
      integrity: await sha256Integrity(data),
      size: data.length,
      media_type: module.mediaType,
      dependencies: module.dependencies,
    });
  }
  const pin: PluginPin = {
    format: PIN_FORMAT,
    name,
    url: checked.url,
    entry: graph.entry,
    version,
    integrity: await graphIntegrity(modules, graph.npm),
    pinned_at: (options.now ?? (() => Date.now() / 1000))(),
    permissions: normalizePermissions(checked.permissions),
    config: checked.config ?? {},
    modules,
    ...(graph.npm.length > 0 ? { npm: graph.npm } : {}),
    history: [],
  };
  // The local copy the agent will run must load exactly this graph and nothing remote.
  const scratch = join(workDir, `check-${crypto.randomUUID()}`);
  try {
    let layout: Map<string, string>;
    try {
      layout = planLayout(modules);
      dependencyOrder(modules, pin.entry);
    } catch (error) {
      return fail((error as Error).message, error);
    }
    const { dir, entry: entryFile } = await materializeGraph(pin, bytes, scratch).catch((
      error,
    ) => fail((error as Error).message, error));
    const expected = new Map<string, Set<string>>();
    for (const module of modules) {
      expected.set(
        layout.get(module.url)!,
        new Set(
          module.dependencies.filter((d) => !d.url.startsWith("node:")).map((d) =>
            layout.get(d.url)!
          ),
        ),
      );
    }
    try {
      await checkLocalGraph(dir, entryFile, expected, resolveOptions);
    } catch (error) {
      if (error instanceof GraphError) fail(`cannot relocate the graph: ${error.message}`, error);
      throw error;
    }
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
  return { pin, bytes };
}

/**
 * Pins `spec` as plugin `name` at `<prefix>/plugins/<name>`.
 *
 * - Same URL and version as the current pin (or one in its history) with
 *   different bytes: {@linkcode PinTamperError} unless `force`.
 * - Same bytes: nothing written unless permissions or config changed.
 * - Same URL and version as the current pin, same bytes of the plugin's own
 *   modules, npm ranges now resolving to other releases: the npm packages
 *   and files already pinned are kept (`unchanged`, or `updated` with only
 *   the new permissions or config).
 * - Another URL or version: a new pin (the old one moves to `history`).
 */
export async function pinPlugin(
  store: Store,
  prefix: string,
  name: string,
  spec: PluginSpec,
  options: PinOptions = {},
): Promise<PinOutcome> {
  const key = pinKey(prefix, name);
  const { pin: fresh, bytes } = await buildPin(name, spec, options);
  if (options.cacheDir) {
    const cache = new ModuleCache(options.cacheDir);
    for (const module of fresh.modules) await cache.write(module.integrity, bytes.get(module.url)!);
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    const stored = await store.get(key);
    let previous: PluginPin | undefined;
    if (stored) {
      try {
        previous = decodePin(stored.value, key);
      } catch {
        previous = undefined; // an unreadable pin is replaced
      }
    }
    const sameRelease = previous !== undefined && previous.url === fresh.url &&
      previous.version === fresh.version;
    const known = [
      ...(sameRelease ? [{ ...previous!, fromCurrent: true }] : []),
      ...(previous?.history ?? []).map((h) => ({ ...h, fromCurrent: false })),
    ].find((p) => p.url === fresh.url && p.version === fresh.version);
    let action: PinOutcome["action"];
    let changed: string[] | undefined;
    let next: PluginPin = { ...fresh };
    // Same plugin bytes, npm ranges resolved to newer releases since: keep the npm versions
    // already pinned (the previous pin's graph) rather than calling it tampering.
    const keepNpm = known !== undefined && known.fromCurrent &&
      known.integrity !== fresh.integrity && onlyNpmDiffers(previous!, fresh);
    if (keepNpm) {
      const { npm: _npm, ...rest } = fresh;
      next = {
        ...rest,
        modules: previous!.modules,
        integrity: previous!.integrity,
        ...(previous!.npm ? { npm: previous!.npm } : {}),
      };
    }
    if (known && known.integrity !== fresh.integrity && !keepNpm) {
      changed = known.fromCurrent
        ? changedModules(previous!.modules, fresh.modules)
        : [`graph digest ${known.integrity} -> ${fresh.integrity}`];
      if (!options.force) throw new PinTamperError(name, fresh.url, fresh.version, changed);
      action = "forced";
    } else if (!previous) {
      action = "created";
    } else if (sameRelease) {
      if (
        sameJson(previous.permissions, fresh.permissions) &&
        sameJson(previous.config, fresh.config) &&
        previous.entry === fresh.entry
      ) {
        return { pin: previous, action: "unchanged", previous };
      }
      action = "updated";
      next.pinned_at = previous.pinned_at;
    } else {
      action = "new-version";
    }
    const history = previous
      ? [
        ...(sameRelease ? [] : [{
          url: previous.url,
          version: previous.version,
          integrity: previous.integrity,
          pinned_at: previous.pinned_at,
        }]),
        ...previous.history,
      ]
      : [];
    next.history = history
      .filter((h) => !(action === "forced" && h.url === fresh.url && h.version === fresh.version))
      .filter((h, i, all) => all.findIndex((o) => o.url === h.url && o.version === h.version) === i)
      .slice(0, PIN_HISTORY_LIMIT);
    const result = await store.compareAndSet(key, encodePin(next), stored?.modRevision ?? 0);
    if (result.ok) return { pin: next, action, previous, changed };
  }
  throw new PinError(name, fresh.url, `the pin at ${key} kept changing while pinning; try again`);
}

/** Reads the pin of `name`, or undefined when there is none. Throws naming the key when invalid. */
export async function readPin(
  store: Store,
  prefix: string,
  name: string,
): Promise<PluginPin | undefined> {
  const key = pinKey(prefix, name);
  const stored = await store.get(key);
  return stored ? decodePin(stored.value, key) : undefined;
}

/** Every pin under `<prefix>/plugins/`, plus the keys that hold an invalid pin. */
export async function listPins(
  store: Store,
  prefix: string,
): Promise<{ pins: PluginPin[]; invalid: { key: string; error: Error }[]; revision: number }> {
  const listed = await store.list(pinPrefix(prefix));
  const pins: PluginPin[] = [];
  const invalid: { key: string; error: Error }[] = [];
  for (const item of listed.items) {
    try {
      pins.push(decodePin(item.value, item.key));
    } catch (error) {
      invalid.push({ key: item.key, error: error as Error });
    }
  }
  return { pins, invalid, revision: listed.revision };
}

/** Deletes the pin of `name`; true when it existed. */
export function deletePin(store: Store, prefix: string, name: string): Promise<boolean> {
  return store.delete(pinKey(prefix, name));
}

/** A change of the pins seen by {@linkcode watchPins}. */
export type PinEvent =
  | { type: "put"; name: string; pin: PluginPin; revision: number }
  | { type: "invalid"; name: string; error: Error; revision: number }
  | { type: "delete"; name: string; revision: number };

/**
 * Reports every current pin (as `put`), then every change. Returns the
 * running watch; `close()` it when done.
 */
export async function watchPins(
  store: Store,
  prefix: string,
  onEvent: (event: PinEvent) => void | Promise<void>,
): Promise<Watcher> {
  const under = pinPrefix(prefix);
  const listed = await store.list(under);
  const report = async (key: string, value: string | undefined, revision: number) => {
    const name = key.slice(under.length);
    if (!isPluginName(name)) return;
    if (value === undefined) return await onEvent({ type: "delete", name, revision });
    let pin: PluginPin;
    try {
      pin = decodePin(value, key);
    } catch (error) {
      return await onEvent({ type: "invalid", name, error: error as Error, revision });
    }
    await onEvent({ type: "put", name, pin, revision });
  };
  for (const item of listed.items) await report(item.key, item.value, item.modRevision);
  return await store.watch(
    under,
    { fromRevision: listed.revision + 1 },
    (event) => report(event.key, event.type === "put" ? event.value : undefined, event.revision),
  );
}
