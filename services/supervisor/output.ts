/**
 * The supervisor's output: every line of a service prefixed with its name
 * (colored on a terminal), supervisor messages, and a pluggable writer so
 * that a console can print above its prompt.
 *
 * @module
 */
import { escapeText } from "../common/escape.ts";
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

  constructor(options: ServiceOutputOptions = {}) {
    this.#color = options.color ?? colorWanted();
    this.#write = options.write ?? writeStdoutLine;
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
  line(service: string, _stream: "stdout" | "stderr", text: string): void {
    this.#write(this.#prefix(service) + escapeText(text));
  }

  /** A supervisor message about a service: `supervisor| broker ready (pid 12)`. */
  event(service: string, level: "info" | "warn" | "error", message: string): void {
    this.say(level, `${service} ${message}`);
  }

  /** A message of the supervisor itself. */
  say(level: "info" | "warn" | "error", message: string): void {
    for (const part of message.split("\n")) {
      const text = level === "info" ? escapeText(part) : `${level}: ${escapeText(part)}`;
      const shown = !this.#color || level === "info"
        ? text
        : `${level === "error" ? RED : YELLOW}${text}${RESET}`;
      this.#write(this.#prefix("supervisor") + shown);
    }
  }
}
