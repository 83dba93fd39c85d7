/**
 * Helpers for the services' command lines: the common flags (commander),
 * whether a console runs, the `monitor:ready` line, signal handling and the
 * shutdown every service main ends with ({@linkcode stopOnShutdown}).
 *
 * @module
 */
import type { Command } from "commander";
import process from "node:process";
import {
  errorMessage,
  type LogContext,
  type LogFormat,
  type LogLevel,
  setLogContext,
  setLogFormat,
  setLogLevel,
} from "./log.ts";

/** The common service flags (see the team conventions). */
export interface CommonFlags {
  config?: string;
  storeBackend?: string;
  storeEndpoints?: string;
  storePrefix?: string;
  busBackend?: string;
  busBrokers?: string;
  stateDir?: string;
  logLevel?: string;
  logFormat?: string;
}

/** The flags {@linkcode addCommonOptions} adds, as commander gives them. */
export interface ServiceFlags extends CommonFlags {
  supervised?: boolean;
  console?: boolean;
}

/** Adds the common service flags to a commander program. */
export function addCommonOptions(program: Command): Command {
  return program
    .option("--config <file>", "read settings from this monitor.yaml (flags override it)")
    .option("--store-backend <backend>", "embedded | etcd")
    .option("--store-endpoints <list>", "etcd endpoints, host:port,host:port")
    .option("--store-prefix <prefix>", "key prefix in the store (default: /monitor)")
    .option("--bus-backend <backend>", "embedded | kafka")
    .option("--bus-brokers <list>", "Kafka brokers, host:port,host:port")
    .option("--state-dir <dir>", "state directory (default: .monitor next to monitor.yaml)")
    .option("--supervised", "run under the supervisor: no console, print monitor:ready when ready")
    .option("--console", "force a line-mode console even when stdin is not a terminal")
    .option("--log-level <level>", "debug | info | warn | error (default: log_level, else info)")
    .option(
      "--log-format <format>",
      "text | json, one object a line (default: log_format, else text)",
    );
}

/**
 * Applies the resolved log settings of a service: level, line format, and
 * who is logging (the service, and the agent id in an agent).
 */
export function configureLogging(
  settings: { logLevel: LogLevel; logFormat: LogFormat },
  context: LogContext,
): void {
  setLogLevel(settings.logLevel);
  setLogFormat(settings.logFormat);
  setLogContext(context);
}

/**
 * Ends a service's command line: `examples` after the help, the help after
 * an error, then parses `Deno.args` and returns the flags.
 */
export function parseServiceFlags<T extends ServiceFlags>(program: Command, examples: string): T {
  return program
    .addHelpText("after", examples)
    .showHelpAfterError()
    .parse(Deno.args, { from: "user" })
    .opts<T>();
}

/** True when stdin and stdout are terminals. */
export function onTerminal(): boolean {
  return Boolean(process.stdin.isTTY && process.stdout.isTTY);
}

/** The line a supervised service prints on stdout when it is ready. */
export const READY_LINE = "monitor:ready";

/**
 * What starts the line a supervised service prints on stdout for each
 * address it actually serves (`monitor:serving <what> <url>`), before its
 * ready line: the supervisor shows what was bound, not what was asked for.
 */
export const SERVING_PREFIX = "monitor:serving ";

/** Prints the one line the supervisor waits for. */
export function announceReady(): void {
  process.stdout.write(`${READY_LINE}\n`);
}

/**
 * Tells the supervisor that this process serves `what` (one word, e.g.
 * `dashboard`) at `url`. Printed under the supervisor only.
 *
 * @example
 * ```ts
 * import { announceServing, servingLine } from "./cli.ts";
 *
 * announceServing("dashboard", "http://127.0.0.1:8090/");
 * servingLine("monitor:serving dashboard http://127.0.0.1:8090/");
 * // → { what: "dashboard", url: "http://127.0.0.1:8090/" }
 * ```
 */
export function announceServing(what: string, url: string): void {
  process.stdout.write(`${SERVING_PREFIX}${what} ${url}\n`);
}

/** Reads a {@linkcode announceServing} line; undefined for any other line. */
export function servingLine(line: string): { what: string; url: string } | undefined {
  if (!line.startsWith(SERVING_PREFIX)) return undefined;
  const match = /^(\w+) (\S+)$/.exec(line.slice(SERVING_PREFIX.length));
  return match ? { what: match[1], url: match[2] } : undefined;
}

/**
 * Calls `stop` once on SIGINT or SIGTERM (a second signal exits at once).
 * Returns a function that removes the listeners.
 */
export function onShutdownSignal(stop: (signal: string) => void): () => void {
  let stopping = false;
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handlers = signals.map((signal) => {
    const handler = () => {
      if (stopping) Deno.exit(130);
      stopping = true;
      stop(signal);
    };
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  });
  return () => handlers.forEach((remove) => remove());
}

/** How often a supervised process checks that its parent still runs (ms). */
export const PARENT_CHECK_MS = 5000;

/**
 * Calls `gone(pid)` once when this process's parent has exited: the
 * process is then re-parented, so `Deno.ppid` changes (no permission
 * needed). A supervisor killed with SIGKILL thus leaves no service running
 * for long. One unref'd timer; returns a function that stops watching.
 *
 * @example
 * ```ts
 * import { onParentExit } from "./cli.ts";
 *
 * const stop = onParentExit((pid) => console.error(`parent ${pid} is gone`));
 * stop();
 * ```
 */
export function onParentExit(
  gone: (pid: number) => void,
  everyMs: number = PARENT_CHECK_MS,
): () => void {
  const parent = Deno.ppid;
  const timer = setInterval(() => {
    if (Deno.ppid === parent) return;
    clearInterval(timer);
    gone(parent);
  }, everyMs);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}

/** Options of {@linkcode stopOnShutdown}. */
export interface ShutdownOptions {
  /** Where an error while stopping is logged (`stopping: <message>`). */
  log: { error(message: string): void };
  /** Why a signal stops the service (default: `received <signal>`). */
  reason?: (signal: string) => string;
  /**
   * Under the supervisor: print the `monitor:ready` line once the handlers
   * are set, and stop when the supervisor's process is gone.
   */
  supervised?: boolean;
}

/**
 * The end of every service's main: `stop(why)` runs once, on SIGINT or
 * SIGTERM or when the returned function is called (a console closed); an
 * error while stopping is logged, then the process exits with 0. Under the
 * supervisor, the ready line is printed once the signal handlers are set, and
 * the service stops by itself when the supervisor's process is gone
 * ({@linkcode onParentExit}).
 *
 * @example
 * ```ts
 * import { getLogger } from "./log.ts";
 * import { stopOnShutdown } from "./cli.ts";
 *
 * const server = { stop: async (_why: string) => {} };
 * const shutdown = stopOnShutdown((why) => server.stop(why), {
 *   log: getLogger("broker"),
 *   reason: (signal) => `the broker received ${signal}`,
 *   supervised: false,
 * });
 * await shutdown("the console was closed"); // exits
 * ```
 */
export function stopOnShutdown(
  stop: (why: string) => Promise<void>,
  options: ShutdownOptions,
): (why: string) => Promise<void> {
  let exiting = false;
  const shutdown = async (why: string) => {
    if (exiting) return;
    exiting = true;
    try {
      await stop(why);
    } catch (error) {
      options.log.error(`stopping: ${errorMessage(error)}`);
    }
    Deno.exit(0);
  };
  const reason = options.reason ?? ((signal: string) => `received ${signal}`);
  onShutdownSignal((signal) => void shutdown(reason(signal)));
  if (options.supervised) {
    onParentExit((pid) => void shutdown(`the supervisor (pid ${pid}) is gone`));
    announceReady();
  }
  return shutdown;
}

/** Prints `<service>: error: <message>` on stderr and exits with code 1. */
export function fatal(service: string, error: unknown): never {
  const message = errorMessage(error);
  for (const line of message.split("\n")) console.error(`${service}: error: ${line}`);
  Deno.exit(1);
}
