/**
 * Consoles: the shell shared by the services ({@linkcode startConsole}), the
 * broker and analysis command sets, and {@linkcode startAdminConsole}, the
 * console that talks to the broker's admin API over HTTP (the one the
 * supervisor hosts under `deno task up`).
 *
 * Supervisor usage:
 *
 * ```ts
 * import { startAdminConsole } from "./services/console/mod.ts";
 *
 * const console = startAdminConsole({
 *   adminUrl: "127.0.0.1:50053",           // broker --admin address
 *   historyFile: ".monitor/history/console",
 *   confirmQuit: "Stop every service and quit?",
 * });
 * child.stdoutLines.forEach((line) => console.print(line)); // output above the prompt
 * await console.done;                        // quit, Ctrl-D or Ctrl-C on an empty line
 * ```
 *
 * Commands: `help`, `list`, `health`, `stats`, `config <agent> <json>`
 * (also `config <agent>` to show it, `config` alone to pick and edit
 * interactively), `send <agent|all> <command> [json args]` (alone: asks),
 * `quit`. On a terminal: history across runs, tab completion of commands,
 * agent ids and command names, prompts; with piped input (terminal false)
 * each line is a command, echoed as `monitor> <line>`, and end of input quits.
 *
 * @module
 */
import { AdminClient } from "./admin_client.ts";
import { brokerCommands } from "./commands.ts";
import type { Prompter } from "./prompts.ts";
import { type Console, startConsole } from "./repl.ts";
import type { Readable, Writable } from "node:stream";

export {
  AdminApiError,
  adminBaseUrl,
  AdminClient,
  type AdminClientOptions,
} from "./admin_client.ts";
export {
  type AnalysisBackend,
  type BrokerBackend,
  localAnalysisBackend,
  localBrokerBackend,
} from "./backend.ts";
export {
  analysisCommands,
  brokerCommands,
  CONFIG_USAGE,
  parseArgs,
  parseConfigJson,
  SEND_USAGE,
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

/** Options of {@linkcode startAdminConsole}. */
export interface AdminConsoleOptions {
  /** The broker's admin API: `host:port` or `http://host:port` (broker `--admin`). */
  adminUrl: string;
  /** Bearer token when the broker requires one (broker `--admin-token`). */
  token?: string;
  /** Prompt name. Default `monitor` (prompt `monitor> `). */
  name?: string;
  /** History file kept across runs, e.g. `<state_dir>/history/console`. */
  historyFile?: string;
  /** Input. Default: the process's stdin. */
  input?: Readable;
  /** Output. Default: the process's stdout. */
  output?: Writable;
  /** Terminal mode; default: whether stdin and stdout are terminals. False: line mode. */
  terminal?: boolean;
  /** When set, `quit` on a terminal asks this question first (e.g. "Stop every service?"). */
  confirmQuit?: string;
  /** Route this process's log lines above the prompt. Default true. */
  captureLogs?: boolean;
  /** Prompt implementation (default: @inquirer/prompts). */
  prompter?: Prompter;
}

/**
 * Starts a console with the broker commands (the union of the broker's and
 * the analysis console's: `help`, `list`, `health`, `stats`, `config`,
 * `send`, `quit`) talking to the broker's admin API over HTTP. Resolve
 * `done` to learn when the user quit; call `close()` to end it from outside;
 * use `print(line)` to show other output above the prompt without garbling it.
 */
export function startAdminConsole(options: AdminConsoleOptions): Console {
  const client = new AdminClient({ url: options.adminUrl, token: options.token });
  return startConsole({
    name: options.name ?? "monitor",
    commands: brokerCommands(client),
    historyFile: options.historyFile,
    input: options.input,
    output: options.output,
    terminal: options.terminal,
    confirmQuit: options.confirmQuit,
    captureLogs: options.captureLogs,
    prompter: options.prompter,
  });
}
export { CONSOLE_ENV_VARS } from "./permissions.ts";
