/**
 * The one check for a plain object (a JSON or YAML mapping): every parser of
 * outside data (monitor.yaml, agent configurations, pins, bus messages,
 * console arguments) uses it.
 *
 * @example
 * ```ts
 * import { isPlainObject } from "./objects.ts";
 *
 * isPlainObject({ interval: 5 }); // true
 * isPlainObject([1, 2]); // false
 * isPlainObject(null); // false
 * ```
 *
 * @module
 */

/** True for a non-null object that is not a list. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
