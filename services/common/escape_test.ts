import assert from "node:assert/strict";
import { escapeLines, escapeText, quoteText } from "./escape.ts";
import { getLogger, setLogSink } from "./log.ts";
import { formatIssue } from "../config/issues.ts";

Deno.test("escapeText: line breaks, terminal controls and bidi overrides become visible escapes", () => {
  assert.equal(escapeText("x\nFORGED-LINE"), "x\\nFORGED-LINE");
  assert.equal(escapeText("a\r\nb"), "a\\r\\nb");
  assert.equal(escapeText("\x1b[2J"), "\\x1b[2J");
  assert.equal(escapeText("\x9b2J\x7f\0"), "\\x9b2J\\x7f\\0");
  assert.equal(escapeText("a\u2028b\u2029c\u0085"), "a\\u2028b\\u2029c\\x85");
  assert.equal(escapeText("\u202eevil\u2066"), "\\u202eevil\\u2066");
  // Ordinary text, tabs and non-ASCII letters are kept as they are.
  assert.equal(escapeText("cpu\t12.5 % — Grüße 日本"), "cpu\t12.5 % — Grüße 日本");
  assert.equal(escapeText(42), "42");
  for (let code = 0; code < 0x20; code++) {
    if (code === 9) continue;
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(escapeText(String.fromCharCode(code)), /[\x00-\x1f]/);
  }
});

Deno.test("escapeLines keeps intended line breaks; quoteText marks where a value starts and ends", () => {
  assert.equal(escapeLines("a\nb\x1b[2J"), "a\nb\\x1b[2J");
  assert.equal(quoteText('a"b\\\n'), '"a\\"b\\\\\\n"');
});

Deno.test("the logger escapes every message: one call is one line, no ANSI sequence", () => {
  const lines: string[] = [];
  setLogSink((line) => lines.push(line));
  try {
    getLogger("broker\x1b[31m").warn('refused "x\nFORGED-LINE" and \x1b[2J');
  } finally {
    setLogSink(undefined);
  }
  assert.equal(lines.length, 1);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(lines[0], /[\n\r\x1b]/);
  assert.match(lines[0], /broker\\x1b\[31m: refused "x\\nFORGED-LINE" and \\x1b\[2J$/);
});

Deno.test("config issues are one line each, whatever the document's keys hold", () => {
  const line = formatIssue({
    path: "agents.web\x1b[2J\nFORGED",
    expected: "a known key",
    found: '"\u2028x" (a string)',
  }, "monitor.yaml");
  assert.equal(
    line,
    'monitor.yaml: agents.web\\x1b[2J\\nFORGED: expected a known key, found "\\u2028x" (a string)',
  );
});
