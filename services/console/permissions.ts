/**
 * What a process hosting a console needs from Deno's permission system.
 *
 * @module
 */

/**
 * Environment variables the consoles read: terminal type (read by
 * @inquirer/prompts when loaded), colors, and the editor for `config`.
 */
export const CONSOLE_ENV_VARS: readonly string[] = Object.freeze([
  "TERM",
  "NO_COLOR",
  "EDITOR",
  "VISUAL",
]);
