/**
 * The broker's console: its command set (`list`, `health`, `stats`,
 * `config`, `send`; `help` and `quit` come from the shell), the
 * {@linkcode BrokerBackend} those commands talk to (the broker in the same
 * process, {@linkcode localBrokerBackend}, or its admin API over HTTP,
 * {@linkcode AdminClient}), and {@linkcode startAdminConsole}, the console the
 * supervisor hosts under `deno task up`. Typed alone, `send` and `config` ask
 * what they need on a terminal; elsewhere they say what was expected.
 *
 * Supervisor usage:
 *
 * ```ts ignore
 * import { startAdminConsole } from "./console.ts";
 *
 * const console = startAdminConsole({
 *   adminUrl: "127.0.0.1:50053",           // broker --admin address
 *   historyFile: ".monitor/history/console",
 *   confirmQuit: "Stop every service and quit?",
 * });
 * console.print("a line of a service's output"); // output above the prompt
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
import type { Readable, Writable } from "node:stream";
import { checkTarget } from "../common/commands.ts";
import { escapeText } from "../common/escape.ts";
import { ConfigError } from "../config/issues.ts";
import {
  type Choice,
  type CommandIO,
  type CommandSpec,
  type Console,
  formatAge,
  formatBytes,
  formatMetrics,
  formatNumber,
  formatTime,
  type Prompter,
  resultLine,
  type Sender,
  sendSpec,
  startConsole,
  table,
} from "../console/mod.ts";
import { AdminClient } from "./admin_client.ts";
import type { Broker, BrokerBackend } from "./types.ts";

/** Usage of `config`. */
export const CONFIG_USAGE = "config <agent> <json>";

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

export type { BrokerBackend };

/** A {@linkcode BrokerBackend} on a broker running in this process. */
export function localBrokerBackend(broker: Broker): BrokerBackend {
  return {
    agents: () => Promise.resolve(broker.agents()),
    health: () => Promise.resolve(broker.health()),
    stats: () => Promise.resolve(broker.stats()),
    getConfig: (agentId) => broker.getConfig(agentId),
    putConfig: (agentId, config) => broker.putConfig(agentId, config),
    send: (request, onEvent) => broker.send(request, onEvent),
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
    summary: "connected agents (on every broker of the fleet) with their broker and latest values",
    async run(_line, io) {
      const agents = await backend.agents();
      if (agents.length === 0) {
        io.print("no agents are connected");
        return;
      }
      io.print(table(
        ["AGENT", "HOST", "PEER", "BROKER", "CONNECTED", "LAST BATCH", "LATEST"],
        agents.map((a) => [
          escapeText(a.agent_id),
          escapeText(a.hostname),
          escapeText(a.peer),
          escapeText(a.broker ?? "-"),
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
    summary: "alive or dead per agent (from heartbeats), the last time seen, stale metrics",
    async run(_line, io) {
      const entries = await backend.health();
      if (entries.length === 0) {
        io.print("no agents known yet (no heartbeats, none connected)");
        return;
      }
      const colored = (s: string) =>
        s === "alive" ? io.style.green(s) : s === "dead" ? io.style.red(s) : io.style.yellow(s);
      io.print(table(
        ["AGENT", "STATUS", "LAST SEEN", "SINCE", "BROKER", "STALE METRICS"],
        entries.map((h) => [
          escapeText(h.agent_id),
          colored(h.status),
          h.last_seen === null ? "never" : `${formatTime(h.last_seen)} (${formatAge(h.last_seen)})`,
          formatTime(h.since),
          // The broker holding the agent's stream; "-" when no broker of the fleet does.
          h.connected ? escapeText(h.broker ?? "yes") : "-",
          // Metrics not reported within the agent's keep-alive window (services/common/agent_state.ts).
          h.stale_metrics?.length ? io.style.yellow(escapeText(h.stale_metrics.join(", "))) : "-",
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
      if (s.fleet && s.fleet.length > 0) {
        const total = s.fleet.reduce((n, b) => n + b.connected, 0);
        io.print(
          `fleet: ${s.fleet.length} broker(s), ${total} agent(s): ${
            s.fleet.map((b) =>
              `${escapeText(b.broker_id)} ${b.connected}${b.self ? " (this one)" : ""}`
            ).join(", ")
          }`,
        );
      }
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
  /** Where `config` writes the copy the editor opens, e.g. `<state_dir>/edit`. */
  editDir?: string;
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
    editDir: options.editDir,
  });
}
