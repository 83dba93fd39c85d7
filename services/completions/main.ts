/**
 * `deno task completions <bash|zsh|fish>`: prints a shell completion script
 * for `deno task <task> [flags]`. Each product task's flags are read from its
 * own `--help` (so they never drift from the programs); the other tasks
 * (test, check, bench, ...) complete by name.
 *
 * ```sh
 * source <(deno task completions bash)        # this shell
 * deno task completions fish > ~/.config/fish/completions/deno-task.fish
 * ```
 *
 * @module
 */
import { Command } from "commander";
import { fileURLToPath } from "node:url";
import { parseHelp, type TaskHelp } from "./help.ts";
import { completionScript, type Shell, SHELLS, type TaskCompletion } from "./scripts.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A task's `--help` (through `deno task`, so with the task's own permissions); undefined when it has none. */
async function helpOf(args: string[]): Promise<TaskHelp | undefined> {
  const out = await new Deno.Command("deno", {
    args: ["task", "-q", ...args, "--help"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!text.startsWith(`Usage: deno task ${args[0]}`)) return undefined;
  return parseHelp(text);
}

/** Every task of deno.json, with the flags of those whose command runs a service CLI. */
export async function collectTasks(): Promise<TaskCompletion[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const entries = Object.entries(
    config.tasks as Record<string, string | { description?: string; command: string }>,
  );
  return await Promise.all(entries.map(async ([name, task]) => {
    const command = typeof task === "string" ? task : task.command;
    const description = typeof task === "string" ? "" : task.description ?? "";
    // The product's commands and the benchmarks; `test`, `check` and the like take deno's flags.
    if (!/services\/|bench\/main\.ts/.test(command) || name === "completions") {
      return { name, description };
    }
    const help = await helpOf([name]);
    const subcommands: Record<string, TaskHelp> = {};
    for (const sub of help?.commands ?? []) {
      const subHelp = await helpOf([name, sub]);
      if (subHelp) subcommands[sub] = subHelp;
    }
    return { name, description, help, subcommands };
  }));
}

async function main() {
  const program = new Command()
    .name("deno task completions")
    .description("Print a shell completion script for deno task <task> [flags] of this project.")
    .argument("<shell>", `${SHELLS.join(" | ")}`)
    .addHelpText(
      "after",
      `
Examples:
  source <(deno task completions bash)                      # bash, this shell
  deno task completions zsh > ~/.zfunc/deno-task.zsh        # zsh (then source it in ~/.zshrc)
  deno task completions fish > ~/.config/fish/completions/deno-task.fish`,
    )
    .showHelpAfterError()
    .parse(Deno.args, { from: "user" });
  const shell = program.args[0];
  if (!(SHELLS as readonly string[]).includes(shell)) {
    program.error(`error: <shell>: expected ${SHELLS.join(", ")}, found ${JSON.stringify(shell)}`);
  }
  console.log(completionScript(shell as Shell, await collectTasks()));
}

if (import.meta.main) {
  await main();
}
