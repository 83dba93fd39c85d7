/**
 * Consoles: the shell shared by the services ({@linkcode startConsole}), the
 * `send` command the broker's and the analysis application's command sets
 * share, prompts and terminal formatting. The command sets themselves live
 * with their services (services/broker/console.ts,
 * services/analysis/console.ts).
 *
 * @module
 */
export {
  parseArgs,
  resultLine,
  SEND_USAGE,
  type Sender,
  sendSpec,
  summaryLine,
} from "./commands.ts";
export {
  type CommandIO,
  type CommandLine,
  type CommandSpec,
  type Console,
  type ConsoleOptions,
  parseCommandLine,
  startConsole,
} from "./repl.ts";
export { type Choice, InquirerPrompter, PromptCancelled, type Prompter } from "./prompts.ts";
export * from "./format.ts";
export { CONSOLE_ENV_VARS } from "./permissions.ts";
