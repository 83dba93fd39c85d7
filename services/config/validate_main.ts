/**
 * `deno task validate [file]`: checks a monitor.yaml (default ./monitor.yaml).
 * Valid: prints the resolved configuration (defaults filled in) and exits 0.
 * Invalid: prints every issue as `file:line:col: path: expected X, found Y`
 * on stderr and exits 1.
 *
 * @module
 */
import { Command, CommanderError } from "commander";
import { ConfigError, formatIssue } from "./issues.ts";
import type { MonitorConfig } from "./monitor_config.ts";
import { loadMonitorConfig } from "./monitor_yaml.ts";
import { renderMonitorConfig } from "./render.ts";

/** Extra outputs another module can plug into the validate command. */
export interface ValidateHooks {
  /**
   * When given, `--print-commands` is accepted and prints what this returns
   * (for example the supervisor's exact command line of each service)
   * instead of the resolved configuration.
   */
  printCommands?: (config: MonitorConfig) => string | Promise<string>;
}

/** Where {@linkcode runValidate} writes. */
export interface ValidateOutput {
  out(text: string): void;
  err(text: string): void;
}

const DESCRIPTION = `Checks a monitor.yaml (default: ./monitor.yaml). When it is valid, prints the
resolved configuration with every default filled in and exits 0. Otherwise
prints each problem as

  file:line:column: key.path: expected X, found Y (did you mean ...?)

and exits 1 (2 for a mistake on the command line).`;

const EXAMPLES = `
Examples:
  deno task validate                            # ./monitor.yaml
  deno task validate /etc/monitor/monitor.yaml  # any path: read access to that file only`;

const console_: ValidateOutput = {
  out: (text) => console.log(text),
  err: (text) => console.error(text),
};

/** The command line of `deno task validate`, in the services' style (commander). */
function validateProgram(hooks: ValidateHooks, io: ValidateOutput): Command {
  const program = new Command()
    .name("deno task validate")
    .usage("[file] [options]")
    .description(DESCRIPTION)
    .argument("[file]", "the monitor.yaml to check (default: ./monitor.yaml)")
    .helpOption("-h, --help", "show this help")
    .allowExcessArguments(true)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.out(text.trimEnd()),
      writeErr: (text) => io.err(text.trimEnd()),
    })
    .showHelpAfterError();
  if (hooks.printCommands) {
    program.option(
      "--print-commands",
      "print the command line of each service instead of the configuration",
    );
  }
  return program.addHelpText("after", EXAMPLES);
}

/**
 * Runs the validate command.
 * @param args command-line arguments
 * @param hooks optional extra outputs (`--print-commands`)
 * @param io where to write (default: stdout and stderr)
 * @returns the exit code: 0 valid, 1 invalid, 2 bad usage
 */
export async function runValidate(
  args: readonly string[],
  hooks: ValidateHooks = {},
  io: ValidateOutput = console_,
): Promise<number> {
  const program = validateProgram(hooks, io);
  try {
    program.parse([...args], { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    throw error;
  }
  const files = program.args;
  const printCommands = Boolean(program.opts<{ printCommands?: boolean }>().printCommands);
  if (files.length > 1) {
    io.err(`error: expected at most one file, found ${files.length}: ${files.join(" ")}`);
    return 2;
  }
  const file = files[0] ?? "monitor.yaml";
  let config: MonitorConfig;
  try {
    config = await loadMonitorConfig(file);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const issue of error.issues) io.err(formatIssue(issue, file));
    const n = error.issues.length;
    io.err(`${file}: ${n} problem${n === 1 ? "" : "s"}`);
    return 1;
  }
  if (printCommands && hooks.printCommands) io.out(await hooks.printCommands(config));
  else io.out(renderMonitorConfig(config).trimEnd());
  return 0;
}

if (import.meta.main) {
  Deno.exit(await runValidate(Deno.args));
}
