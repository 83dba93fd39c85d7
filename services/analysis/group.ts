/**
 * Which consumer group an analysis process joins.
 *
 * The supervised analysis (under `deno task up`) uses the shared group
 * {@linkcode DEFAULT_GROUP}, so that its offsets are committed and it resumes
 * where it stopped. An interactive analysis started by hand beside it (a
 * terminal or `--console`) must not join that group: the bus would split the
 * topics between the two (or give them all to one), and the second would wait
 * forever. Like `kafka-console-consumer`, it takes a group of its own, unless
 * told otherwise (`--group`, or `analysis.group` in monitor.yaml).
 *
 * @module
 */

/** The group of the analysis started by the supervisor. */
export const DEFAULT_GROUP = "analysis";

/** Prefix of the group an interactive analysis makes up for itself. */
export const INTERACTIVE_GROUP_PREFIX = "analysis-console-";

/** What decides the group. */
export interface GroupChoice {
  /** `--group` or `analysis.group`, when given. */
  configured?: string;
  /** Started by the supervisor. */
  supervised: boolean;
  /** A console or a live view on a terminal (someone is watching). */
  interactive: boolean;
}

/**
 * The consumer group to join, and why.
 *
 * @example
 * ```ts
 * import { chooseGroup } from "./group.ts";
 * const { group } = chooseGroup({ supervised: false, interactive: true }, () => "1a2b3c4d");
 * console.assert(group === "analysis-console-1a2b3c4d");
 * ```
 */
export function chooseGroup(
  choice: GroupChoice,
  unique: () => string = () => crypto.randomUUID().slice(0, 8),
): { group: string; own: boolean } {
  if (choice.configured !== undefined) return { group: choice.configured, own: false };
  if (choice.supervised || !choice.interactive) return { group: DEFAULT_GROUP, own: false };
  return { group: INTERACTIVE_GROUP_PREFIX + unique(), own: true };
}
