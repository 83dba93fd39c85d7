/**
 * What a process hosting a console needs from Deno's permission system.
 *
 * @module
 */

/**
 * Environment variables the consoles read: terminal type and color support
 * (read by @inquirer/prompts, commander and node:tty on a terminal), the editor
 * for `config`. Found by running the consoles in a pseudo-terminal with
 * `--no-prompt` until no variable was refused.
 */
export const CONSOLE_ENV_VARS: readonly string[] = Object.freeze([
  "TERM",
  "NO_COLOR",
  "FORCE_COLOR",
  "NODE_DISABLE_COLORS",
  "COLORTERM",
  "TERM_PROGRAM",
  "TMUX",
  "CI",
  "TF_BUILD",
  "TEAMCITY_VERSION",
  "INQUIRER_KEYBINDINGS",
  "CLI_WIDTH",
  "CLICOLOR_FORCE",
  "EDITOR",
  "VISUAL",
]);

/** Where the editor of `config` is named, first found wins (as git and less do). */
export const EDITOR_ENV_VARS: readonly string[] = Object.freeze(["VISUAL", "EDITOR"]);

/**
 * The editor command `config` runs ($VISUAL, else $EDITOR), split into the
 * program and its arguments; undefined when neither is set.
 *
 * @example
 * ```ts
 * import { editorCommand } from "./permissions.ts";
 * const env = { EDITOR: "code --wait" } as Record<string, string>;
 * console.assert(editorCommand((n) => env[n])?.program === "code");
 * ```
 */
export function editorCommand(
  env: (name: string) => string | undefined,
): { program: string; args: string[] } | undefined {
  for (const name of EDITOR_ENV_VARS) {
    const words = (env(name) ?? "").split(/\s+/).filter((w) => w !== "");
    if (words.length > 0) return { program: words[0], args: words.slice(1) };
  }
  return undefined;
}

/**
 * What a process hosting a console with `config` needs to start the editor
 * named in `env`: running that one program. The edited copy goes to
 * `<state_dir>/edit/` (see {@linkcode consoleEditDir}), which the process
 * may already write.
 */
export function consoleEditorPermissions(
  env: (name: string) => string | undefined,
): { run: string[] } {
  const editor = editorCommand(env);
  return { run: editor ? [editor.program] : [] };
}

/**
 * The editor program of the environment this process runs in ($VISUAL, else
 * $EDITOR), for a launcher computing a console host's permissions; undefined
 * when none is set or the variables may not be read.
 */
export function environmentEditor(): string | undefined {
  return editorCommand((name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  })?.program;
}

/** The private folder (0700) where `config` writes the copy the editor opens. */
export function consoleEditDir(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/edit`;
}
