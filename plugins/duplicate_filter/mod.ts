/**
 * duplicate_filter: drops metric values that did not change since they were
 * last sent (within an optional tolerance), but sends every metric at least
 * every `max_silent_intervals` samples so that silence never looks like a
 * dead agent. A sample with no metric left is dropped.
 *
 * @module
 */
import type { Plugin, PluginContext, Sample, SettingsSchema } from "../api.ts";

/** Default of `max_silent_intervals`. */
export const DEFAULT_MAX_SILENT_INTERVALS = 12;

/**
 * The keep-alive window of an agent (seconds): within it every metric is sent
 * again even when unchanged. `interval` × `max_silent_intervals` when the
 * duplicate filter is configured (`settings` are its settings), else
 * `interval` (every sample carries every metric).
 *
 * ```ts
 * import { keepAliveSeconds } from "./mod.ts";
 * keepAliveSeconds(5, {}); // 60
 * keepAliveSeconds(5, undefined); // 5: no duplicate filter
 * ```
 */
export function keepAliveSeconds(
  interval: number,
  settings: Record<string, unknown> | undefined,
): number {
  if (!settings) return interval;
  const max = settings.max_silent_intervals;
  return interval * (typeof max === "number" && max >= 1 ? max : DEFAULT_MAX_SILENT_INTERVALS);
}

/** Settings of the duplicate filter. */
export const DUPLICATE_FILTER_SETTINGS: SettingsSchema = {
  fields: {
    tolerance: {
      type: "number",
      min: 0,
      default: 0,
      description: "a value within this distance of the last sent value counts as unchanged",
    },
    max_silent_intervals: {
      type: "number",
      integer: true,
      min: 1,
      max: 10_000,
      default: DEFAULT_MAX_SILENT_INTERVALS,
      description: "every metric is sent at least once every this many samples",
    },
  },
};

interface Sent {
  value: number;
  /** Samples in which this metric was held back since it was last sent. */
  skipped: number;
}

/** The duplicate filter plugin. */
export class DuplicateFilterPlugin implements Plugin {
  readonly name = "duplicate_filter";
  readonly version = "1.0.0";
  #tolerance = 0;
  #maxSilent = DEFAULT_MAX_SILENT_INTERVALS;
  #sent = new Map<string, Sent>();

  initialize(config: Record<string, unknown>, _context: PluginContext): void {
    this.#tolerance = typeof config.tolerance === "number" ? config.tolerance : 0;
    this.#maxSilent = typeof config.max_silent_intervals === "number"
      ? config.max_silent_intervals
      : DEFAULT_MAX_SILENT_INTERVALS;
  }

  run(sample: Sample): Sample | undefined {
    const metrics: Record<string, number> = {};
    let kept = 0;
    for (const [name, value] of Object.entries(sample.metrics)) {
      const last = this.#sent.get(name);
      const unchanged = last !== undefined && Math.abs(value - last.value) <= this.#tolerance;
      if (unchanged && last.skipped + 1 < this.#maxSilent) {
        last.skipped++;
        continue;
      }
      this.#sent.set(name, { value, skipped: 0 });
      metrics[name] = value;
      kept++;
    }
    if (kept === 0) return undefined;
    return { timestamp: sample.timestamp, metrics };
  }

  finalize(): void {
    this.#sent.clear();
  }
}

/** Creates a duplicate filter. */
export function createDuplicateFilter(): Plugin {
  return new DuplicateFilterPlugin();
}
