/**
 * The one escaping rule for values from outside (bus messages, gRPC fields,
 * HTTP paths, config text, plugin and child-process output) before they reach
 * a log line or a terminal.
 *
 * Invariant: the result of {@linkcode escapeText} contains no line break
 * (`\n`, `\r`, U+0085, U+2028, U+2029), no terminal control (C0, DEL, C1,
 * so no ANSI escape sequence) and no bidirectional override, so one value can
 * neither forge a log line nor move the cursor, clear the screen or reorder
 * what a reader sees. Everything else is kept as is; tabs stay tabs. No I/O.
 *
 * @example
 * ```ts
 * import { escapeText } from "./escape.ts";
 * escapeText("x\nFORGED-LINE"); // "x\\nFORGED-LINE"
 * escapeText("\x1b[2J"); // "\\x1b[2J"
 * ```
 *
 * @module
 */

// C0 controls except tab, DEL, C1 controls, line/paragraph separators, bidi
// embeddings/overrides/isolates and the zero-width marks that reorder text.
const UNSAFE =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = {
  "\n": "\\n",
  "\r": "\\r",
  "\b": "\\b",
  "\f": "\\f",
  "\v": "\\v",
  "\0": "\\0",
};

function replacement(char: string): string {
  const named = NAMED[char];
  if (named) return named;
  const code = char.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * Escapes line breaks and terminal controls in `value` (converted with
 * `String()` when not a string) so that it prints as one inert line.
 *
 * @example
 * ```ts
 * import { escapeText } from "./escape.ts";
 * console.log(`refused ${escapeText("a\r\nb")}`); // refused a\r\nb
 * ```
 */
export function escapeText(value: unknown): string {
  const text = typeof value === "string" ? value : String(value);
  UNSAFE.lastIndex = 0;
  return UNSAFE.test(text) ? text.replace(UNSAFE, replacement) : text;
}

/**
 * Escapes each line of a text that is multi-line on purpose (a table, a
 * pretty-printed JSON): the `\n` between lines are kept, everything else
 * follows {@linkcode escapeText}.
 *
 * @example
 * ```ts
 * import { escapeLines } from "./escape.ts";
 * escapeLines("a\nb\x1b[2J"); // "a\nb\\x1b[2J"
 * ```
 */
export function escapeLines(text: string): string {
  return text.split("\n").map(escapeText).join("\n");
}

/**
 * Quotes an outside value for a message: `"…"` with `"` and `\` escaped and
 * the rest as {@linkcode escapeText}, so where it starts and ends is plain.
 *
 * @example
 * ```ts
 * import { quoteText } from "./escape.ts";
 * quoteText('a"b\n'); // "\"a\\\"b\\n\""
 * ```
 */
export function quoteText(value: unknown): string {
  const text = typeof value === "string" ? value : String(value);
  return `"${escapeText(text.replace(/[\\"]/g, (c) => `\\${c}`))}"`;
}
