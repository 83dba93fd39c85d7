/**
 * Text formatting shared by consoles and live views: metric values, ages,
 * tables, colors (only on terminals, and never with NO_COLOR).
 *
 * @module
 */
import { escapeText } from "../common/escape.ts";

/** ANSI styles used by the consoles. */
export interface Style {
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  bold(text: string): string;
  dim(text: string): string;
}

const wrap = (open: number, close: number) => (text: string) =>
  `\u001b[${open}m${text}\u001b[${close}m`;

/** Styles that color the text. */
export const COLOR: Style = {
  red: wrap(31, 39),
  green: wrap(32, 39),
  yellow: wrap(33, 39),
  bold: wrap(1, 22),
  dim: wrap(2, 22),
};

/** Styles that leave the text alone. */
export const PLAIN: Style = {
  red: (t) => t,
  green: (t) => t,
  yellow: (t) => t,
  bold: (t) => t,
  dim: (t) => t,
};

/** Removes ANSI escape sequences (for measuring). */
export function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "");
}

/** Visible width of a text (ANSI sequences not counted). */
export function visibleLength(text: string): number {
  return stripAnsi(text).length;
}

/** Cuts a text to `width` visible characters, keeping ANSI sequences balanced enough to reset. */
export function truncate(text: string, width: number): string {
  if (width <= 0) return "";
  if (visibleLength(text) <= width) return text;
  let out = "";
  let visible = 0;
  // deno-lint-ignore no-control-regex
  const parts = text.split(/(\u001b\[[0-9;?]*[A-Za-z])/);
  for (const part of parts) {
    // deno-lint-ignore no-control-regex
    if (/^\u001b\[/.test(part)) {
      out += part;
      continue;
    }
    for (const ch of part) {
      if (visible >= width - 1) {
        return out + "…\u001b[0m";
      }
      out += ch;
      visible++;
    }
  }
  return out;
}

/** Bytes as a short human text: `512 B`, `1.5 KiB`, `3.2 MiB`. */
export function formatBytes(value: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Math.abs(value);
  let unit = 0;
  while (v >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit++;
  }
  const sign = value < 0 ? "-" : "";
  return `${sign}${unit === 0 ? Math.round(v) : v.toFixed(1)} ${units[unit]}`;
}

/** A number with at most `digits` decimals, no trailing zeros. */
export function formatNumber(value: number, digits = 1): string {
  if (!Number.isFinite(value)) return String(value);
  return String(Math.round(value * 10 ** digits) / 10 ** digits);
}

/** Short label of a metric for compact lines. */
const SHORT_NAMES: Record<string, string> = {
  "cpu": "cpu",
  "memory": "mem",
  "disk": "disk",
  "disk read": "rd",
  "disk write": "wr",
  "net in": "in",
  "net out": "out",
};

/** A metric value in its natural unit: percent for cpu/memory/disk, bytes/s for rates. */
export function formatMetric(name: string, value: number): string {
  if (name === "cpu" || name === "memory" || name === "disk") return `${formatNumber(value)}%`;
  if (name.startsWith("disk ") || name.startsWith("net ")) return `${formatBytes(value)}/s`;
  return formatNumber(value, 2);
}

/** `cpu 12.5%  mem 40.1%  rd 1.0 KiB/s ...`: known metrics first, in a fixed order. */
export function formatMetrics(metrics: Record<string, number>): string {
  const order = Object.keys(SHORT_NAMES);
  const names = Object.keys(metrics).sort((a, b) => {
    const ia = order.indexOf(a), ib = order.indexOf(b);
    if (ia >= 0 && ib >= 0) return ia - ib;
    if (ia >= 0) return -1;
    if (ib >= 0) return 1;
    return a.localeCompare(b);
  });
  return names.map((n) => `${SHORT_NAMES[n] ?? escapeText(n)} ${formatMetric(n, metrics[n])}`)
    .join("  ");
}

/** How long ago a Unix-seconds time was: `3s ago`, `5m ago`, `2h ago`, `never`. */
export function formatAge(unixSeconds: number | null | undefined, nowMs = Date.now()): string {
  if (unixSeconds === null || unixSeconds === undefined || unixSeconds <= 0) return "never";
  const seconds = Math.max(0, Math.round(nowMs / 1000 - unixSeconds));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

/** A Unix-seconds time as local `HH:MM:SS` (with the date when not today). */
export function formatTime(unixSeconds: number | null | undefined, nowMs = Date.now()): string {
  if (unixSeconds === null || unixSeconds === undefined || unixSeconds <= 0) return "-";
  const date = new Date(unixSeconds * 1000);
  const time = date.toTimeString().slice(0, 8);
  const today = new Date(nowMs).toDateString() === date.toDateString();
  return today ? time : `${date.toISOString().slice(0, 10)} ${time}`;
}

/** Lays out rows as aligned columns under a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) =>
    Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? "")))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c + " ".repeat(widths[i] - visibleLength(c)))
      .join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
