/**
 * Minimal structured logger shared by the services.
 *
 * Lines look like `2026-11-25T10:00:00.000Z INFO  broker: agent web-1 connected`.
 * A console can install a sink with {@linkcode setLogSink} so that log lines
 * are printed above its prompt instead of garbling it.
 *
 * Every message is escaped with {@linkcode escapeText} (messages carry values
 * from outside: bus messages, gRPC fields, HTTP paths), so one log call is one
 * line and never a terminal control sequence.
 *
 * @module
 */

import { escapeText } from "./escape.ts";

/** Log levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Receives every formatted line at or above the threshold. */
export type LogSink = (line: string, level: LogLevel) => void;

const defaultSink: LogSink = (line, level) => {
  if (level === "warn" || level === "error") console.error(line);
  else console.log(line);
};

let sink: LogSink = defaultSink;
let threshold: LogLevel = "info";

/** Replaces the output of every logger; `undefined` restores stdout/stderr. */
export function setLogSink(next: LogSink | undefined): void {
  sink = next ?? defaultSink;
}

/** Sets the lowest level that is printed (default `info`). */
export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

/** True when `value` names a log level. */
export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === "string" && (LOG_LEVELS as readonly string[]).includes(value);
}

/** A logger bound to one component name. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /** Logs at a level chosen at run time. */
  log(level: LogLevel, message: string): void;
  /** A logger for a sub-component, e.g. `agent/pipeline`. */
  child(name: string): Logger;
}

/**
 * Creates a logger for a component.
 * @param component name shown on every line, e.g. `broker`
 */
export function getLogger(component: string): Logger {
  const emit = (level: LogLevel, message: string) => {
    if (LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(threshold)) return;
    const line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${
      escapeText(component)
    }: ${escapeText(message)}`;
    sink(line, level);
  };
  return {
    debug: (m) => emit("debug", m),
    info: (m) => emit("info", m),
    warn: (m) => emit("warn", m),
    error: (m) => emit("error", m),
    log: emit,
    child: (name) => getLogger(`${component}/${name}`),
  };
}

/** Formats any thrown value as one line. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
