/**
 * Runs inside a URL plugin's Worker (started by `sandbox.ts` with only the
 * plugin's declared permissions). The Worker's main module is a small
 * bootstrap made by the loader, as a blob: URL:
 *
 * ```ts
 * import { startHost } from "file:///…/services/plugin_loader/worker_host.ts";
 * const entry = "blob:null/…"; // the verified entry module, imports rewritten to blob: URLs
 * startHost(() => import(String(entry)));
 * ```
 *
 * blob: modules need no permission to load, and importing the entry through
 * a computed specifier keeps the plugin out of type checking (its bytes were
 * verified; its types are its author's business). `startHost` loads the
 * plugin on the first call, calls its factory, and answers the agent's calls
 * one at a time. Uncaught errors and unhandled rejections of the plugin are
 * reported to the agent as faults instead of ending the Worker.
 *
 * @module
 */
import type { Plugin, PluginContext, PluginLogLevel } from "../../plugins/api.ts";
import { type ContextFields, type HostCall, toWireError, type WorkerMessage } from "./protocol.ts";

interface WorkerScope {
  postMessage(message: WorkerMessage): void;
  addEventListener(
    type: "message",
    listener: (event: MessageEvent<HostCall>) => void,
  ): void;
  addEventListener(type: "error", listener: (event: ErrorEvent) => void): void;
  addEventListener(
    type: "unhandledrejection",
    listener: (event: PromiseRejectionEvent) => void,
  ): void;
}

const scope = globalThis as unknown as WorkerScope;
const post = (message: WorkerMessage) => scope.postMessage(message);

let plugin: Plugin | undefined;
let queue: Promise<void> = Promise.resolve();
let fields: ContextFields = { agentId: "", hostname: "", interval: 0 };

const context: PluginContext = {
  get agentId() {
    return fields.agentId;
  },
  get hostname() {
    return fields.hostname;
  },
  get interval() {
    return fields.interval;
  },
  log(level: PluginLogLevel, message: string) {
    post({ type: "log", level: String(level), message: String(message) });
  },
  emitAlert(alert) {
    let text: string;
    try {
      text = JSON.stringify(alert);
    } catch (error) {
      throw new TypeError(`emitAlert: the alert cannot be serialized: ${(error as Error).message}`);
    }
    post({ type: "alert", alert: text });
  },
};

/**
 * Starts answering the agent's calls; `load` imports the plugin's entry
 * module (called once, on the agent's `load` call).
 */
export function startHost(load: () => Promise<{ default?: unknown }>): void {
  loadPlugin = load;
  scope.addEventListener("error", (event) => {
    event.preventDefault();
    post({ type: "fault", error: toWireError(event.error ?? event.message) });
  });
  scope.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    post({ type: "fault", error: toWireError(event.reason) });
  });
  scope.addEventListener("message", (event) => {
    const call = event.data;
    queue = queue.then(async () => {
      try {
        const value = await handle(call);
        post(
          value === undefined ? { type: "reply", id: call.id, ok: true } : {
            type: "reply",
            id: call.id,
            ok: true,
            value,
          },
        );
      } catch (error) {
        post({ type: "reply", id: call.id, ok: false, error: toWireError(error) });
      }
    });
  });
}

let loadPlugin: () => Promise<{ default?: unknown }> = () =>
  Promise.reject(new Error("the worker was not started through startHost()"));

async function handle(call: HostCall): Promise<string | undefined> {
  switch (call.op) {
    case "load": {
      const module = await loadPlugin();
      const factory = module.default;
      if (typeof factory !== "function") {
        throw new TypeError(
          "the module has no default export of a plugin factory (export default function () { return {...} })",
        );
      }
      const created = await factory();
      if (typeof created !== "object" || created === null || typeof created.run !== "function") {
        throw new TypeError(
          "the default export did not return a plugin object with a run() method",
        );
      }
      plugin = created as Plugin;
      return JSON.stringify({
        name: String(plugin.name ?? ""),
        version: String(plugin.version ?? ""),
      });
    }
    case "initialize": {
      fields = call.context;
      if (typeof plugin?.initialize === "function") {
        await plugin.initialize(JSON.parse(call.config), context);
      }
      return undefined;
    }
    case "run": {
      if (!plugin) throw new Error("the plugin is not loaded");
      if (call.interval !== undefined) fields = { ...fields, interval: call.interval };
      const result = await plugin.run(JSON.parse(call.sample));
      if (result === undefined || result === null) return undefined;
      try {
        return JSON.stringify(result);
      } catch (error) {
        throw new TypeError(
          `run() returned a value that cannot be serialized: ${(error as Error).message}`,
        );
      }
    }
    case "finalize": {
      if (typeof plugin?.finalize === "function") await plugin.finalize();
      return undefined;
    }
  }
}
