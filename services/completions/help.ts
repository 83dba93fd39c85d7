/**
 * Reads what a task accepts from its own `--help` (commander's layout, the
 * one style every task prints): its options, whether each takes a value, the
 * values it lists (`embedded | etcd`), and its subcommands. The programs stay
 * the one source of their flags. No I/O.
 *
 * @module
 */

/** One option of a task. */
export interface HelpOption {
  /** `--token-file`. */
  flag: string;
  /** `-h` when it has a short form. */
  short?: string;
  /** It takes a value (`<file>`, `[list]`). */
  takesValue: boolean;
  /** The value's placeholder without brackets (`file`), when it takes one. */
  placeholder?: string;
  /** Values the description lists (`debug | info | warn | error`). */
  choices: string[];
  description: string;
}

/** What a task's `--help` shows. */
export interface TaskHelp {
  options: HelpOption[];
  /** Subcommands (`pin`, `try`), without commander's `help`. */
  commands: string[];
}

const OPTION = /^ {2}(?:(-\w), )?(--[\w-]+)(?: ([<[])([^>\]]+)[>\]])?(?: {2,}(.*))?$/;
const COMMAND = /^ {2}([\w][\w-]*)(?: [^ ].*?)?(?: {2,}.*)?$/;

/**
 * Parses commander's help text.
 *
 * @example
 * ```ts
 * import { parseHelp } from "./help.ts";
 * const help = parseHelp("Usage: x [options]\n\nOptions:\n  --log-format <format>  text | json\n");
 * console.assert(help.options[0].choices.join() === "text,json");
 * ```
 */
export function parseHelp(text: string): TaskHelp {
  const options: HelpOption[] = [];
  const commands: string[] = [];
  let section = "";
  for (const line of text.split("\n")) {
    if (/^\S.*:$/.test(line)) {
      section = line.slice(0, -1);
      continue;
    }
    if (/^\S/.test(line)) section = "";
    if (section === "Options") {
      const match = OPTION.exec(line);
      if (match) {
        const [, short, flag, bracket, placeholder, description = ""] = match;
        options.push({
          flag,
          short,
          takesValue: bracket !== undefined,
          placeholder: bracket !== undefined ? placeholder : undefined,
          choices: [],
          description: description.trim(),
        });
      } else if (/^ {4,}\S/.test(line) && options.length > 0) {
        const last = options[options.length - 1];
        last.description = `${last.description} ${line.trim()}`.trim();
      }
    } else if (section === "Commands") {
      const match = COMMAND.exec(line);
      if (match && match[1] !== "help" && !/^ {4,}/.test(line)) commands.push(match[1]);
    }
  }
  for (const option of options) {
    const listed = /^([\w.-]+(?: \| [\w.-]+)+)/.exec(option.description);
    if (option.takesValue && listed) option.choices = listed[1].split(" | ");
  }
  return { options, commands };
}
