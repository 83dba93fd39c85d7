/**
 * The analysis application's console: its command set (`stats`, `send`;
 * `help` and `quit` come from the shell) and the {@linkcode AnalysisBackend}
 * it talks to ({@linkcode localAnalysisBackend}: the application in this
 * process).
 *
 * @module
 */
import type { ResultMessage } from "../common/messages.ts";
import {
  type CommandSpec,
  formatNumber,
  formatTime,
  resultLine,
  type Sender,
  sendSpec,
  table,
} from "../console/mod.ts";
import type { Analysis, AnalysisSendSummary, AnalysisStats } from "./analysis.ts";

/** The analysis application's console operations. */
export interface AnalysisBackend {
  /** Statistics of the analysis application. */
  stats(): Promise<AnalysisStats>;
  /** Agent ids seen in the data (for completion and choices). */
  agentIds(): Promise<string[]>;
  /** Publishes a command and collects the results. */
  send(
    target: string,
    commandType: string,
    args: Record<string, unknown> | undefined,
    onResult: (result: ResultMessage) => void,
  ): Promise<AnalysisSendSummary>;
}

/** An {@linkcode AnalysisBackend} on an analysis application running in this process. */
export function localAnalysisBackend(analysis: Analysis): AnalysisBackend {
  return {
    stats: () => Promise.resolve(analysis.stats()),
    agentIds: () => Promise.resolve(analysis.agentIds()),
    send: (target, commandType, args, onResult) =>
      analysis.send(target, commandType, args, { onResult }),
  };
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
