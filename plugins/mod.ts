/**
 * Registry of the built-in plugins: every accepted name (short name, class
 * name, dotted seed name) mapped to the plugin's factory and settings schema.
 *
 * @module
 */
import type { Plugin, SettingsSchema } from "./api.ts";
import { createDuplicateFilter, DUPLICATE_FILTER_SETTINGS } from "./duplicate_filter/mod.ts";
import { createThresholdAlert, THRESHOLD_ALERT_SETTINGS } from "./threshold_alert/mod.ts";
import { createLogger, LOGGER_SETTINGS } from "./logger/mod.ts";

export type * from "./api.ts";

/** A plugin built into the agent. */
export interface BuiltinPlugin {
  /** Short name, e.g. `duplicate_filter` (the canonical name). */
  readonly name: string;
  /** Class name as in the seed's `plugin_configs`, e.g. `DuplicateFilterPlugin`. */
  readonly className: string;
  /** Dotted seed name, e.g. `plugins.duplicate_filter.DuplicateFilterPlugin`. */
  readonly seedName: string;
  /** One line saying what it does. */
  readonly description: string;
  /** Its settings. */
  readonly settings: SettingsSchema;
  /** Creates a fresh instance. */
  create(): Plugin;
}

function builtin(
  name: string,
  className: string,
  description: string,
  settings: SettingsSchema,
  create: () => Plugin,
): BuiltinPlugin {
  return Object.freeze({
    name,
    className,
    seedName: `plugins.${name}.${className}`,
    description,
    settings,
    create,
  });
}

/** Every built-in plugin. */
export const BUILTIN_PLUGINS: readonly BuiltinPlugin[] = Object.freeze([
  builtin(
    "duplicate_filter",
    "DuplicateFilterPlugin",
    "drops values unchanged since last sent, but sends each metric at least every N samples",
    DUPLICATE_FILTER_SETTINGS,
    createDuplicateFilter,
  ),
  builtin(
    "threshold_alert",
    "ThresholdAlertPlugin",
    "raises firing/resolved alerts when a metric stays above its threshold",
    THRESHOLD_ALERT_SETTINGS,
    createThresholdAlert,
  ),
  builtin(
    "logger",
    "LoggerPlugin",
    "logs each sample at a configurable level",
    LOGGER_SETTINGS,
    createLogger,
  ),
]);

/** Finds a built-in plugin by any of its names (short, class, dotted seed name). */
export function findBuiltinPlugin(name: string): BuiltinPlugin | undefined {
  return BUILTIN_PLUGINS.find((p) =>
    p.name === name || p.className === name || p.seedName === name
  );
}
