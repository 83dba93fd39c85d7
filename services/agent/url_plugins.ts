/**
 * Integration point with the URL plugin loader (services/plugin_loader):
 * turns a configured URL plugin into a running Plugin. The pin is read from
 * the store (`<prefix>/plugins/<name>`, followed by the config watcher); the
 * loader verifies the pinned integrity of the whole module graph and runs the
 * plugin in a Worker with only the permissions the pin declares.
 *
 * Settings: the pin's `config` (from monitor.yaml) is the base; the agent
 * configuration's settings for the plugin override it key by key.
 *
 * @module
 */
import type { Plugin, PluginContext } from "../../plugins/api.ts";
import type { PluginSpec } from "../config/agent_config.ts";
import type { UrlPluginLoader } from "./pipeline.ts";

/** A loaded URL plugin; `close()` terminates its Worker. */
export type LoadedUrlPlugin = Plugin & { close?(): Promise<void> | void };

/** The loader module's entry point as the agent uses it. */
export type LoadPinned = (pin: unknown, options: { name: string }) => Promise<LoadedUrlPlugin>;

/** Options of {@linkcode createUrlPluginLoader}. */
export interface UrlPluginLoaderOptions {
  /** Current pins: plugin name -> pin JSON text (from the store). */
  pins(): ReadonlyMap<string, string>;
  /** Where pins live, for messages, e.g. `/monitor/plugins/`. */
  pinPrefix: string;
  /** Loads a verified pin; default: services/plugin_loader/mod.ts's `loadUrlPlugin`. */
  load?: LoadPinned;
}

/** Loads services/plugin_loader/mod.ts on first use (it may not be present in every build). */
async function defaultLoad(): Promise<LoadPinned> {
  const path = "../plugin_loader/mod.ts";
  let module: Record<string, unknown>;
  try {
    module = await import(path) as Record<string, unknown>;
  } catch (error) {
    throw new Error(
      `the URL plugin loader (services/plugin_loader/mod.ts) is not available: ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
  }
  const fn = module.loadUrlPlugin ?? module.loadPlugin;
  if (typeof fn !== "function") {
    throw new Error("services/plugin_loader/mod.ts exports no loadUrlPlugin function");
  }
  return fn as LoadPinned;
}

/** Creates the pipeline's URL plugin loader. */
export function createUrlPluginLoader(options: UrlPluginLoaderOptions): UrlPluginLoader {
  let load: Promise<LoadPinned> | undefined = options.load
    ? Promise.resolve(options.load)
    : undefined;
  return async (spec: PluginSpec) => {
    const text = options.pins().get(spec.name);
    if (text === undefined) {
      throw new Error(
        `no pin at ${options.pinPrefix}${spec.name}: declare the plugin in monitor.yaml plugins: so the supervisor pins it`,
      );
    }
    let pin: Record<string, unknown>;
    try {
      pin = JSON.parse(text);
    } catch (error) {
      throw new Error(
        `the pin at ${options.pinPrefix}${spec.name} is not JSON: ${(error as Error).message}`,
      );
    }
    if (spec.url !== undefined && pin.url !== spec.url) {
      throw new Error(
        `the configuration asks for ${spec.url} but ${options.pinPrefix}${spec.name} pins ${
          String(pin.url)
        }`,
      );
    }
    load ??= defaultLoad();
    let loader: LoadPinned;
    try {
      loader = await load;
    } catch (error) {
      load = undefined;
      throw error;
    }
    const plugin = await loader(pin, { name: spec.name });
    const base = typeof pin.config === "object" && pin.config !== null
      ? pin.config as Record<string, unknown>
      : {};
    return {
      get name() {
        return plugin.name;
      },
      get version() {
        return plugin.version;
      },
      initialize: (config: Record<string, unknown>, context: PluginContext) =>
        plugin.initialize({ ...base, ...config }, context),
      run: (sample) => plugin.run(sample),
      finalize: () => plugin.finalize(),
      close: () => plugin.close?.(),
    };
  };
}
