/**
 * The supervisor's output: every line of a service prefixed with its name
 * (colored on a terminal), supervisor messages, and a pluggable writer so
 * that a console can print above its prompt.
 *
 * Text (the default): `broker    | <the service's line>` and the supervisor's
 * own lines in the services' style, `supervisor| <ISO time> INFO  supervisor:
 * broker ready (pid 12)`. JSON (`log_format: json`): one object a line and no
 * prefix; a service's JSON lines pass through (re-serialized, so still one
 * safe line), anything else a service prints is wrapped as
 * `{time, level, service, message, fields: {stream}}`, and the supervisor's
 * own lines are `{time, level, service: "supervisor", message, fields}`.
 *
 * @module
 */
import { escapeText } from "../common/escape.ts";
import {
  DEFAULT_LOG_FORMAT,
  formatLogRecord,
  jsonLine,
  type LogFormat,
  type LogLevel,
} from "../common/log.ts";
import type { ServiceReporter } from "./process.ts";

/** Where finished lines go (stdout by default; a console's `print` when one runs). */
export type LineWriter = (line: string) => void;

const COLORS: Record<string, string> = {
  broker: "\x1b[36m", // cyan
  analysis: "\x1b[35m", // magenta
  agent: "\x1b[32m", // green
  plugins: "\x1b[34m", // blue
  supervisor: "\x1b[1m", // bold
};
const RED = "\x1b[31m";
const YELLOW = "\x1b[33m";
const RESET = "\x1b[0m";

/** Width of the name column. */
export const NAME_WIDTH = 10;

/** Options of {@linkcode ServiceOutput}. */
export interface ServiceOutputOptions {
  /** Color the names (and warnings, errors). Default: stdout is a terminal and NO_COLOR is unset. */
  color?: boolean;
  /** Default: a line on stdout. */
  write?: LineWriter;
  /** Line format (monitor.yaml `log_format`). Default text. */
  format?: LogFormat;
  /** The clock (ms), for tests. Default `Date.now`. */
  now?: () => number;
}

/** A service's line that is already a JSON log object, parsed; undefined otherwise. */
function parseJsonLogLine(text: string): Record<string, unknown> | undefined {
  if (!text.startsWith("{")) return undefined;
  try {
    const value = JSON.parse(text);
    const ok = typeof value === "object" && value !== null && !Array.isArray(value) &&
      typeof value.level === "string" && typeof value.message === "string";
    return ok ? value : undefined;
  } catch {
    return undefined;
  }
}

/** True when stdout is a terminal and NO_COLOR is not set (needs `--allow-env=NO_COLOR`). */
export function colorWanted(): boolean {
  let noColor = false;
  try {
    noColor = (Deno.env.get("NO_COLOR") ?? "") !== "";
  } catch { /* not allowed: assume no preference */ }
  return !noColor && Deno.stdout.isTerminal();
}

const encoder = new TextEncoder();

/** Writes a line to stdout synchronously (lines of several services never interleave). */
export function writeStdoutLine(line: string): void {
  if (stdoutGone) return;
  const data = encoder.encode(line + "\n");
  let written = 0;
  try {
    while (written < data.length) written += Deno.stdout.writeSync(data.subarray(written));
  } catch {
    // Whoever read our output went away (e.g. `deno task up | head`): keep running, say nothing.
    stdoutGone = true;
  }
}

let stdoutGone = false;

/**
 * Formats and writes the output of every service: `broker     | <line>`.
 * Implements {@linkcode ServiceReporter} for {@linkcode ManagedService}.
 */
export class ServiceOutput implements ServiceReporter {
  #color: boolean;
  #write: LineWriter;
  #format: LogFormat;
  #now: () => number;

  constructor(options: ServiceOutputOptions = {}) {
    this.#color = options.color ?? colorWanted();
    this.#write = options.write ?? writeStdoutLine;
    this.#format = options.format ?? DEFAULT_LOG_FORMAT;
    this.#now = options.now ?? Date.now;
  }

  /** Changes the line format (monitor.yaml `log_format`). */
  setFormat(format: LogFormat): void {
    this.#format = format;
  }

  /** The line format in force. */
  get format(): LogFormat {
    return this.#format;
  }

  /** Redirects lines, e.g. to a console (`undefined`: back to stdout). */
  setWriter(write: LineWriter | undefined): void {
    this.#write = write ?? writeStdoutLine;
  }

  /** True when names are colored. */
  get color(): boolean {
    return this.#color;
  }

  #prefix(name: string): string {
    const padded = name.padEnd(NAME_WIDTH);
    if (!this.#color) return `${padded}| `;
    return `${COLORS[name] ?? COLORS.supervisor}${padded}|${RESET} `;
  }

  /** A line of a service's output, escaped (a child may print what a plugin or a peer sent). */
  line(service: string, stream: "stdout" | "stderr", text: string): void {
    if (this.#format === "json") {
      const record = parseJsonLogLine(text);
      this.#write(
        record ? jsonLine(record) : jsonLine({
          time: new Date(this.#now()).toISOString(),
          level: stream === "stderr" ? "warn" : "info",
          service,
          message: text,
          fields: { stream },
        }),
      );
      return;
    }
    this.#write(this.#prefix(service) + escapeText(text));
  }

  /** A supervisor message about a service: `supervisor| broker ready (pid 12)`. */
  event(service: string, level: "info" | "warn" | "error", message: string): void {
    this.say(level, `${service} ${message}`, { about: service });
  }

  /**
   * A message of the supervisor itself, in the services' style:
   * `supervisor| 2026-…Z WARN  supervisor: <message>` (one line per line of
   * `message`), or a JSON object.
   */
  say(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
    const time = this.#now();
    for (const part of message.split("\n")) {
      const record = { time, level, component: "supervisor", service: "supervisor", message: part };
      if (this.#format === "json") {
        this.#write(formatLogRecord({ ...record, fields }, "json"));
        continue;
      }
      const text = formatLogRecord(record, "text");
      const shown = !this.#color || level === "info" || level === "debug"
        ? text
        : `${level === "error" ? RED : YELLOW}${text}${RESET}`;
      this.#write(this.#prefix("supervisor") + shown);
    }
  }
}
