/**
 * Interactive prompts for consoles on a terminal, built on
 * `@inquirer/prompts`: choosing among options, typing a value with
 * validation, confirming, and editing a document ($EDITOR, or an inline
 * prompt when no editor can be started).
 *
 * @module
 */
import { ensurePrivateDir } from "../common/state_files.ts";
import { editorCommand } from "./permissions.ts";
import { confirm, input, select } from "@inquirer/prompts";
import type { Readable, Writable } from "node:stream";
import { errorMessage } from "../common/log.ts";

/** One option of a selection. */
export interface Choice {
  /** Shown text. */
  name: string;
  /** Returned value. */
  value: string;
  /** Shown under the list while highlighted. */
  description?: string;
}

/** Checks typed text: true when acceptable, else what was expected. */
export type Validate = (value: string) => true | string;

/** Interactive prompts. Each rejects with {@linkcode PromptCancelled} on Ctrl-C. */
export interface Prompter {
  /** Picks one of `choices`. */
  select(message: string, choices: Choice[], fallback?: string): Promise<string>;
  /** Reads a line of text. */
  input(message: string, fallback?: string, validate?: Validate): Promise<string>;
  /** Asks yes or no. */
  confirm(message: string, fallback?: boolean): Promise<boolean>;
  /** Lets the user edit `text` ($EDITOR when set and allowed, else inline). */
  edit(message: string, text: string, validate?: Validate): Promise<string>;
}

/** The user cancelled a prompt (Ctrl-C). */
export class PromptCancelled extends Error {
  constructor() {
    super("cancelled");
    this.name = "PromptCancelled";
  }
}

function cancelled(error: unknown): never {
  const name = error instanceof Error ? error.name : "";
  if (name === "ExitPromptError" || name === "AbortPromptError") throw new PromptCancelled();
  throw error;
}

/** Reads an environment variable; undefined when unset or not allowed. */
function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Prompts with @inquirer/prompts on the given streams. */
export class InquirerPrompter implements Prompter {
  #context: {
    input: NodeJS.ReadableStream;
    output: NodeJS.WritableStream;
    clearPromptOnDone: boolean;
  };

  #editDir: string | undefined;

  /**
   * @param inputStream the terminal's input @param outputStream the terminal's output
   * @param editDir where the copy the editor opens is written (a private folder, created 0700);
   *   default the system's temporary folder
   */
  constructor(inputStream: Readable, outputStream: Writable, editDir?: string) {
    this.#editDir = editDir;
    this.#context = {
      input: inputStream as unknown as NodeJS.ReadableStream,
      output: outputStream as unknown as NodeJS.WritableStream,
      clearPromptOnDone: false,
    };
  }

  select(message: string, choices: Choice[], fallback?: string): Promise<string> {
    return select({ message, choices, default: fallback, loop: false }, this.#context).catch(
      cancelled,
    );
  }

  input(message: string, fallback?: string, validate?: Validate): Promise<string> {
    return input({
      message,
      default: fallback,
      prefill: fallback !== undefined ? "editable" : undefined,
      validate: validate ? (value: string) => validate(value) : undefined,
    }, this.#context).catch(cancelled);
  }

  confirm(message: string, fallback = false): Promise<boolean> {
    return confirm({ message, default: fallback }, this.#context).catch(cancelled);
  }

  async edit(message: string, text: string, validate?: Validate): Promise<string> {
    const command = editorCommand(envVar);
    const editor = command ? [command.program, ...command.args].join(" ") : undefined;
    if (command && editor) {
      try {
        return await this.#external(command, text, validate);
      } catch (error) {
        if (error instanceof PromptCancelled) throw error;
        (this.#context.output as unknown as Writable).write(
          `could not start ${editor} (${errorMessage(error)}); editing inline instead\n`,
        );
      }
    }
    const inline = text.includes("\n") ? JSON.stringify(JSON.parse(text)) : text;
    return await this.input(`${message} (one line of JSON)`, inline, validate);
  }

  async #external(
    { program, args }: { program: string; args: string[] },
    text: string,
    validate?: Validate,
  ): Promise<string> {
    if (this.#editDir) ensurePrivateDir(this.#editDir, { own: true });
    const file = await Deno.makeTempFile({
      dir: this.#editDir,
      prefix: "monitor-edit-",
      suffix: ".json",
    });
    try {
      await Deno.writeTextFile(file, text.endsWith("\n") ? text : text + "\n");
      while (true) {
        const status = await new Deno.Command(program, {
          args: [...args, file],
          stdin: "inherit",
          stdout: "inherit",
          stderr: "inherit",
        }).output();
        if (!status.success) throw new Error(`${program} exited with code ${status.code}`);
        const edited = await Deno.readTextFile(file);
        const verdict = validate ? validate(edited) : true;
        if (verdict === true) return edited;
        (this.#context.output as unknown as Writable).write(`${verdict}\n`);
        if (!(await this.confirm("Edit again?", true))) throw new PromptCancelled();
      }
    } finally {
      await Deno.remove(file).catch(() => {});
    }
  }
}
