/**
 * Commands on the bus (`monitoring-commands`, the seed's format): building
 * them, checking them, and the names consoles offer. Shared by the broker
 * (which routes them), the analysis application and the consoles (which
 * publish them).
 *
 * @module
 */
import { checkAgentId } from "./ids.ts";
import type { CommandMessage } from "./messages.ts";
import { isPlainObject } from "./objects.ts";

/** Command types the agent answers (services/agent/commands.ts), offered by the consoles. */
export const KNOWN_COMMAND_TYPES = [
  "status",
  "ping",
  "collect",
  "config",
  "metrics",
  "plugins",
  "reload",
] as const;

/** Command types that change nothing; anything else sent to every agent asks for confirmation. */
export const READ_ONLY_COMMAND_TYPES: readonly string[] = [
  "status",
  "ping",
  "collect",
  "config",
  "metrics",
  "plugins",
];

/** Command types: 1 to 64 of letters, digits, `.`, `_`, `-`. */
export const COMMAND_TYPE_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Longest command id. */
export const MAX_COMMAND_ID_LENGTH = 256;

/** A fresh command id, e.g. `cmd-lx2k3f-9a1b2c`. */
export function newCommandId(prefix = "cmd"): string {
  const random = crypto.getRandomValues(new Uint8Array(4));
  const hex = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${prefix}-${Date.now().toString(36)}-${hex}`;
}

/** Returns why `target` is not an agent id or `all`, or undefined. */
export function checkTarget(target: unknown): string | undefined {
  if (typeof target !== "string") return 'target: expected an agent id or "all"';
  if (target === "all") return undefined;
  const problem = checkAgentId(target);
  return problem ? `target: ${problem}` : undefined;
}

/** Returns why `type` is not a command type, or undefined. */
export function checkCommandType(type: unknown): string | undefined {
  if (typeof type !== "string" || !COMMAND_TYPE_PATTERN.test(type)) {
    return `command_type: expected a command name of 1 to 64 letters, digits, '.', '_' or '-' (for example "status"), found ${
      JSON.stringify(type) ?? String(type)
    }`;
  }
  return undefined;
}

/**
 * Builds a seed-format command. Throws a TypeError naming the field when the
 * target, type or args are not valid.
 */
export function buildCommand(
  target: string,
  commandType: string,
  args?: Record<string, unknown>,
  commandId: string = newCommandId(),
): CommandMessage {
  const problem = checkTarget(target) ?? checkCommandType(commandType) ??
    (args !== undefined && !isPlainObject(args) ? "args: expected a JSON object" : undefined);
  if (problem) throw new TypeError(problem);
  const command: CommandMessage = {
    command_id: commandId,
    target,
    command_type: commandType,
    timestamp: Date.now() / 1000,
  };
  if (args !== undefined) command.args = args;
  return command;
}

/** The plain-object check (services/common/objects.ts). */
export { isPlainObject };

/** Outcome of {@linkcode parseCommandMessage}. */
export type ParsedCommand =
  | { ok: true; command: CommandMessage }
  | {
    ok: false;
    /** What is wrong, naming the field. */
    error: string;
    /** The command id, when one could be read (so an error result can be published). */
    command_id?: string;
    /** The target, when one could be read. */
    target?: string;
  };

/** Parses and checks one message of the commands topic. */
export function parseCommandMessage(text: string): ParsedCommand {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, error: `expected a JSON object, found invalid JSON (${errorText(error)})` };
  }
  if (!isPlainObject(value)) return { ok: false, error: "expected a JSON object" };
  const id = value.command_id;
  const commandId = typeof id === "string" && id.length > 0 && id.length <= MAX_COMMAND_ID_LENGTH
    ? id
    : undefined;
  const target = typeof value.target === "string" && checkTarget(value.target) === undefined
    ? value.target
    : undefined;
  const fail = (error: string): ParsedCommand => ({
    ok: false,
    error,
    command_id: commandId,
    target,
  });
  if (commandId === undefined) {
    return fail(
      `command_id: expected a non-empty string of at most ${MAX_COMMAND_ID_LENGTH} characters, found ${
        JSON.stringify(id) ?? "nothing"
      }`,
    );
  }
  const targetProblem = checkTarget(value.target);
  if (targetProblem) return fail(targetProblem);
  const typeProblem = checkCommandType(value.command_type);
  if (typeProblem) return fail(typeProblem);
  if (value.timestamp !== undefined && !Number.isFinite(value.timestamp)) {
    return fail(
      `timestamp: expected Unix seconds (a number), found ${JSON.stringify(value.timestamp)}`,
    );
  }
  if (value.args !== undefined && value.args !== null && !isPlainObject(value.args)) {
    return fail("args: expected a JSON object");
  }
  const command: CommandMessage = {
    command_id: commandId,
    target: value.target as string,
    command_type: value.command_type as string,
    timestamp: typeof value.timestamp === "number" ? value.timestamp : Date.now() / 1000,
  };
  if (isPlainObject(value.args)) command.args = value.args;
  return { ok: true, command };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
