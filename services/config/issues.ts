/**
 * Configuration problems with the place they were found, shared by the
 * monitor.yaml validator and the agent configuration parser.
 *
 * @module
 */
import { escapeText } from "../common/escape.ts";

/** One problem in a configuration document. */
export interface ConfigIssue {
  /** Dotted key path, e.g. `agents.default.interval` or `plugins[1]`. */
  path: string;
  /** What was expected, e.g. `a whole number of seconds from 1 to 86400`. */
  expected: string;
  /** What was found, e.g. `"5s" (a string)`. */
  found: string;
  /** Source position (1-based) when known. */
  line?: number;
  column?: number;
  /** Optional hint such as `did you mean "interval"?` */
  hint?: string;
  /**
   * Optional reason before `expected`, when the value is fine by itself but a
   * rule joining it to other keys is broken (`mTLS needs TLS`).
   */
  problem?: string;
}

/**
 * Formats an issue as one line: `file:line:col: path: [problem: ]expected X, found Y (hint)`.
 * Every part is escaped (keys and values come from the document), so one issue is one line.
 */
export function formatIssue(issue: ConfigIssue, file?: string): string {
  const where = [file, issue.line, issue.column].filter((p) => p !== undefined).join(":");
  const head = where ? `${escapeText(where)}: ` : "";
  const hint = issue.hint ? ` (${escapeText(issue.hint)})` : "";
  const problem = issue.problem ? `${escapeText(issue.problem)}: ` : "";
  return `${head}${escapeText(issue.path || "(top level)")}: ${problem}expected ${
    escapeText(issue.expected)
  }, found ${escapeText(issue.found)}${hint}`;
}

/** Describes a value for `found`: `"5s" (a string)`, `3 (a number)`, `nothing`. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === "object") return "a mapping";
  const text = JSON.stringify(value);
  const shown = text.length > 40 ? text.slice(0, 37) + "..." : text;
  return `${shown} (a ${typeof value})`;
}

/** Error carrying every issue found in one document. */
export class ConfigError extends Error {
  /**
   * @param issues the problems, at least one
   * @param file the file (or store key) the document came from
   */
  constructor(readonly issues: ConfigIssue[], readonly file?: string) {
    super(issues.map((i) => formatIssue(i, file)).join("\n"));
    this.name = "ConfigError";
  }
}

/** Most candidates {@linkcode didYouMean} compares a word with (the first ones given). */
export const MAX_SUGGESTION_CANDIDATES = 200;
/** Words longer than this get no suggestion (nobody mistypes a 100-character key). */
export const MAX_SUGGESTION_LENGTH = 64;

/**
 * Levenshtein-based suggestion: the closest candidate within distance 2, or
 * undefined. Bounded work per call, so that validating many unknown keys stays
 * linear: at most {@linkcode MAX_SUGGESTION_CANDIDATES} candidates, words of at
 * most {@linkcode MAX_SUGGESTION_LENGTH} characters, and candidates whose
 * length differs by more than 2 are skipped without computing a distance.
 *
 * @example
 * ```ts
 * import { didYouMean } from "./issues.ts";
 * didYouMean("intervall", ["interval", "metrics"]); // "interval"
 * ```
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  if (word.length > MAX_SUGGESTION_LENGTH) return undefined;
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  const count = Math.min(candidates.length, MAX_SUGGESTION_CANDIDATES);
  for (let i = 0; i < count; i++) {
    const candidate = candidates[i];
    if (Math.abs(candidate.length - word.length) >= bestDistance) continue;
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * Names for a message, at most `max` of them: `a, b, c and 17 more`.
 *
 * @example
 * ```ts
 * import { someOf } from "./issues.ts";
 * someOf(["a", "b", "c"], 2); // "a, b and 1 more"
 * ```
 */
export function someOf(names: readonly string[], max = 10): string {
  if (names.length <= max) return names.join(", ");
  return `${names.slice(0, max).join(", ")} and ${names.length - max} more`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}
