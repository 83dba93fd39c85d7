/**
 * logger: writes each sample to the agent's log at a configurable level
 * (`level`, default `info`), optionally only every `every`-th sample.
 * Samples pass through unchanged.
 *
 * @module
 */
import type { Plugin, PluginContext, PluginLogLevel, Sample, SettingsSchema } from "../api.ts";

/** Settings of the logger plugin. */
export const LOGGER_SETTINGS: SettingsSchema = {
  fields: {
    level: {
      type: "string",
      values: ["debug", "info", "warn", "error"],
      default: "info",
      description: "log level of the sample lines",
    },
    every: {
      type: "number",
      integer: true,
      min: 1,
      max: 1_000_000,
      default: 1,
      description: "log one sample out of this many",
    },
  },
};

/** Formats a sample as one line: `sample 2026-...Z cpu=12.5 memory=40.1`. */
export function formatSample(sample: Sample): string {
  const when = new Date(sample.timestamp * 1000).toISOString();
  const values = Object.entries(sample.metrics).map(([name, value]) =>
    `${name.replace(/ /g, "_")}=${Number.isInteger(value) ? value : value.toFixed(2)}`
  );
  return `sample ${when} ${values.join(" ")}`.trimEnd();
}

/** The logger plugin. */
export class LoggerPlugin implements Plugin {
  readonly name = "logger";
  readonly version = "1.0.0";
  #level: PluginLogLevel = "info";
  #every = 1;
  #seen = 0;
  #context: PluginContext | undefined;

  initialize(config: Record<string, unknown>, context: PluginContext): void {
    this.#context = context;
    this.#level = typeof config.level === "string" ? config.level as PluginLogLevel : "info";
    this.#every = typeof config.every === "number" ? config.every : 1;
    this.#seen = 0;
  }

  run(sample: Sample): Sample {
    if (this.#seen++ % this.#every === 0) this.#context?.log(this.#level, formatSample(sample));
    return sample;
  }

  finalize(): void {
    this.#context = undefined;
  }
}

/** Creates a logger plugin. */
export function createLogger(): Plugin {
  return new LoggerPlugin();
}
