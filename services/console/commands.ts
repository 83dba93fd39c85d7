/**
 * What the consoles' command sets share: `send` (typed alone on a terminal it
 * asks what it needs; elsewhere it says what was expected), its argument
 * parsing and its result lines. The broker's command set lives with the
 * broker (services/broker/console.ts), the analysis application's with it
 * (services/analysis/console.ts); `help` and `quit` come from the shell.
 *
 * @module
 */
import {
  checkCommandType,
  checkTarget,
  isPlainObject,
  KNOWN_COMMAND_TYPES,
  READ_ONLY_COMMAND_TYPES,
} from "../common/commands.ts";
import { escapeText } from "../common/escape.ts";
import type { ResultMessage } from "../common/messages.ts";
import type { Style } from "./format.ts";
import type { Choice } from "./prompts.ts";
import type { CommandIO, CommandLine, CommandSpec } from "./repl.ts";

/** Usage of `send`. */
export const SEND_USAGE = "send <agent|all> <command> [json args]";

/** Parses `[json args]`: empty is none; otherwise a JSON object. */
export function parseArgs(text: string): Record<string, unknown> | undefined {
  if (text.trim() === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(
      `json args: expected a JSON object such as {"verbose": true}, found ${
        JSON.stringify(text.length > 40 ? text.slice(0, 37) + "..." : text)
      } (${(error as Error).message})`,
    );
  }
  if (!isPlainObject(value)) {
    throw new Error(`json args: expected a JSON object such as {"verbose": true}`);
  }
  return value;
}

/** Outputs up to this many characters of JSON stay on the result's line. */
const INLINE_OUTPUT = 60;
/** Longest output shown, in lines (the rest is counted, not printed). */
export const MAX_OUTPUT_LINES = 80;

/**
 * A command's output as text: short JSON on one line, longer JSON indented
 * on lines of its own (as `jq` prints it), strings as they are.
 */
export function outputText(output: unknown): { inline: string } | { block: string[] } {
  if (output === undefined || output === null || output === "") return { inline: "" };
  const compact = typeof output === "string" ? output : JSON.stringify(output);
  if (compact.length <= INLINE_OUTPUT && !compact.includes("\n")) {
    return { inline: escapeText(compact) };
  }
  const text = typeof output === "string" ? output : JSON.stringify(output, null, 2);
  // Each line escaped (an agent's output is outside data); the breaks between them are ours.
  const lines = text.split("\n").map(escapeText);
  if (lines.length <= MAX_OUTPUT_LINES) return { block: lines };
  const shown = lines.slice(0, MAX_OUTPUT_LINES - 1);
  shown.push(`… ${lines.length - shown.length} more lines`);
  return { block: shown };
}

/**
 * One result: `web-1  ok  {"uptime": 12}`, or the agent and status on a line
 * and a longer output pretty-printed below it, indented by two spaces.
 */
export function resultLine(result: ResultMessage, style: Style): string {
  const status = result.status === "ok" ? style.green("ok") : style.red("error");
  const head = `${escapeText(result.agent_id)}  ${status}`;
  const text = outputText(result.output);
  if ("inline" in text) return text.inline === "" ? head : `${head}  ${text.inline}`;
  return [head, ...text.block.map((line) => `  ${line}`)].join("\n");
}

/** The closing summary of a send. */
export function summaryLine(
  summary: { ok: string[]; errors: string[]; missing: string[]; timed_out: boolean },
  style: Style,
): string {
  // An error result for "all" is the broker saying that no agent was connected.
  const errors = summary.errors.filter((id) => id !== "all");
  const parts = [`${summary.ok.length + errors.length} answered`];
  if (summary.ok.length) parts.push(style.green(`ok: ${summary.ok.join(", ")}`));
  if (errors.length) parts.push(style.red(`error: ${errors.join(", ")}`));
  if (errors.length < summary.errors.length) parts.push(style.yellow("no agent was connected"));
  if (summary.missing.length) parts.push(style.yellow(`no answer: ${summary.missing.join(", ")}`));
  if (summary.timed_out) parts.push("(wait ended by the timeout)");
  return parts.join("; ");
}

/** How `send` reaches a service. */
export interface Sender {
  targets(): Promise<string[]>;
  send(
    target: string,
    commandType: string,
    args: Record<string, unknown> | undefined,
    io: CommandIO,
  ): Promise<{ ok: string[]; errors: string[]; missing: string[]; timed_out: boolean }>;
}

async function askTarget(io: CommandIO, sender: Sender): Promise<string> {
  const agents = await sender.targets();
  const choices: Choice[] = [
    { name: "all", value: "all", description: "every connected agent" },
    ...agents.map((id) => ({ name: id, value: id })),
    { name: "another agent id…", value: "\u0000other" },
  ];
  const picked = await io.prompt.select("Send to which agent?", choices);
  if (picked !== "\u0000other") return picked;
  return await io.prompt.input("Agent id:", undefined, (v) => checkTarget(v) ?? true);
}

async function askCommand(io: CommandIO): Promise<string> {
  const choices: Choice[] = [
    ...KNOWN_COMMAND_TYPES.map((c) => ({ name: c, value: c as string })),
    { name: "another command…", value: "\u0000other" },
  ];
  const picked = await io.prompt.select("Which command?", choices, "status");
  if (picked !== "\u0000other") return picked;
  return await io.prompt.input("Command:", undefined, (v) => checkCommandType(v) ?? true);
}

/** The `send` command over a {@linkcode Sender}. */
export function sendSpec(sender: Sender): CommandSpec {
  return {
    name: "send",
    usage: SEND_USAGE,
    summary: "send a command to one agent or to all, and show the results as they arrive",
    async complete(index) {
      if (index === 0) return ["all", ...await sender.targets()];
      if (index === 1) return [...KNOWN_COMMAND_TYPES];
      return [];
    },
    async run(line: CommandLine, io: CommandIO) {
      let [target, commandType] = line.args;
      let args = commandType === undefined ? undefined : parseArgs(line.rest(2));
      if (target === undefined || commandType === undefined) {
        if (!io.interactive) {
          throw new Error(
            `${SEND_USAGE}: expected ${
              target === undefined ? "an agent id (or all) and a command" : "a command"
            }, e.g. "send all status"`,
          );
        }
        target ??= await askTarget(io, sender);
        commandType = await askCommand(io);
        const typed = await io.prompt.input(
          "Arguments as a JSON object (empty for none):",
          "",
          (v) => {
            try {
              parseArgs(v);
              return true;
            } catch (error) {
              return (error as Error).message;
            }
          },
        );
        args = parseArgs(typed);
      }
      const problem = checkTarget(target) ?? checkCommandType(commandType);
      if (problem) throw new Error(`${SEND_USAGE}: ${problem}`);
      if (
        io.interactive && target === "all" && !READ_ONLY_COMMAND_TYPES.includes(commandType)
      ) {
        const yes = await io.prompt.confirm(
          `Send "${commandType}" to every connected agent?`,
          false,
        );
        if (!yes) {
          io.print("not sent");
          return;
        }
      }
      const summary = await sender.send(target, commandType, args, io);
      io.print(summaryLine(summary, io.style));
    },
  };
}
