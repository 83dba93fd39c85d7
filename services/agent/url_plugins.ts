/**
 * Integration with the URL plugin loader (services/plugin_loader): turns a
 * configured URL plugin into a running Plugin. The pin is read from the store
 * (`<prefix>/plugins/<name>`, followed by the config watcher); the loader
 * verifies the pinned integrity of the whole module graph before any of its
 * code runs and starts the plugin in a Worker with exactly the permissions
 * the pin declares (the agent needs `--unstable-worker-options` and those
 * permissions itself; see services/plugin_loader/permissions.ts).
 *
 * Settings: the pin's `config` (from monitor.yaml) is the base; the agent
 * configuration's settings for the plugin override it key by key.
 *
 * @module
 */
import type { PluginContext, PluginLogLevel } from "../../plugins/api.ts";
import type { PluginSpec } from "../config/agent_config.ts";
import { errorMessage } from "../common/log.ts";
import { type PipelinePlugin, PluginStoppedError, type UrlPluginLoader } from "./pipeline.ts";

/** A loaded URL plugin; `close()` terminates its Worker. */
export type LoadedUrlPlugin = PipelinePlugin;

/** Options of {@linkcode createUrlPluginLoader}. */
export interface UrlPluginLoaderOptions {
  /** Current pins: plugin name -> pin JSON text (from the store). */
  pins(): ReadonlyMap<string, string>;
  /** Where pins live, for messages, e.g. `/monitor/plugins/`. */
  pinPrefix: string;
  /** The module cache, `<state_dir>/plugin-cache`; URL plugins cannot load without it. */
  cacheDir?: string;
  /** Time budget of one run() (ms); the loader restarts a Worker that overruns it. */
  timeoutMs(): number;
  /** The loader's own notes about a plugin (faults, restarts). */
  log(name: string, level: PluginLogLevel, message: string): void;
}

/** Creates the pipeline's URL plugin loader. */
export function createUrlPluginLoader(options: UrlPluginLoaderOptions): UrlPluginLoader {
  return async (spec: PluginSpec): Promise<LoadedUrlPlugin> => {
    const key = `${options.pinPrefix}${spec.name}`;
    const text = options.pins().get(spec.name);
    if (text === undefined) {
      throw new Error(
        `no pin at ${key}: declare the plugin in monitor.yaml plugins: so that the supervisor pins it`,
      );
    }
    if (!options.cacheDir) {
      throw new Error("no state directory for the plugin cache (start the agent with --state-dir)");
    }
    // Loaded on first use: agents without URL plugins never load the Worker host.
    const loader = await import("../plugin_loader/mod.ts");
    const pin = loader.decodePin(text, key);
    if (spec.url !== undefined && pin.url !== spec.url) {
      throw new Error(`the configuration asks for ${spec.url} but ${key} pins ${pin.url}`);
    }
    const plugin = await loader.loadUrlPlugin(pin, {
      cacheDir: options.cacheDir,
      timeoutMs: options.timeoutMs(),
      log: (level, message) => options.log(spec.name, level, message),
    });
    const base = pin.config ?? {};
    return {
      get name() {
        return plugin.name;
      },
      get version() {
        return plugin.version;
      },
      initialize: (config: Record<string, unknown>, context: PluginContext) =>
        plugin.initialize({ ...base, ...config }, context),
      // A plugin its sandbox stopped (permission violation) refuses every later call:
      // said so, the pipeline disables it at once.
      run: async (sample) => {
        try {
          return await plugin.run(sample);
        } catch (error) {
          if (plugin.status().state !== "stopped") throw error;
          throw new PluginStoppedError(errorMessage(error), {
            cause: error,
          });
        }
      },
      // One Worker message for many samples; a stop at the end reads as in run().
      runBatch: async (samples) => {
        const outcomes = await plugin.runBatch(samples);
        const last = outcomes[outcomes.length - 1];
        if (last && !last.ok && !last.timeout && plugin.status().state === "stopped") {
          outcomes[outcomes.length - 1] = {
            ok: false,
            error: new PluginStoppedError(errorMessage(last.error), { cause: last.error }),
          };
        }
        return outcomes;
      },
      finalize: () => plugin.finalize(),
      close: () => plugin.close(),
    };
  };
}
