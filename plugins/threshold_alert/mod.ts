/**
 * threshold_alert: raises an alert when a metric stays above its threshold
 * for `consecutive` samples and resolves it once the value falls more than
 * `hysteresis` below the threshold. Transitions are published through
 * `context.emitAlert` (topic `monitoring-alerts`) and logged. Samples pass
 * through unchanged.
 *
 * Settings are keyed by metric name as in the seed's `plugin_configs`
 * (`{"cpu": 80, "memory": 90, "disk": 95}`) plus `consecutive` and
 * `hysteresis`. Defaults: cpu 80, memory 85, disk 90.
 *
 * @module
 */
import type { Plugin, PluginContext, Sample, SettingsSchema } from "../api.ts";

/** Thresholds used when the settings do not name the metric. */
export const DEFAULT_THRESHOLDS: Readonly<Record<string, number>> = Object.freeze({
  cpu: 80,
  memory: 85,
  disk: 90,
});

/** Settings of the threshold alert plugin. */
export const THRESHOLD_ALERT_SETTINGS: SettingsSchema = {
  fields: {
    consecutive: {
      type: "number",
      integer: true,
      min: 1,
      max: 1000,
      default: 3,
      description: "samples in a row above the threshold before the alert fires",
    },
    hysteresis: {
      type: "number",
      min: 0,
      default: 5,
      description:
        "the alert resolves once the value is this far below the threshold (percentage points for cpu, memory, disk)",
    },
  },
  metricKeys: {
    type: "number",
    min: 0,
    description: "alert threshold of this metric",
  },
  percentMetrics: ["cpu", "memory", "disk"],
};

interface MetricState {
  breaches: number;
  firing: boolean;
}

/** The threshold alert plugin. */
export class ThresholdAlertPlugin implements Plugin {
  readonly name = "threshold_alert";
  readonly version = "1.0.0";
  #thresholds: Record<string, number> = { ...DEFAULT_THRESHOLDS };
  #consecutive = 3;
  #hysteresis = 5;
  #state = new Map<string, MetricState>();
  #context: PluginContext | undefined;

  initialize(config: Record<string, unknown>, context: PluginContext): void {
    this.#context = context;
    const thresholds: Record<string, number> = { ...DEFAULT_THRESHOLDS };
    for (const [key, value] of Object.entries(config)) {
      if (key === "consecutive" || key === "hysteresis") continue;
      if (typeof value === "number") thresholds[key] = value;
    }
    this.#thresholds = thresholds;
    this.#consecutive = typeof config.consecutive === "number" ? config.consecutive : 3;
    this.#hysteresis = typeof config.hysteresis === "number" ? config.hysteresis : 5;
    // Alerts already firing stay firing under new settings; counts restart.
    for (const [metric, state] of this.#state) {
      if (!(metric in thresholds)) this.#state.delete(metric);
      else state.breaches = 0;
    }
  }

  run(sample: Sample): Sample {
    for (const [metric, value] of Object.entries(sample.metrics)) {
      const threshold = this.#thresholds[metric];
      if (threshold === undefined) continue;
      let state = this.#state.get(metric);
      if (!state) {
        state = { breaches: 0, firing: false };
        this.#state.set(metric, state);
      }
      if (value > threshold) {
        state.breaches++;
        if (!state.firing && state.breaches >= this.#consecutive) {
          state.firing = true;
          this.#emit(metric, value, threshold, "firing", sample.timestamp);
        }
      } else {
        state.breaches = 0;
        if (state.firing && value < threshold - this.#hysteresis) {
          state.firing = false;
          this.#emit(metric, value, threshold, "resolved", sample.timestamp);
        }
      }
    }
    return sample;
  }

  #emit(
    metric: string,
    value: number,
    threshold: number,
    state: "firing" | "resolved",
    timestamp: number,
  ) {
    const context = this.#context;
    if (!context) return;
    context.emitAlert({ metric, value, threshold, state, timestamp });
    if (state === "firing") {
      context.log(
        "warn",
        `ALERT firing: ${metric} = ${
          value.toFixed(1)
        } above ${threshold} for ${this.#consecutive} samples`,
      );
    } else {
      context.log(
        "info",
        `ALERT resolved: ${metric} = ${
          value.toFixed(1)
        } (threshold ${threshold}, hysteresis ${this.#hysteresis})`,
      );
    }
  }

  finalize(): void {
    this.#state.clear();
  }
}

/** Creates a threshold alert plugin. */
export function createThresholdAlert(): Plugin {
  return new ThresholdAlertPlugin();
}
