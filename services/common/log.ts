/**
 * Minimal structured logger shared by the services.
 *
 * Text lines look like `2026-11-25T10:00:00.000Z INFO  broker: agent web-1 connected`.
 * With {@linkcode setLogFormat}`("json")` (monitor.yaml `log_format: json`,
 * `--log-format json`) each line is one JSON object, as log shippers (Vector,
 * the OpenTelemetry Collector, Loki's promtail) read them:
 * `{"time":"2026-…Z","level":"info","service":"broker","message":"…","fields":{"component":"broker/health"}}`,
 * with `agent` when the process is an agent ({@linkcode setLogContext}).
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

/** Log line formats (monitor.yaml `log_format`). */
export const LOG_FORMATS = ["text", "json"] as const;
/** One of {@linkcode LOG_FORMATS}. */
export type LogFormat = typeof LOG_FORMATS[number];
/** The default format. */
export const DEFAULT_LOG_FORMAT: LogFormat = "text";

/** True when `value` names a log format. */
export function isLogFormat(value: unknown): value is LogFormat {
  return typeof value === "string" && (LOG_FORMATS as readonly string[]).includes(value);
}

let format: LogFormat = DEFAULT_LOG_FORMAT;
let context: LogContext = {};

/** Who is logging, for JSON lines. */
export interface LogContext {
  /** The service (`broker`, `agent`, `analysis`, `supervisor`, `plugins`). */
  service?: string;
  /** The agent id, in an agent process. */
  agent?: string;
}

/** Sets the line format of every logger (default `text`). */
export function setLogFormat(next: LogFormat): void {
  format = next;
}

/** The line format in force. */
export function logFormat(): LogFormat {
  return format;
}

/** Names the service (and agent) that JSON lines carry. */
export function setLogContext(next: LogContext): void {
  context = { ...next };
}

/** One log record, before formatting. */
export interface LogRecord {
  /** When (ms since the epoch). */
  time: number;
  level: LogLevel;
  /** The component that logged, e.g. `broker/health`. */
  component: string;
  message: string;
  /** Structured details. */
  fields?: Record<string, unknown>;
  /** Default: the process's {@linkcode setLogContext}. */
  service?: string;
  agent?: string;
}

// What JSON.stringify leaves raw but a terminal or a line reader must not see raw: DEL, C1,
// line/paragraph separators and bidirectional controls (C0 controls it escapes itself).
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `value` as JSON on one line with no terminal control and no line break,
 * even inside strings (escaped as `\uXXXX`, still valid JSON).
 */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value).replace(
    JSON_UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Formats a record as a line: text (`<ISO time> LEVEL component: message`,
 * escaped) or JSON (`{time, level, service, agent?, message, fields}`).
 *
 * @example
 * ```ts
 * import { formatLogRecord } from "./log.ts";
 * const line = formatLogRecord(
 *   { time: 0, level: "info", component: "broker", message: "up", service: "broker" },
 *   "json",
 * );
 * console.assert(JSON.parse(line).service === "broker");
 * ```
 */
export function formatLogRecord(record: LogRecord, as: LogFormat = format): string {
  const time = new Date(record.time).toISOString();
  if (as === "json") {
    const service = record.service ?? context.service ?? record.component.split(/[/ ]/)[0];
    const agent = record.agent ?? context.agent;
    return jsonLine({
      time,
      level: record.level,
      service,
      ...(agent !== undefined ? { agent } : {}),
      message: record.message,
      fields: { component: record.component, ...record.fields },
    });
  }
  const fields = record.fields && Object.keys(record.fields).length > 0
    ? ` ${escapeText(JSON.stringify(record.fields))}`
    : "";
  return `${time} ${record.level.toUpperCase().padEnd(5)} ${escapeText(record.component)}: ${
    escapeText(record.message)
  }${fields}`;
}

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
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** Logs at a level chosen at run time. */
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
  /** A logger for a sub-component, e.g. `agent/pipeline`. */
  child(name: string): Logger;
}

/**
 * Creates a logger for a component.
 * @param component name shown on every line, e.g. `broker`
 */
export function getLogger(component: string): Logger {
  const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(threshold)) return;
    sink(formatLogRecord({ time: Date.now(), level, component, message, fields }), level);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    log: emit,
    child: (name) => getLogger(`${component}/${name}`),
  };
}

/** Formats any thrown value as one line. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
