/**
 * Commands the agent answers (from `monitoring-commands` through the broker):
 * `status`, `ping`, `collect`, `reload`, `plugins`, `config`, `metrics`.
 * Each command gets exactly one result. Unknown commands and bad arguments
 * (args not a JSON object, unexpected or mistyped fields) get an error result
 * naming what is wrong and change nothing.
 *
 * @module
 */
import { didYouMean } from "../config/issues.ts";
import { errorMessage } from "../common/log.ts";
import type { CommandResult, WireCommand } from "../rpc/messages.ts";

/** What the commands act on (the running agent). */
export interface CommandTarget {
  /** Everything about the agent. */
  status(): Record<string, unknown>;
  /** Liveness answer. */
  ping(): Record<string, unknown>;
  /** Takes a sample now; sends it unless `send` is false. */
  collect(send: boolean): Promise<Record<string, unknown>>;
  /** Re-reads the configuration from the store. */
  reload(): Promise<Record<string, unknown>>;
  /** Plugin states. */
  plugins(): Record<string, unknown>;
  /** The configuration in force. */
  config(): Record<string, unknown>;
  /** The last sample. */
  metrics(): Record<string, unknown>;
}

/** One argument of a command. */
interface ArgSpec {
  type: "boolean";
  description: string;
}

interface CommandSpec {
  description: string;
  args: Record<string, ArgSpec>;
  run(target: CommandTarget, args: Record<string, unknown>): unknown | Promise<unknown>;
}

/** The commands, their arguments and what they do. */
const COMMANDS: Record<string, CommandSpec> = {
  status: {
    description: "configuration, plugins with state, last sample, uptime, buffer, problems",
    args: {},
    run: (t) => t.status(),
  },
  ping: { description: "answers pong", args: {}, run: (t) => t.ping() },
  collect: {
    description: "takes a sample now, returns it and sends it (unless send is false)",
    args: { send: { type: "boolean", description: "also send the sample (default true)" } },
    run: (t, args) => t.collect(args.send !== false),
  },
  reload: {
    description: "re-reads the configuration from the store",
    args: {},
    run: (t) => t.reload(),
  },
  plugins: { description: "plugins with state and failures", args: {}, run: (t) => t.plugins() },
  config: { description: "the configuration in force", args: {}, run: (t) => t.config() },
  metrics: { description: "the last sample", args: {}, run: (t) => t.metrics() },
};

/** Names of the commands the agent answers. */
export const AGENT_COMMANDS: readonly string[] = Object.keys(COMMANDS);

/** Parses and checks `args_json` for a command; a string says what is wrong. */
export function parseCommandArgs(
  type: string,
  argsJson: string,
): Record<string, unknown> | string {
  const spec = COMMANDS[type];
  if (!spec) return `unknown command ${JSON.stringify(type)}`;
  let args: unknown = {};
  if (argsJson.trim() !== "") {
    try {
      args = JSON.parse(argsJson);
    } catch (error) {
      return `args: expected a JSON object, found invalid JSON (${errorMessage(error)})`;
    }
  }
  if (args === null) args = {};
  if (typeof args !== "object" || Array.isArray(args)) {
    return `args: expected a JSON object, found ${Array.isArray(args) ? "a list" : typeof args}`;
  }
  const names = Object.keys(spec.args);
  for (const [key, value] of Object.entries(args as Record<string, unknown>)) {
    const arg = spec.args[key];
    if (!arg) {
      const hint = didYouMean(key, names);
      return `args.${key}: unexpected field; ${type} takes ${
        names.length === 0 ? "no arguments" : `only ${names.join(", ")}`
      }${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ""}`;
    }
    if (arg.type === "boolean" && typeof value !== "boolean") {
      return `args.${key}: expected true or false (${arg.description}), found ${
        JSON.stringify(value)
      }`;
    }
  }
  return args as Record<string, unknown>;
}

/**
 * Runs one command and returns its result (never throws).
 * @param target the agent
 * @param command the command as received from the broker
 */
export async function runCommand(
  target: CommandTarget,
  command: WireCommand,
): Promise<CommandResult> {
  const result = (status: "ok" | "error", output: unknown): CommandResult => ({
    command_id: command.command_id,
    status,
    output_json: JSON.stringify(output ?? null),
    timestamp: Date.now() / 1000,
  });
  const type = command.command_type;
  const spec = Object.hasOwn(COMMANDS, type) ? COMMANDS[type] : undefined;
  if (!spec) {
    const hint = didYouMean(String(type), AGENT_COMMANDS);
    return result(
      "error",
      `unknown command ${JSON.stringify(type)}: expected one of ${AGENT_COMMANDS.join(", ")}${
        hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ""
      }`,
    );
  }
  const args = parseCommandArgs(type, command.args_json ?? "");
  if (typeof args === "string") return result("error", `${type}: ${args}`);
  try {
    return result("ok", await spec.run(target, args));
  } catch (error) {
    return result("error", `${type} failed: ${errorMessage(error)}`);
  }
}

/** One line per command, for help texts. */
export function describeCommands(): string[] {
  return Object.entries(COMMANDS).map(([name, spec]) => `${name}: ${spec.description}`);
}
