/**
 * `deno task broker|agent|analysis|plugins [flags]`: runs one service alone
 * with exactly the permissions its configuration calls for, computed by the
 * same builders as under `deno task up` (services/supervisor/commands.ts).
 *
 * The launcher reads the monitor.yaml given with `--config` (the plugins
 * command also ./monitor.yaml when it exists), writes the flags that stand
 * for settings at their key paths (services/config/flags.ts), resolves and
 * validates the result once, and runs `deno run <permissions> <service>
 * <the same flags>` in the current folder. Like `deno task up`'s launcher it
 * only reads and runs `deno`. With `--help` the service prints its help
 * under the permissions of its defaults.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { errorMessage } from "../common/log.ts";
import { environmentEditor } from "../console/permissions.ts";
import { configFlag, flagOverrides, type FlagService } from "../config/flags.ts";
import { ConfigError, formatIssue } from "../config/issues.ts";
import { resolveConfig } from "../config/monitor_yaml.ts";
import { STANDALONE_NAMES, standaloneCommand } from "./commands.ts";
import { runInForeground } from "./foreground.ts";
import { planFromConfig } from "./from_config.ts";

const USAGE = `usage: run.ts <${STANDALONE_NAMES.join("|")}> [flags of the service]`;

/** True when the arguments ask for help rather than a run. */
function asksHelp(args: readonly string[]): boolean {
  const before = args.indexOf("--");
  const own = before < 0 ? args : args.slice(0, before);
  return own.some((a) => a === "--help" || a === "-h");
}

/** The monitor.yaml a service reads, made absolute (`cwd` for a relative one). */
function configFileOf(name: FlagService, args: readonly string[], cwd: string): string | undefined {
  const given = configFlag(args);
  if (given !== undefined) return resolve(cwd, given);
  // `deno task plugins` reads ./monitor.yaml when it exists (the others only with --config).
  if (name === "plugins" && existsSync(resolve(cwd, "monitor.yaml"))) {
    return resolve(cwd, "monitor.yaml");
  }
  return undefined;
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!(STANDALONE_NAMES as readonly string[]).includes(name)) {
    console.error(USAGE);
    return 2;
  }
  const service = name as FlagService;
  const cwd = Deno.cwd();
  const help = asksHelp(args);
  let command;
  try {
    const file = help ? undefined : configFileOf(service, args, cwd);
    const config = await resolveConfig({
      file,
      cwd,
      flags: help ? [] : flagOverrides(service, args, cwd),
    });
    const deployment = planFromConfig(config, file).deployment;
    // The broker's console may open $VISUAL/$EDITOR for `config`.
    if (service === "broker") deployment.editor = environmentEditor();
    command = standaloneCommand(service, deployment, args, cwd);
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const issue of error.issues) {
        console.error(`${service}: error: ${formatIssue(issue, error.file)}`);
      }
    } else console.error(`${service}: error: ${errorMessage(error)}`);
    return 1;
  }
  return await runInForeground(command);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
