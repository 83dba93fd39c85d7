/**
 * The code that runs inside a URL plugin's Worker, next to the plugin.
 *
 * {@linkcode hostMain} is self-contained (it uses only globals): the loader
 * turns its source into the Worker's main module, a blob: URL
 *
 * ```text
 * (function hostMain(entry) { … })("blob:null/…"); // entry: the verified plugin
 * ```
 *
 * so the Worker loads nothing from disk (the agent needs no read access to
 * its own source for it) and nothing of it is type-checked at run time. The
 * plugin's entry is imported through a computed specifier on the first call:
 * a runtime import of blob: URLs, which needs no permission and keeps the
 * plugin out of type checking (its bytes were verified; its types are its
 * author's business). The host calls the plugin's factory and answers the
 * agent's calls one at a time; a `runBatch` call runs many samples in order
 * in one message each way (the Worker boundary costs tens of µs per message). Uncaught errors and unhandled rejections of
 * the plugin are reported to the agent as faults instead of ending the
 * Worker.
 *
 * @module
 */
import type { Plugin, PluginContext, PluginLogLevel } from "../../plugins/api.ts";
import type { ContextFields, HostCall, WireError, WorkerMessage } from "./protocol.ts";

/**
 * Runs the host in the current Worker; `entry` is the URL of the plugin's
 * entry module. Uses nothing but globals (see the module documentation).
 */
export function hostMain(entry: string): void {
  interface WorkerScope {
    postMessage(message: WorkerMessage): void;
    addEventListener(type: "message", listener: (event: MessageEvent<HostCall>) => void): void;
    addEventListener(type: "error", listener: (event: ErrorEvent) => void): void;
    addEventListener(
      type: "unhandledrejection",
      listener: (event: PromiseRejectionEvent) => void,
    ): void;
  }
  const scope = globalThis as unknown as WorkerScope;
  const post = (message: WorkerMessage) => scope.postMessage(message);
  const toWire = (error: unknown): WireError => {
    if (error instanceof Error) return { name: error.name, message: error.message };
    let text: string;
    try {
      text = typeof error === "string" ? error : JSON.stringify(error) ?? String(error);
    } catch {
      text = String(error);
    }
    return { name: "Error", message: text };
  };

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
        throw new TypeError(
          `emitAlert: the alert cannot be serialized: ${(error as Error).message}`,
        );
      }
      post({ type: "alert", alert: text });
    },
  };

  const handle = async (call: HostCall): Promise<string | undefined> => {
    switch (call.op) {
      case "load": {
        const module = await import(String(entry));
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
      case "runBatch": {
        if (!plugin) throw new Error("the plugin is not loaded");
        if (call.interval !== undefined) fields = { ...fields, interval: call.interval };
        const samples = JSON.parse(call.samples) as unknown[];
        // The reply is built from each result's own JSON (see BatchReply).
        const out: string[] = [];
        const overran: number[] = [];
        let error: string | undefined;
        for (let i = 0; i < samples.length; i++) {
          const started = performance.now();
          try {
            const result = await plugin.run(samples[i] as Parameters<Plugin["run"]>[0]);
            let text: string;
            try {
              // As run(): a value JSON leaves out (a function) reads as "dropped".
              text = result === undefined || result === null
                ? "null"
                : JSON.stringify(result) ?? "null";
            } catch (e) {
              throw new TypeError(
                `run() returned a value that cannot be serialized: ${(e as Error).message}`,
              );
            }
            if (performance.now() - started > call.budgetMs) overran.push(i);
            out.push(text);
          } catch (e) {
            error = JSON.stringify(toWire(e));
            break;
          }
        }
        return `{"out":[${out.join(",")}],"overran":${JSON.stringify(overran)}${
          error === undefined ? "" : `,"error":${error}`
        }}`;
      }
      case "finalize": {
        if (typeof plugin?.finalize === "function") await plugin.finalize();
        return undefined;
      }
    }
  };

  scope.addEventListener("error", (event) => {
    event.preventDefault();
    post({ type: "fault", error: toWire(event.error ?? event.message) });
  });
  scope.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    post({ type: "fault", error: toWire(event.reason) });
  });
  scope.addEventListener("message", (event) => {
    const call = event.data;
    queue = queue.then(async () => {
      try {
        const value = await handle(call);
        post(
          value === undefined
            ? { type: "reply", id: call.id, ok: true }
            : { type: "reply", id: call.id, ok: true, value },
        );
      } catch (error) {
        post({ type: "reply", id: call.id, ok: false, error: toWire(error) });
      }
    });
  });
}

/** The source of the Worker's main module for the plugin entry at `entry`. */
export function hostSource(entry: string, label: string): string {
  return `// Generated by the plugin loader for ${label}\n` +
    `(${hostMain.toString()})(${JSON.stringify(entry)});\n`;
}
