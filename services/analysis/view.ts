/**
 * The analysis live view: one line per agent with its latest values and any
 * firing alert highlighted. On a terminal it is redrawn in place; elsewhere
 * a compact summary is printed periodically.
 *
 * @module
 */
import { formatAge, formatMetric, formatMetrics, type Style, truncate } from "../console/format.ts";
import { escapeText } from "../common/escape.ts";
import type { AgentState } from "./state.ts";

/**
 * One agent's line: `web-1  cpu 12.5%  mem 40.1% ...  ALERT cpu 95% > 80%  3s ago`.
 * Values are the agent's current ones (carried forward while its keep-alive
 * window holds); metrics past it are shown dimmed as stale, and an agent with
 * no current metric is marked stale. Names come from the bus (any producer):
 * they are escaped, so none can move the cursor or clear the terminal.
 */
export function agentLine(agent: AgentState, nowMs: number, style: Style): string {
  const staleNames = Object.keys(agent.stale_metrics ?? {});
  const stale = agent.samples > 0 && Object.keys(agent.metrics).length === 0;
  const agentId = escapeText(agent.agent_id);
  const id = stale ? style.dim(agentId) : style.bold(agentId);
  const values = agent.samples === 0
    ? style.dim("no data yet")
    : Object.keys(agent.metrics).length > 0
    ? formatMetrics(agent.metrics)
    : "";
  const staleValues = staleNames.length > 0 && !stale
    ? style.dim(`stale: ${escapeText(staleNames.sort().join(", "))}`)
    : "";
  const alerts = Object.values(agent.firing).map((a) =>
    style.red(
      `ALERT ${escapeText(a.metric)} ${formatMetric(a.metric, a.value)} > ${
        formatMetric(a.metric, a.threshold)
      }`,
    )
  );
  const seen = agent.samples > 0 ? formatAge(agent.timestamp, nowMs) : "";
  return [
    id,
    values,
    staleValues,
    ...alerts,
    stale ? style.yellow(`stale, last sample ${seen}`) : style.dim(seen),
  ].filter((p) => p !== "").join("  ");
}

/** The whole view: a header and one line per agent, cut to `width` columns. */
export function renderView(
  agents: AgentState[],
  nowMs: number,
  style: Style,
  width = 120,
): string[] {
  const firing = agents.reduce((n, a) => n + Object.keys(a.firing).length, 0);
  const header = `${agents.length} agent${agents.length === 1 ? "" : "s"}${
    firing > 0 ? `, ${style.red(`${firing} alert${firing === 1 ? "" : "s"} firing`)}` : ""
  }`;
  if (agents.length === 0) return [style.dim("waiting for data from agents…")];
  return [
    style.dim(`— live view: ${header} —`),
    ...agents.map((a) => truncate(agentLine(a, nowMs, style), width)),
  ];
}

/** Most agents listed in one periodic summary. */
export const SUMMARY_MAX_AGENTS = 20;

/**
 * The periodic summary for non-terminals: a head line with totals, then one
 * line per agent (at most {@linkcode SUMMARY_MAX_AGENTS}).
 */
export function summaryLines(
  agents: AgentState[],
  samplesSinceLast: number,
  periodSeconds: number,
  nowMs: number,
  style: Style,
): string[] {
  const firing = agents.flatMap((a) => Object.values(a.firing));
  const head = `summary: ${agents.length} agent(s), ${samplesSinceLast} sample(s) in the last ${
    Math.round(periodSeconds)
  } s, ${firing.length} alert(s) firing`;
  const lines = [head];
  for (const agent of agents.slice(0, SUMMARY_MAX_AGENTS)) {
    lines.push(`  ${agentLine(agent, nowMs, style)}`);
  }
  if (agents.length > SUMMARY_MAX_AGENTS) {
    lines.push(`  … and ${agents.length - SUMMARY_MAX_AGENTS} more`);
  }
  return lines;
}
