/**
 * The URL plugin command line: `deno task plugins --help`.
 *
 * Pins the plugins declared in monitor.yaml (`plugins:`) into the store,
 * lists and shows pins, checks that what is published still matches them,
 * and tries a plugin locally without pinning it.
 *
 * @module
 */
import { Command } from "commander";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { PluginContext } from "../../plugins/api.ts";
import { errorMessage } from "../common/log.ts";
import { type CommonFlags, configureLogging } from "../common/cli.ts";
import { resolveServiceSettings } from "../config/service_settings.ts";
import { didYouMean } from "../config/issues.ts";
import { openStore } from "../store/mod.ts";
import type { Store } from "../store/types.ts";
import { ModuleCache } from "./cache.ts";
import { pluginCacheDir } from "./permissions.ts";
import {
  buildPin,
  collectVerified,
  deletePin,
  listPins,
  loadUrlPlugin,
  parsePluginsSection,
  pinPlugin,
  type PluginPin,
  readPin,
} from "./mod.ts";

const EXAMPLES = `
Examples:
  deno task plugins pin                     # pin every plugin declared in monitor.yaml
  deno task plugins pin spike               # pin one plugin
  deno task plugins pin spike --force       # accept changed bytes for the same version
  deno task plugins list                    # the pins in the store
  deno task plugins show spike              # one pin as JSON
  deno task plugins verify                  # fetch what is published and compare with the pins
  deno task plugins remove spike            # delete a pin
  deno task plugins try http://127.0.0.1:8000/spike@0.1.0/mod.ts \\
      --plugin-config '{"factor": 2}' --sample '{"timestamp": 1, "metrics": {"cpu": 50}}' \\
      --sample '{"timestamp": 6, "metrics": {"cpu": 90}}'   # several: one instance, in order

monitor.yaml (default: ./monitor.yaml when it exists):
  plugins:
    spike:
      url: https://plugins.example.com/spike@1.2.0/mod.ts   # version read from the URL
      permissions: { net: [api.example.com], read: [/var/log/app], env: [SPIKE_TOKEN] }
      config: { factor: 3 }`;

interface Flags extends CommonFlags {
  force?: boolean;
}

let failed = false;

function report(message: string) {
  console.log(message);
}

function problem(message: string) {
  failed = true;
  for (const line of message.split("\n")) console.error(`plugins: error: ${line}`);
}

async function settingsOf(flags: Flags) {
  const config = flags.config ?? (existsSync("monitor.yaml") ? "monitor.yaml" : undefined);
  const settings = await resolveServiceSettings("plugins", { ...flags, config });
  configureLogging(settings, { service: "plugins" });
  return settings;
}

async function withStore<T>(flags: Flags, fn: (store: Store, prefix: string) => Promise<T>) {
  const settings = await settingsOf(flags);
  const store = await openStore(settings.store);
  try {
    return await fn(store, settings.store.prefix);
  } finally {
    await store.close();
  }
}

function describePermissions(pin: PluginPin): string {
  const parts = (["net", "read", "env"] as const)
    .filter((k) => pin.permissions[k].length > 0)
    .map((k) => `${k}: ${pin.permissions[k].join(",")}`);
  return parts.length > 0 ? parts.join("; ") : "none";
}

async function pinCommand(names: string[], flags: Flags) {
  const settings = await settingsOf(flags);
  if (!settings.configFile) {
    throw new Error("no monitor.yaml: give --config <file> (plugins are declared under plugins:)");
  }
  const specs = parsePluginsSection(settings.section, settings.configFile);
  const wanted = names.length > 0 ? names : [...specs.keys()];
  if (wanted.length === 0) {
    report(`${settings.configFile}: no plugins declared under plugins:`);
    return;
  }
  const store = await openStore(settings.store);
  try {
    for (const name of wanted) {
      const spec = specs.get(name);
      if (!spec) {
        const hint = didYouMean(name, [...specs.keys()]);
        problem(
          `${settings.configFile}: plugins.${name}: not declared` +
            (hint ? ` (did you mean "${hint}"?)` : ""),
        );
        continue;
      }
      try {
        const outcome = await pinPlugin(store, settings.store.prefix, name, spec, {
          force: flags.force,
          cacheDir: pluginCacheDir(settings.stateDir),
        });
        const pin = outcome.pin;
        report(
          `${name} ${pin.version}: ${outcome.action} (${pin.modules.length} modules, ${pin.integrity})` +
            (outcome.changed ? `; changed: ${outcome.changed.join(", ")}` : ""),
        );
      } catch (error) {
        problem(errorMessage(error));
      }
    }
  } finally {
    await store.close();
  }
}

async function listCommand(flags: Flags) {
  await withStore(flags, async (store, prefix) => {
    const { pins, invalid } = await listPins(store, prefix);
    if (pins.length === 0 && invalid.length === 0) report("no plugins pinned");
    for (const pin of pins) {
      report(
        `${pin.name} ${pin.version}  ${pin.url}  ${pin.modules.length} modules  pinned ` +
          `${new Date(pin.pinned_at * 1000).toISOString()}  permissions: ${
            describePermissions(pin)
          }`,
      );
    }
    for (const bad of invalid) problem(bad.error.message);
  });
}

async function showCommand(name: string, flags: Flags) {
  await withStore(flags, async (store, prefix) => {
    const pin = await readPin(store, prefix, name);
    if (!pin) return problem(`no pin for plugin "${name}"`);
    report(JSON.stringify(pin, null, 2));
  });
}

async function verifyCommand(names: string[], flags: Flags) {
  const settings = await settingsOf(flags);
  const cache = new ModuleCache(pluginCacheDir(settings.stateDir));
  await withStore(flags, async (store, prefix) => {
    const { pins, invalid } = await listPins(store, prefix);
    for (const bad of invalid) problem(bad.error.message);
    const chosen = names.length > 0 ? pins.filter((p) => names.includes(p.name)) : pins;
    for (const name of names) {
      if (!pins.some((p) => p.name === name)) problem(`no pin for plugin "${name}"`);
    }
    for (const pin of chosen) {
      try {
        await collectVerified(pin, { refetch: true });
        let cached = 0;
        for (const module of pin.modules) {
          const entry = await cache.read(module.integrity);
          if (entry.status === "hit") cached++;
          if (entry.status === "corrupt") {
            problem(`plugin "${pin.name}": cached copy of ${module.url} was corrupt; removed it`);
          }
        }
        report(
          `${pin.name} ${pin.version}: ok, all ${pin.modules.length} published modules match the ` +
            `pin (${cached} cached)`,
        );
      } catch (error) {
        problem(errorMessage(error));
      }
    }
  });
}

async function removeCommand(name: string, flags: Flags) {
  await withStore(flags, async (store, prefix) => {
    if (await deletePin(store, prefix, name)) report(`${name}: pin removed`);
    else problem(`no pin for plugin "${name}"`);
  });
}

interface TryFlags extends Flags {
  version?: string;
  pluginConfig?: string;
  sample?: string[];
  allowNet?: string;
  allowRead?: string;
  allowEnv?: string;
  timeout?: string;
}

function parseJson(text: string | undefined, flag: string, fallback: unknown): unknown {
  if (text === undefined) return fallback;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(
      `${flag}: expected JSON, found ${JSON.stringify(text)} (${errorMessage(error)})`,
    );
  }
}

function list(text: string | undefined): string[] {
  return (text ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
}

async function tryCommand(url: string, flags: TryFlags) {
  const settings = await settingsOf(flags);
  const config = parseJson(flags.pluginConfig, "--plugin-config", {});
  // Several --sample run in order through one instance, so a stateful plugin shows its state.
  const samples = (flags.sample ?? []).length === 0
    ? [{ timestamp: Date.now() / 1000, metrics: { cpu: 12.5, memory: 40.1 } }]
    : flags.sample!.map((text, i) =>
      parseJson(text, flags.sample!.length > 1 ? `--sample #${i + 1}` : "--sample", undefined)
    );
  const cacheDir = pluginCacheDir(settings.stateDir);
  const { pin } = await buildPin("try", {
    url,
    version: flags.version,
    permissions: {
      net: list(flags.allowNet),
      read: list(flags.allowRead).map((p) => resolve(p)),
      env: list(flags.allowEnv),
    },
    config: config as Record<string, unknown>,
  }, { cacheDir });
  report(`resolved ${pin.modules.length} modules (${pin.integrity}):`);
  for (const module of pin.modules) report(`  ${module.url}  ${module.integrity}`);
  const plugin = await loadUrlPlugin(pin, {
    cacheDir,
    timeoutMs: flags.timeout ? Number(flags.timeout) : undefined,
    log: (level, message) => report(`[loader ${level}] ${message}`),
  });
  try {
    report(
      `loaded: reports name ${
        JSON.stringify(plugin.reported.name)
      } version ${plugin.reported.version}`,
    );
    const context: PluginContext = {
      agentId: "try",
      hostname: "localhost",
      interval: 5,
      log: (level, message) => report(`[plugin ${level}] ${message}`),
      emitAlert: (alert) => report(`[alert] ${JSON.stringify(alert)}`),
    };
    await plugin.initialize(config as Record<string, unknown>, context);
    for (const sample of samples) {
      // deno-lint-ignore no-explicit-any
      const out = await plugin.run(sample as any);
      report(`run(${JSON.stringify(sample)}) -> ${JSON.stringify(out)}`);
    }
    await plugin.finalize();
  } finally {
    await plugin.close();
  }
}

function action<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (error) {
      problem(errorMessage(error));
    }
    if (failed) Deno.exitCode = 1;
  };
}

function storeOptions(command: Command): Command {
  return command
    .option("--config <file>", "monitor.yaml to read (default: ./monitor.yaml when it exists)")
    .option("--store-backend <backend>", "embedded | etcd")
    .option("--store-endpoints <list>", "etcd endpoints, host:port,host:port")
    .option("--store-prefix <prefix>", "key prefix in the store (default: /monitor)")
    .option("--state-dir <dir>", "state directory (default: .monitor next to monitor.yaml)")
    .option("--log-level <level>", "debug | info | warn | error (default: log_level, else info)")
    .option(
      "--log-format <format>",
      "text | json, one object a line (default: log_format, else text)",
    );
}

async function main() {
  const program = new Command()
    .name("deno task plugins")
    .description("Pin, inspect, verify and try plugins loaded by URL.")
    .addHelpText("after", EXAMPLES)
    .showHelpAfterError();
  storeOptions(
    program.command("pin [names...]")
      .description("pin the plugins declared in monitor.yaml (all when no name is given)")
      .option("--force", "re-pin the same URL and version even though its bytes changed"),
  ).action(action((names: string[], flags: Flags) => pinCommand(names, flags)));
  storeOptions(program.command("list").description("list the pins in the store"))
    .action(action((flags: Flags) => listCommand(flags)));
  storeOptions(program.command("show <name>").description("print one pin as JSON"))
    .action(action((name: string, flags: Flags) => showCommand(name, flags)));
  storeOptions(
    program.command("verify [names...]")
      .description("fetch the pinned modules now and compare them with the pins; check the cache"),
  ).action(action((names: string[], flags: Flags) => verifyCommand(names, flags)));
  storeOptions(program.command("remove <name>").description("delete a pin"))
    .action(action((name: string, flags: Flags) => removeCommand(name, flags)));
  storeOptions(
    program.command("try <url>")
      .description("resolve, verify and run a plugin once in its sandbox, without pinning it")
      .option("--version <version>", "version, when the URL carries none")
      .option("--plugin-config <json>", "settings passed to initialize()", undefined)
      .option(
        "--sample <json>",
        "a sample passed to run(); repeat it to run several in order through one instance",
        (value: string, previous: string[] = []) => [...previous, value],
      )
      .option("--allow-net <hosts>", "hosts the plugin may reach (comma-separated)")
      .option("--allow-read <paths>", "paths the plugin may read (comma-separated)")
      .option("--allow-env <names>", "environment variables the plugin may read")
      .option("--timeout <ms>", "time budget of run()"),
  ).action(action((url: string, flags: TryFlags) => tryCommand(url, flags)));
  await program.parseAsync(["deno", "plugins", ...Deno.args]);
}

if (import.meta.main) {
  await main();
}
