/**
 * The console commands: broker console (`list`, `health`, `stats`,
 * `config`, `send`) and analysis console (`stats`, `send`); `help` and
 * `quit` come from the shell. Typed alone, `send` and `config` ask what
 * they need on a terminal; elsewhere they say what was expected.
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
import { ConfigError } from "../config/issues.ts";
import type { AnalysisBackend, BrokerBackend } from "./backend.ts";
import {
  formatAge,
  formatBytes,
  formatMetrics,
  formatNumber,
  formatTime,
  type Style,
  table,
} from "./format.ts";
import type { Choice } from "./prompts.ts";
import type { CommandIO, CommandLine, CommandSpec } from "./repl.ts";

/** Usage of `send`. */
export const SEND_USAGE = "send <agent|all> <command> [json args]";
/** Usage of `config`. */
export const CONFIG_USAGE = "config <agent> <json>";

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

/** Parses the JSON of `config <agent> <json>`, naming what was expected. */
export function parseConfigJson(text: string): unknown {
  if (text.trim() === "") {
    throw new Error(
      `${CONFIG_USAGE}: expected the configuration as JSON, e.g. {"interval": 5, "metrics": ["cpu"]}`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`config: expected JSON, found invalid JSON (${(error as Error).message})`);
  }
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
interface Sender {
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

function sendSpec(sender: Sender): CommandSpec {
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

/** The broker console's commands (also the supervisor's console, over the admin API). */
export function brokerCommands(backend: BrokerBackend): CommandSpec[] {
  let knownAgents: string[] = [];
  const agentIds = async () => {
    try {
      const [agents, health] = await Promise.all([backend.agents(), backend.health()]);
      knownAgents = [
        ...new Set([...agents.map((a) => a.agent_id), ...health.map((h) => h.agent_id)]),
      ]
        .sort();
    } catch { /* keep the last known list */ }
    return knownAgents;
  };
  const sender: Sender = {
    targets: async () => (await backend.agents()).map((a) => a.agent_id),
    async send(target, commandType, args, io) {
      const summary = await backend.send(
        { target, command_type: commandType, args },
        (event) => {
          if (event.event === "published") {
            io.print(io.style.dim(`command ${event.command_id} published; waiting for results…`));
          } else if (event.event === "result") {
            io.print(resultLine(event.result, io.style));
          }
        },
      );
      return summary;
    },
  };

  const list: CommandSpec = {
    name: "list",
    usage: "list",
    summary: "connected agents with their latest values",
    async run(_line, io) {
      const agents = await backend.agents();
      if (agents.length === 0) {
        io.print("no agents are connected");
        return;
      }
      io.print(table(
        ["AGENT", "HOST", "PEER", "CONNECTED", "LAST BATCH", "LATEST"],
        agents.map((a) => [
          escapeText(a.agent_id),
          escapeText(a.hostname),
          escapeText(a.peer),
          formatAge(a.connected_since),
          formatAge(a.last_batch),
          a.latest ? formatMetrics(a.latest) : "-",
        ]),
      ));
      io.print(`${agents.length} agent(s) connected`);
    },
  };

  const health: CommandSpec = {
    name: "health",
    usage: "health",
    summary: "alive or dead per agent (from heartbeats), with the last time seen",
    async run(_line, io) {
      const entries = await backend.health();
      if (entries.length === 0) {
        io.print("no agents known yet (no heartbeats, none connected)");
        return;
      }
      const colored = (s: string) =>
        s === "alive" ? io.style.green(s) : s === "dead" ? io.style.red(s) : io.style.yellow(s);
      io.print(table(
        ["AGENT", "STATUS", "LAST SEEN", "SINCE", "CONNECTED"],
        entries.map((h) => [
          escapeText(h.agent_id),
          colored(h.status),
          h.last_seen === null ? "never" : `${formatTime(h.last_seen)} (${formatAge(h.last_seen)})`,
          formatTime(h.since),
          h.connected ? "yes" : "no",
        ]),
      ));
      const alive = entries.filter((h) => h.status === "alive").length;
      const dead = entries.filter((h) => h.status === "dead").length;
      io.print(`${alive} alive, ${dead} dead`);
    },
  };

  const stats: CommandSpec = {
    name: "stats",
    usage: "stats",
    summary: "batches, samples, bytes, rates, publish latency and errors, per agent and total",
    async run(_line, io) {
      const s = await backend.stats();
      const row = (name: string, c: typeof s.total) => [
        name,
        String(c.batches),
        String(c.samples),
        String(c.alerts),
        formatBytes(c.bytes),
        `${formatNumber(c.rates.samples, 2)}/s`,
        c.publish_latency_ms.p50 === null
          ? "-"
          : `${formatNumber(c.publish_latency_ms.p50, 1)}/${
            formatNumber(c.publish_latency_ms.p99 ?? 0, 1)
          } ms`,
        String(c.errors),
      ];
      io.print(
        `uptime ${
          formatNumber(s.uptime_s, 0)
        } s, ${s.connected} agent(s) connected, ${s.pending_commands} command(s) waiting`,
      );
      io.print(table(
        ["AGENT", "BATCHES", "SAMPLES", "ALERTS", "BYTES", "RATE", "PUBLISH p50/p99", "ERRORS"],
        [...Object.entries(s.agents).map(([id, c]) => row(id, c)), row("total", s.total)],
      ));
    },
  };

  const config: CommandSpec = {
    name: "config",
    usage: `${CONFIG_USAGE}  |  config <agent>  |  config`,
    summary: "write an agent's configuration (validated first), show it, or edit it interactively",
    async complete(index) {
      return index === 0 ? ["default", ...await agentIds()] : [];
    },
    async run(line, io) {
      const [agentId] = line.args;
      if (agentId === undefined) {
        if (!io.interactive) {
          throw new Error(
            `${CONFIG_USAGE}: expected an agent id (or "default") and the configuration as JSON`,
          );
        }
        await editConfig(io, backend, await agentIds());
        return;
      }
      const json = line.rest(1);
      if (json === "") {
        const view = await backend.getConfig(agentId);
        io.print(describeConfig(view));
        return;
      }
      const value = parseConfigJson(json);
      await writeConfig(io, backend, agentId, value);
    },
  };

  return [list, health, stats, config, sendSpec(sender)];
}

function describeConfig(view: {
  agent_id: string;
  key: string;
  source: string;
  config: unknown;
}): string {
  if (view.source === "none") {
    return `${view.agent_id} has no configuration (no ${view.key}, no default)`;
  }
  const from = view.source === "own" ? view.key : `${view.key} (the default)`;
  return `${view.agent_id}: ${from}\n${JSON.stringify(view.config, null, 2)}`;
}

function issuesText(error: unknown): string {
  if (error instanceof ConfigError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

async function writeConfig(
  io: CommandIO,
  backend: BrokerBackend,
  agentId: string,
  value: unknown,
): Promise<boolean> {
  try {
    const written = await backend.putConfig(agentId, value);
    io.print(
      `configuration of ${agentId} written to ${written.key} (revision ${written.revision}); ${
        agentId === "default" ? "agents without their own" : "the agent"
      } apply it live`,
    );
    return true;
  } catch (error) {
    throw new Error(`configuration of ${agentId} not written:\n${issuesText(error)}`);
  }
}

async function editConfig(io: CommandIO, backend: BrokerBackend, known: string[]) {
  const choices: Choice[] = [
    ...known.map((id) => ({ name: id, value: id })),
    { name: "default", value: "default", description: "for agents without their own" },
    { name: "another agent id…", value: "\u0000other" },
  ];
  let agentId = await io.prompt.select("Configure which agent?", choices);
  if (agentId === "\u0000other") {
    agentId = await io.prompt.input(
      "Agent id:",
      undefined,
      (v) =>
        v === "default" || checkTarget(v) === undefined && v !== "all"
          ? true
          : "expected an agent id",
    );
  }
  const view = await backend.getConfig(agentId);
  const start = view.config === null
    ? { interval: 5, metrics: ["cpu", "memory"], plugins: [] }
    : view.config;
  if (view.source === "default") {
    io.print(`${agentId} uses the default configuration; editing a copy`);
  }
  let text = JSON.stringify(start, null, 2);
  while (true) {
    text = await io.prompt.edit(`Configuration of ${agentId}`, text, (v) => {
      try {
        JSON.parse(v);
        return true;
      } catch (error) {
        return `expected JSON: ${(error as Error).message}`;
      }
    });
    const value = JSON.parse(text);
    if (view.source === "own") {
      const yes = await io.prompt.confirm(`Replace the configuration of ${agentId}?`, true);
      if (!yes) {
        io.print("not written");
        return;
      }
    }
    try {
      await writeConfig(io, backend, agentId, value);
      return;
    } catch (error) {
      io.error((error as Error).message);
      if (!(await io.prompt.confirm("Edit again?", true))) return;
    }
  }
}

/** The analysis console's commands. */
export function analysisCommands(backend: AnalysisBackend): CommandSpec[] {
  const sender: Sender = {
    targets: () => backend.agentIds(),
    send: (target, commandType, args, io) => {
      io.print(io.style.dim(`sending ${commandType} to ${target}; waiting for results…`));
      return backend.send(
        target,
        commandType,
        args,
        (result) => io.print(resultLine(result, io.style)),
      );
    },
  };
  const stats: CommandSpec = {
    name: "stats",
    usage: "stats",
    summary: "messages consumed, sample rate, delivery delay, alerts, per agent",
    async run(_line, io) {
      const s = await backend.stats();
      io.print(
        `uptime ${
          formatNumber(s.uptime_s, 0)
        } s; consumed data ${s.consumed.data}, results ${s.consumed.results}, alerts ${s.consumed.alerts}; invalid ${s.invalid}`,
      );
      io.print(
        `${s.agents} agent(s), ${
          formatNumber(s.samples_per_s, 2)
        } samples/s, ${s.alerts_firing} alert(s) firing, ${s.commands_sent} command(s) sent, delivery delay p50 ${
          s.delivery_delay_ms.p50 ?? "-"
        } ms p99 ${s.delivery_delay_ms.p99 ?? "-"} ms`,
      );
      const rows = Object.entries(s.per_agent).map(([id, a]) => [
        id,
        String(a.samples),
        formatTime(a.last_timestamp),
        String(a.alerts_firing),
      ]);
      if (rows.length) io.print(table(["AGENT", "SAMPLES", "LAST SAMPLE", "ALERTS"], rows));
    },
  };
  return [stats, sendSpec(sender)];
}
