/**
 * The console shell shared by every service: a `node:readline` prompt with
 * history kept across runs, tab completion of commands and their arguments,
 * log lines printed above the prompt (never through it), an optional status
 * area redrawn in place above the prompt (the analysis live view), and a
 * line mode for piped input (each line is a command; end of input quits).
 *
 * @module
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import * as readline from "node:readline";
import type { Readable, Writable } from "node:stream";
import { didYouMean } from "../config/issues.ts";
import { errorMessage, type LogLevel, setLogSink } from "../common/log.ts";
import { appendPrivateFile, writePrivateFile } from "../common/state_files.ts";
import { COLOR, PLAIN, type Style, truncate } from "./format.ts";
import { InquirerPrompter, type Prompter } from "./prompts.ts";

/** A command line split into words; `rest(n)` is the raw text after the first n arguments. */
export interface CommandLine {
  /** The command word. */
  name: string;
  /** The arguments, split on spaces (quotes group words). */
  args: string[];
  /** The raw text after the first `n` arguments (for trailing JSON). */
  rest(n: number): string;
}

/** What a running command can do. */
export interface CommandIO {
  /** Prints text (above the prompt). */
  print(text: string): void;
  /** Prints an error. */
  error(text: string): void;
  /** True when a person is at a terminal: prompts and colors are available. */
  readonly interactive: boolean;
  /** Styles (colored on terminals). */
  readonly style: Style;
  /** Interactive prompts (only when `interactive`). */
  readonly prompt: Prompter;
  /** Ends the console after this command. */
  quit(): void;
}

/** One console command. */
export interface CommandSpec {
  /** The command word, e.g. `send`. */
  name: string;
  /** Usage, e.g. `send <agent|all> <command> [json args]`. */
  usage: string;
  /** One line on what it does. */
  summary: string;
  /** Completion candidates for argument `index` (0-based) after the given earlier arguments. */
  complete?(index: number, args: string[]): string[] | Promise<string[]>;
  /** Runs the command; errors thrown are printed as `error: ...`. */
  run(line: CommandLine, io: CommandIO): void | Promise<void>;
}

/** Options of {@linkcode startConsole}. */
export interface ConsoleOptions {
  /** Shown in the prompt: `<name>> `. */
  name: string;
  /** The commands (`help` and `quit` are added unless given). */
  commands: CommandSpec[];
  /** Input. Default: the process's stdin. */
  input?: Readable;
  /** Output. Default: the process's stdout. */
  output?: Writable;
  /**
   * Terminal mode (prompt, completion, colors, prompts, status area). Default:
   * whether input and output are terminals. False gives line mode.
   */
  terminal?: boolean;
  /** File that keeps the history across runs (created with its directory). */
  historyFile?: string;
  /** Entries kept. Default 500. */
  historySize?: number;
  /** Route log lines (services/common/log.ts) above the prompt. Default true. */
  captureLogs?: boolean;
  /** Echo each command in line mode (`name> command`). Default true. */
  echo?: boolean;
  /** Colors on terminals. Default: terminal mode and no NO_COLOR. */
  color?: boolean;
  /** Prompt implementation (default: @inquirer/prompts on the same terminal). */
  prompter?: Prompter;
  /** Where `config` writes the copy $VISUAL/$EDITOR opens (default: the system's temp folder). */
  editDir?: string;
  /** Ask "really quit?" before quitting from a terminal (e.g. when quit stops services). */
  confirmQuit?: string;
}

/** A running console. */
export interface Console {
  /** True in terminal mode. */
  readonly interactive: boolean;
  /** Prints text above the prompt. */
  print(text: string): void;
  /** Sets the status area shown above the prompt (terminal mode only; ignored otherwise). */
  setStatus(lines: string[]): void;
  /** Runs one command line as if typed. */
  execute(line: string): Promise<void>;
  /** Resolves when the console ended (quit, end of input, or close()). */
  readonly done: Promise<void>;
  /** Ends the console and restores the log output. */
  close(): void;
}

/** Splits a command line into words (double or single quotes group words). */
export function parseCommandLine(text: string): CommandLine | undefined {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  const words: Array<{ word: string; end: number }> = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (let m = pattern.exec(trimmed); m; m = pattern.exec(trimmed)) {
    const word = m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2] ?? m[3];
    words.push({ word, end: m.index + m[0].length });
  }
  const [first, ...rest] = words;
  return {
    name: first.word,
    args: rest.map((w) => w.word),
    rest(n: number) {
      const after = n === 0 ? first.end : rest[n - 1]?.end;
      return after === undefined ? "" : trimmed.slice(after).trim();
    },
  };
}

/** Reads the history file: newest entry first (readline's order). */
function loadHistory(file: string | undefined, size: number): string[] {
  if (!file) return [];
  try {
    const lines = readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "");
    return lines.slice(-size).reverse();
  } catch {
    return [];
  }
}

/** Starts a console; it reads commands until `quit`, end of input or close(). */
export function startConsole(options: ConsoleOptions): Console {
  const input: Readable = options.input ?? process.stdin;
  const output: Writable = options.output ?? process.stdout;
  const terminal = options.terminal ??
    Boolean((input as { isTTY?: boolean }).isTTY && (output as { isTTY?: boolean }).isTTY);
  const noColor = (() => {
    try {
      return Deno.env.get("NO_COLOR") !== undefined;
    } catch {
      return false;
    }
  })();
  const style = (options.color ?? (terminal && !noColor)) ? COLOR : PLAIN;
  const historySize = options.historySize ?? 500;
  const promptText = `${options.name}> `;
  const prompter = options.prompter ?? new InquirerPrompter(input, output, options.editDir);

  const commands = new Map<string, CommandSpec>();
  for (const spec of options.commands) commands.set(spec.name, spec);
  if (!commands.has("help")) {
    commands.set("help", {
      name: "help",
      usage: "help [command]",
      summary: "list the commands, or show how to use one",
      complete: (index) => index === 0 ? [...commands.keys()] : [],
      run(line, io) {
        const wanted = line.args[0];
        if (wanted) {
          const spec = commands.get(wanted);
          if (!spec) throw new Error(unknownCommand(wanted));
          io.print(`${spec.usage}\n  ${spec.summary}`);
          return;
        }
        const specs = [...commands.values()];
        const width = Math.max(...specs.map((s) => s.usage.length));
        io.print(specs.map((s) => `  ${s.usage.padEnd(width)}  ${s.summary}`).join("\n"));
      },
    });
  }
  if (!commands.has("quit")) {
    commands.set("quit", {
      name: "quit",
      usage: "quit",
      summary: "leave the console",
      async run(_line, io) {
        if (io.interactive && options.confirmQuit) {
          if (!(await io.prompt.confirm(options.confirmQuit, false))) return;
        }
        io.quit();
      },
    });
  }

  const unknownCommand = (name: string) => {
    const names = [...commands.keys()];
    const hint = didYouMean(name, names);
    return `unknown command ${JSON.stringify(name)}: expected one of ${names.join(", ")}${
      hint ? ` (did you mean "${hint}"?)` : ""
    }`;
  };

  let history = loadHistory(options.historyFile, historySize);
  let rl: readline.Interface | undefined;
  let status: string[] = [];
  let shownStatus = 0;
  let promptShown = false;
  let suspended = false;
  let held: string[] = [];
  let quitting = false;
  let finished = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => resolveDone = resolve);
  const queue: string[] = [];
  let running = false;
  let inputEnded = false;

  const write = (text: string) => {
    try {
      output.write(text);
    } catch { /* output closed */ }
  };
  // A terminal that reports no size (e.g. a pseudo-terminal nobody sized) counts as 120 wide.
  const columns = () => {
    const reported = (output as { columns?: number }).columns;
    return reported && reported >= 20 ? reported : 120;
  };

  /** Erases the status area and the prompt line so text can be printed above them. */
  const clearArea = () => {
    if (!terminal) return;
    readline.cursorTo(output, 0);
    if (promptShown && rl) {
      const rows = (rl as unknown as { getCursorPos?: () => { rows: number } }).getCursorPos?.()
        .rows ?? 0;
      if (rows > 0) readline.moveCursor(output, 0, -rows);
    }
    if (shownStatus > 0) readline.moveCursor(output, 0, -shownStatus);
    readline.clearScreenDown(output);
    shownStatus = 0;
  };

  /** Draws the status area and the prompt (with the line being typed). */
  const drawArea = () => {
    if (!terminal || finished) return;
    if (status.length > 0 && !running) {
      const width = Math.max(10, columns() - 1);
      for (const line of status) write(truncate(line, width) + "\n");
      shownStatus = status.length;
    }
    if (promptShown && rl) rl.prompt(true);
  };

  const print = (text: string) => {
    if (finished) {
      write(text.endsWith("\n") ? text : text + "\n");
      return;
    }
    if (suspended) {
      held.push(text);
      return;
    }
    clearArea();
    write(text.endsWith("\n") ? text : text + "\n");
    drawArea();
  };

  const io: CommandIO = {
    print,
    error: (text) => print(style.red(`error: ${text}`)),
    interactive: terminal,
    style,
    prompt: {
      select: (message, choices, fallback) =>
        suspend(() => prompter.select(message, choices, fallback)),
      input: (message, fallback, validate) =>
        suspend(() => prompter.input(message, fallback, validate)),
      confirm: (message, fallback) => suspend(() => prompter.confirm(message, fallback)),
      edit: (message, text, validate) => suspend(() => prompter.edit(message, text, validate)),
    },
    quit() {
      quitting = true;
    },
  };

  /** Closes readline while a prompt owns the terminal, then reopens it. */
  async function suspend<T>(fn: () => Promise<T>): Promise<T> {
    if (!terminal) throw new Error("interactive prompts need a terminal");
    suspended = true;
    clearArea();
    closeReadline();
    try {
      return await fn();
    } finally {
      suspended = false;
      const pending = held;
      held = [];
      openReadline();
      for (const text of pending) write(text.endsWith("\n") ? text : text + "\n");
    }
  }

  const complete = async (line: string): Promise<[string[], string]> => {
    const words = line.trimStart().split(/\s+/);
    const current = words[words.length - 1] ?? "";
    if (words.length <= 1) {
      return [
        [...commands.keys()].filter((n) => n.startsWith(current)).map((n) => n + " "),
        current,
      ];
    }
    const spec = commands.get(words[0]);
    if (!spec?.complete) return [[], current];
    try {
      const candidates = await spec.complete(words.length - 2, words.slice(1, -1));
      // Like commands, a completed argument ends with a space so the next one can be typed.
      return [
        [...new Set(candidates)].filter((c) => c.startsWith(current)).map((c) => c + " "),
        current,
      ];
    } catch {
      return [[], current];
    }
  };

  const remember = (line: string) => {
    if (!options.historyFile || line.trim() === "") return;
    try {
      appendPrivateFile(options.historyFile, line.replace(/\n/g, " ").trim() + "\n");
    } catch { /* history is best effort */ }
  };

  const execute = async (text: string) => {
    const line = parseCommandLine(text);
    if (!line) return;
    const spec = commands.get(line.name);
    try {
      if (!spec) throw new Error(unknownCommand(line.name));
      await spec.run(line, io);
    } catch (error) {
      io.error(errorMessage(error));
    }
  };

  const pump = async () => {
    if (running) return;
    running = true;
    try {
      while (queue.length > 0 && !quitting && !finished) {
        const text = queue.shift()!;
        if (!terminal && (options.echo ?? true) && text.trim() !== "") {
          write(`${promptText}${text.trim()}\n`);
        }
        await execute(text);
      }
    } finally {
      running = false;
    }
    if (quitting || (inputEnded && queue.length === 0)) {
      close();
      return;
    }
    if (terminal && !suspended && !finished) {
      promptShown = true;
      drawArea();
    }
  };

  function openReadline() {
    if (finished) return;
    const created = readline.createInterface({
      input,
      output: terminal ? output : undefined,
      terminal,
      history: terminal ? history : undefined,
      historySize,
      removeHistoryDuplicates: true,
      completer: terminal
        ? (line: string, callback: (error: Error | null, result: [string[], string]) => void) => {
          complete(line).then((r) => callback(null, r), () => callback(null, [[], line]));
        }
        : undefined,
    } as readline.ReadLineOptions);
    rl = created;
    created.setPrompt(promptText);
    created.on("history", (entries: string[]) => {
      history = entries;
    });
    created.on("line", (text: string) => {
      if (created !== rl) return;
      promptShown = false;
      shownStatus = 0;
      if (terminal) remember(text);
      queue.push(text);
      void pump();
    });
    created.on("SIGINT", () => {
      if (created.line.length > 0) {
        write("^C\n");
        created.write("", { ctrl: true, name: "u" });
        created.prompt();
        return;
      }
      write("\n");
      quitting = true;
      close();
    });
    created.on("close", () => {
      if (created !== rl || suspended) return;
      // End of input (Ctrl-D or the pipe closed): finish queued commands, then quit.
      inputEnded = true;
      if (!running) void pump();
    });
    if (terminal && !running) {
      promptShown = true;
      drawArea();
    }
  }

  function closeReadline() {
    const current = rl;
    rl = undefined;
    promptShown = false;
    current?.close();
  }

  const previousSinkInstalled = options.captureLogs ?? true;
  if (previousSinkInstalled) {
    setLogSink((line: string, level: LogLevel) => {
      if (level === "error") print(style.red(line));
      else if (level === "warn") print(style.yellow(line));
      else print(line);
    });
  }

  function close() {
    if (finished) return;
    clearArea();
    finished = true;
    closeReadline();
    if (previousSinkInstalled) setLogSink(undefined);
    if (options.historyFile && terminal) {
      try {
        const kept = loadHistory(options.historyFile, historySize).reverse();
        writePrivateFile(options.historyFile, kept.join("\n") + (kept.length ? "\n" : ""));
      } catch { /* best effort */ }
    }
    resolveDone();
  }

  openReadline();

  return {
    interactive: terminal,
    print,
    setStatus(lines: string[]) {
      if (!terminal || finished) return;
      status = lines;
      if (suspended || running) return;
      clearArea();
      drawArea();
    },
    execute,
    done,
    close,
  };
}
