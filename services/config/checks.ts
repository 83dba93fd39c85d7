/**
 * Small checks for monitor.yaml sections: each reads one key of a mapping,
 * returns the value (or its default) and records an issue naming the key
 * path, what was expected and what was found when the value is wrong.
 *
 * @module
 */
import { isHostPort } from "../common/net.ts";
import { isMapping, joinPath } from "./agent_config.ts";
import { type ConfigIssue, describeValue, didYouMean } from "./issues.ts";
import type { IssueAnchor } from "./yaml_source.ts";

/** An issue and whether it is about the entry's key (unknown keys) or its value. */
export interface AnchoredIssue extends ConfigIssue {
  /** Where the position should point (default: the value). */
  anchor?: IssueAnchor;
}

/** A plain mapping. */
export type Mapping = Record<string, unknown>;

/** {@linkcode isMapping} and {@linkcode joinPath} are the agent configuration's own. */
export { isMapping, joinPath };

/** `"a", "b" or "c"`. */
export function quotedList(values: readonly string[]): string {
  const quoted = values.map((v) => JSON.stringify(v));
  return quoted.length <= 1
    ? quoted.join("")
    : `${quoted.slice(0, -1).join(", ")} or ${quoted[quoted.length - 1]}`;
}

/** Collects issues for one document. */
export class Issues {
  /** Every issue, in the order found. */
  readonly list: AnchoredIssue[] = [];

  /** Records that `value` at `path` is not what was `expected`. */
  wrong(path: string, expected: string, value: unknown, hint?: string): undefined {
    this.list.push({ path, expected, found: describeValue(value), hint });
    return undefined;
  }

  /** Records an issue as given. */
  add(issue: AnchoredIssue): void {
    this.list.push(issue);
  }

  /** Number of issues so far. */
  get count(): number {
    return this.list.length;
  }
}

/**
 * Reads a section that must be a mapping with only `keys`. An absent or empty
 * section (`store:` with nothing after it) is `{}`; unknown keys are issues
 * with a did-you-mean.
 * @param raw the section's value
 * @param path its key path (`store`, `broker.tls`)
 * @param keys the keys it may have
 * @param issues where issues go
 * @returns the mapping, or undefined when it is not one
 */
export function section(
  raw: unknown,
  path: string,
  keys: readonly string[],
  issues: Issues,
): Mapping | undefined {
  if (raw === undefined || raw === null) return {};
  if (!isMapping(raw)) {
    return issues.wrong(path, `a mapping with the keys ${keys.join(", ")}`, raw);
  }
  for (const key of Object.keys(raw)) {
    if (keys.includes(key)) continue;
    const match = didYouMean(key, keys);
    issues.add({
      path: joinPath(path, key),
      expected: path
        ? `one of the keys of ${path}: ${keys.join(", ")}`
        : `one of the top-level keys ${keys.join(", ")}`,
      found: `unknown key ${JSON.stringify(key)}`,
      hint: match === undefined ? undefined : `did you mean ${JSON.stringify(match)}?`,
      anchor: "key",
    });
  }
  return raw;
}

/** Options of the value checks. */
interface Opts<T> {
  /** Value when the key is absent (or null). */
  fallback: T;
}

/** A string that is one of `values`. */
export function oneOf<T extends string>(
  doc: Mapping,
  key: string,
  path: string,
  values: readonly T[],
  fallback: T,
  issues: Issues,
): T {
  const value = doc[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value === "string" && (values as readonly string[]).includes(value)) return value as T;
  const match = typeof value === "string" ? didYouMean(value, values) : undefined;
  issues.wrong(
    joinPath(path, key),
    quotedList(values),
    value,
    match === undefined ? undefined : `did you mean ${JSON.stringify(match)}?`,
  );
  return fallback;
}

/** An optional non-empty string. */
export function text(
  doc: Mapping,
  key: string,
  path: string,
  what: string,
  issues: Issues,
): string | undefined {
  const value = doc[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string" && value.trim() !== "") return value;
  return issues.wrong(joinPath(path, key), what, value);
}

/** A `host:port` address; `fallback` when absent. */
export function hostPort(
  doc: Mapping,
  key: string,
  path: string,
  issues: Issues,
  opts: Opts<string>,
  extra?: { also?: string; what?: string },
): string {
  const value = doc[key];
  if (value === undefined || value === null) return opts.fallback;
  if (typeof value === "string" && (value === extra?.also || isHostPort(value))) return value;
  const hint = typeof value === "number" && Number.isInteger(value)
    ? `write "127.0.0.1:${value}", host and port`
    : undefined;
  const what = extra?.what ?? "an address host:port, e.g. 127.0.0.1:50052";
  issues.wrong(
    joinPath(path, key),
    extra?.also ? `${what}, or ${JSON.stringify(extra.also)}` : what,
    value,
    hint,
  );
  return opts.fallback;
}

/** A non-empty list of `host:port`; each bad item is its own issue (`path[i]`). */
export function hostPortList(
  doc: Mapping,
  key: string,
  path: string,
  issues: Issues,
  opts: Opts<string[]>,
): string[] {
  const value = doc[key];
  const where = joinPath(path, key);
  if (value === undefined || value === null) return [...opts.fallback];
  if (!Array.isArray(value) || value.length === 0) {
    const hint = typeof value === "string" ? `write [${value}], a list` : undefined;
    const example = opts.fallback[0] ?? "127.0.0.1:2379";
    issues.wrong(where, `a non-empty list of host:port, e.g. [${example}]`, value, hint);
    return [...opts.fallback];
  }
  const out: string[] = [];
  value.forEach((item, i) => {
    if (typeof item === "string" && isHostPort(item)) out.push(item);
    else {
      const port = (opts.fallback[0] ?? "127.0.0.1:2379").split(":").pop();
      issues.wrong(`${where}[${i}]`, `host:port, e.g. 10.0.0.5:${port}`, item);
    }
  });
  return out;
}

/** A number greater than 0 (optionally whole); `fallback` when absent. */
export function positive(
  doc: Mapping,
  key: string,
  path: string,
  issues: Issues,
  opts: Opts<number> & { what: string; whole?: boolean },
): number {
  const value = doc[key];
  if (value === undefined || value === null) return opts.fallback;
  if (
    typeof value === "number" && Number.isFinite(value) && value > 0 &&
    (!opts.whole || Number.isInteger(value))
  ) {
    return value;
  }
  const hint = typeof value === "string" && /^\d+(\.\d+)?\s*[a-z]+$/i.test(value)
    ? `write ${parseFloat(value)} without the unit`
    : undefined;
  issues.wrong(joinPath(path, key), opts.what, value, hint);
  return opts.fallback;
}

/** true or false; `fallback` when absent. */
export function flag(
  doc: Mapping,
  key: string,
  path: string,
  issues: Issues,
  opts: Opts<boolean> & { what: string },
): boolean {
  const value = doc[key];
  if (value === undefined || value === null) return opts.fallback;
  if (typeof value === "boolean") return value;
  issues.wrong(joinPath(path, key), `true or false (${opts.what})`, value);
  return opts.fallback;
}
