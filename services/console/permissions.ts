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
