/**
 * Shell completion scripts for `deno task <task> [flags]`, generated from
 * what each task's `--help` lists ({@linkcode TaskHelp}). Static: pressing
 * Tab runs no Deno. No I/O.
 *
 * - bash: completes task names, subcommands (`deno task plugins <Tab>`),
 *   flags, listed values (`--log-format <Tab>` gives `text json`) and paths
 *   for file and folder values; every other `deno …` goes to the completion
 *   that was registered for `deno` before (e.g. `deno completions bash`).
 * - zsh: the bash script through `bashcompinit`.
 * - fish: `complete -c deno` entries (fish adds them to deno's own).
 *
 * @module
 */
import type { HelpOption, TaskHelp } from "./help.ts";

/** A task and what it accepts. */
export interface TaskCompletion {
  name: string;
  description: string;
  /** The task's own flags and subcommands (none for tasks without a help of their kind). */
  help?: TaskHelp;
  /** Each subcommand's help, by name. */
  subcommands?: Record<string, TaskHelp>;
}

/** The shells {@linkcode completionScript} writes for. */
export const SHELLS = ["bash", "zsh", "fish"] as const;
/** One of {@linkcode SHELLS}. */
export type Shell = typeof SHELLS[number];

const PATH_VALUE = /file|dir|path|folder|config/i;

function safeWord(word: string): string {
  if (!/^[\w.:/@+-]+$/.test(word)) throw new TypeError(`not a plain word: ${JSON.stringify(word)}`);
  return word;
}

function words(list: readonly string[]): string {
  return list.map(safeWord).join(" ");
}

/** `case` arms of bash: the values each value-taking option offers. */
function bashValueCases(options: readonly HelpOption[]): string[] {
  const arms: string[] = [];
  for (const option of options) {
    if (!option.takesValue) continue;
    const names = [option.flag, ...(option.short ? [option.short] : [])].map(safeWord).join("|");
    if (option.choices.length > 0) {
      arms.push(
        `        ${names}) COMPREPLY=($(compgen -W "${
          words(option.choices)
        }" -- "$cur")); return ;;`,
      );
    } else if (PATH_VALUE.test(option.placeholder ?? "")) {
      arms.push(`        ${names}) COMPREPLY=($(compgen -f -- "$cur")); return ;;`);
    } else arms.push(`        ${names}) return ;;`);
  }
  return arms;
}

function flagWords(help: TaskHelp | undefined): string {
  return words((help?.options ?? []).map((o) => o.flag));
}

/** The bash script. */
export function bashScript(tasks: readonly TaskCompletion[]): string {
  const lines = [
    "# Completion of `deno task <task> [flags]` for this project (deno task completions bash).",
    "# Load it with: source <(deno task completions bash)   or save it under ~/.local/share/bash-completion/completions/deno",
    "",
    "# deno's own completion, if one was registered before: used for everything but `deno task`.",
    "_monitor_deno_previous=$(complete -p deno 2>/dev/null | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')",
    "",
    "_monitor_deno_task() {",
    '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
    '  if [[ "${COMP_WORDS[1]}" != task ]] || (( COMP_CWORD < 2 )); then',
    '    if [[ -n "$_monitor_deno_previous" ]]; then "$_monitor_deno_previous" "$@"; fi',
    "    return",
    "  fi",
    "  if (( COMP_CWORD == 2 )); then",
    `    COMPREPLY=($(compgen -W "${words(tasks.map((t) => t.name))}" -- "$cur"))`,
    "    return",
    "  fi",
    '  case "${COMP_WORDS[2]}" in',
  ];
  for (const task of tasks) {
    if (!task.help) continue;
    lines.push(`    ${safeWord(task.name)})`);
    const subs = Object.entries(task.subcommands ?? {});
    if (subs.length > 0) {
      lines.push(
        "      if (( COMP_CWORD == 3 )); then",
        `        COMPREPLY=($(compgen -W "${words(subs.map(([name]) => name))} ${
          flagWords(task.help)
        }" -- "$cur"))`,
        "        return",
        "      fi",
        '      case "${COMP_WORDS[3]}" in',
      );
      for (const [name, help] of subs) {
        lines.push(
          `        ${safeWord(name)})`,
          '          case "$prev" in',
          ...bashValueCases(help.options).map((arm) => `    ${arm}`),
          "          esac",
          `          COMPREPLY=($(compgen -W "${flagWords(help)}" -- "$cur")) ;;`,
        );
      }
      lines.push("      esac", "      ;;");
      continue;
    }
    lines.push(
      '      case "$prev" in',
      ...bashValueCases(task.help.options),
      "      esac",
      `      COMPREPLY=($(compgen -W "${flagWords(task.help)}" -- "$cur"))`,
      "      ;;",
    );
  }
  lines.push(
    "  esac",
    "}",
    "complete -o default -F _monitor_deno_task deno",
    "",
  );
  return lines.join("\n");
}

/** The zsh script: the bash one through bashcompinit. */
export function zshScript(tasks: readonly TaskCompletion[]): string {
  return [
    "# Completion of `deno task <task> [flags]` for this project (deno task completions zsh).",
    "autoload -U +X compinit && compinit",
    "autoload -U +X bashcompinit && bashcompinit",
    bashScript(tasks),
  ].join("\n");
}

function fishQuote(text: string): string {
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function fishOption(condition: string, option: HelpOption): string {
  const parts = [
    `complete -c deno -n ${fishQuote(condition)}`,
    `-l ${safeWord(option.flag.slice(2))}`,
  ];
  if (option.short) parts.push(`-s ${safeWord(option.short.slice(1))}`);
  if (option.takesValue) {
    parts.push("-r");
    if (option.choices.length > 0) parts.push(`-f -a ${fishQuote(words(option.choices))}`);
    else if (!PATH_VALUE.test(option.placeholder ?? "")) parts.push("-f");
  }
  parts.push(`-d ${fishQuote(option.description.slice(0, 80))}`);
  return parts.join(" ");
}

/** The fish script. */
export function fishScript(tasks: readonly TaskCompletion[]): string {
  const names = words(tasks.map((t) => t.name));
  const lines = [
    "# Completion of `deno task <task> [flags]` for this project (deno task completions fish).",
  ];
  for (const task of tasks) {
    lines.push(
      `complete -c deno -n ${
        fishQuote(`__fish_seen_subcommand_from task; and not __fish_seen_subcommand_from ${names}`)
      } -f -a ${fishQuote(task.name)} -d ${fishQuote(task.description.slice(0, 80))}`,
    );
    if (!task.help) continue;
    const inTask = `__fish_seen_subcommand_from task; and __fish_seen_subcommand_from ${
      safeWord(task.name)
    }`;
    const subs = Object.entries(task.subcommands ?? {});
    if (subs.length > 0) {
      const subNames = words(subs.map(([name]) => name));
      lines.push(
        `complete -c deno -n ${
          fishQuote(`${inTask}; and not __fish_seen_subcommand_from ${subNames}`)
        } -f -a ${fishQuote(subNames)}`,
      );
      for (const [name, help] of subs) {
        const inSub = `${inTask}; and __fish_seen_subcommand_from ${safeWord(name)}`;
        for (const option of help.options) lines.push(fishOption(inSub, option));
      }
    } else {
      for (const option of task.help.options) lines.push(fishOption(inTask, option));
    }
  }
  return lines.join("\n") + "\n";
}

/** The script for `shell`. */
export function completionScript(shell: Shell, tasks: readonly TaskCompletion[]): string {
  return shell === "bash"
    ? bashScript(tasks)
    : shell === "zsh"
    ? zshScript(tasks)
    : fishScript(tasks);
}
