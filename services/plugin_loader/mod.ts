/**
 * Plugins loaded by URL: pinning (whole module graph, SHA-256 per module,
 * recorded at `<prefix>/plugins/<name>`), verification before any code runs,
 * a content-addressed cache, and a sandboxed Worker per plugin with exactly
 * its declared permissions.
 *
 * Pinning (supervisor, `deno task plugins`; needs `--allow-run=deno`):
 * ```ts
 * import type { Store } from "../store/types.ts";
 * declare const store: Store; // from openStore (services/store/mod.ts)
 * const cacheDir = ".monitor/plugin-cache";
 * const spec = { url: "https://plugins.example.com/spike@1.2.0/mod.ts" };
 *
 * const outcome = await pinPlugin(store, "/monitor", "spike", spec, { cacheDir });
 * ```
 * Loading (agent; needs `--unstable-worker-options`, no `--allow-run`):
 * ```ts
 * import type { PluginContext, Sample } from "../../plugins/api.ts";
 * import type { Store } from "../store/types.ts";
 * declare const store: Store;
 * declare const context: PluginContext; // the agent's (log, emitAlert, ...)
 * const cacheDir = ".monitor/plugin-cache";
 * const config = { factor: 2 };
 * const sample: Sample = { timestamp: 1, metrics: { cpu: 50 } };
 *
 * const pin = await readPin(store, "/monitor", "spike");
 * const plugin = await loadUrlPlugin(pin!, { cacheDir, timeoutMs: 1000 });
 * await plugin.initialize(config, context);
 * const out = await plugin.run(sample);
 * await plugin.finalize();
 * await plugin.close();
 * ```
 *
 * @module
 */
export type {
  PinHistoryEntry,
  PinnedDependency,
  PinnedModule,
  PinnedNpmPackage,
  PluginPermissions,
  PluginPin,
  PluginSpec,
} from "./types.ts";
export { PIN_FORMAT } from "./types.ts";
export {
  PinError,
  PinTamperError,
  PluginError,
  PluginFetchError,
  PluginIntegrityError,
  PluginPermissionError,
  PluginRuntimeError,
  PluginTimeoutError,
} from "./errors.ts";
export {
  checkPluginSpec,
  checkPluginsSection,
  isPluginName,
  parsePluginSpec,
  parsePluginsSection,
  specVersion,
  versionFromUrl,
} from "../config/plugin_spec.ts";
export { decodePin, encodePin } from "./pin_codec.ts";
export { NPM_REGISTRY, NPM_REGISTRY_HOST } from "./npm.ts";
export {
  buildPin,
  deletePin,
  listPins,
  type PinEvent,
  pinKey,
  type PinOptions,
  type PinOutcome,
  pinPlugin,
  pinPrefix,
  readPin,
  watchPins,
} from "./pinning.ts";
export { collectVerified, type VerifyOptions } from "./verify.ts";
export {
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_RUN_TIMEOUT_MS,
  type LoadOptions,
  loadUrlPlugin,
  type RunOutcome,
  type UrlPlugin,
  type UrlPluginStatus,
  workerPermissions,
} from "./sandbox.ts";
export {
  agentPluginPermissions,
  PLUGIN_CACHE_DIR,
  pluginCacheDir,
  type PluginHostPermissions,
} from "./permissions.ts";
