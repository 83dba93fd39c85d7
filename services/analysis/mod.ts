/**
 * The analysis application as a library: {@linkcode startAnalysis} consumes
 * the data, results and alerts topics, keeps a live view of every agent and
 * sends commands. The CLI is `services/analysis/main.ts`.
 *
 * ```ts
 * import type { Bus } from "../bus/types.ts";
 * declare const bus: Bus; // from openBus (services/bus/mod.ts)
 *
 * const analysis = await startAnalysis({ bus });
 * const summary = await analysis.send("all", "status");
 * console.log(summary.ok, summary.missing);
 * await analysis.stop();
 * ```
 *
 * @module
 */
export {
  type Analysis,
  type AnalysisEvent,
  type AnalysisOptions,
  type AnalysisSendOptions,
  type AnalysisSendSummary,
  type AnalysisStats,
  startAnalysis,
} from "./analysis.ts";
export { type AgentState, parseAlert, parseData, parseResultMessage } from "./state.ts";
export { agentLine, renderView, summaryLines } from "./view.ts";
export { type LiveDisplay, type LiveDisplayOptions, startLiveDisplay } from "./live.ts";
export { analysisPermissionFlags, analysisPermissions } from "./permissions.ts";
export { type AnalysisBackend, analysisCommands, localAnalysisBackend } from "./console.ts";
export {
  type AgentSnapshot,
  AgentStateTable,
  DEFAULT_KEEPALIVE_SECONDS,
  type MetricState,
  STALE_GRACE_SECONDS,
} from "../common/agent_state.ts";
