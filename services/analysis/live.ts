/**
 * Shows the analysis live view: in the console's status area, redrawn in
 * place on a bare terminal, or as a periodic compact summary when the output
 * is not a terminal (supervised, piped).
 *
 * @module
 */
import process from "node:process";
import * as readline from "node:readline";
import type { Writable } from "node:stream";
import { getLogger, type Logger, setLogSink } from "../common/log.ts";
import { COLOR, PLAIN, type Style, truncate } from "../console/format.ts";
import type { Console } from "../console/repl.ts";
import type { Analysis } from "./analysis.ts";
import { renderView, summaryLines } from "./view.ts";

/** Options of {@linkcode startLiveDisplay}. */
export interface LiveDisplayOptions {
  analysis: Analysis;
  /**
   * `console`: the status area of `console`; `tty`: redrawn in place on
   * `output`; `summary`: periodic lines through `write`; `none`: nothing.
   */
  mode: "console" | "tty" | "summary" | "none";
  /** Required for mode `console`. */
  console?: Console;
  /** Terminal for mode `tty`. Default: the process's stdout. */
  output?: Writable;
  /** Where summary lines go. Default: the `analysis` logger at info. */
  write?: (line: string) => void;
  /** Redraw period on terminals (ms). Default 1000. */
  refreshMs?: number;
  /** Summary period (ms). Default 10000. */
  summaryMs?: number;
  /** Colors. Default: on for terminals unless NO_COLOR. */
  color?: boolean;
  log?: Logger;
}

/** A running display. */
export interface LiveDisplay {
  /** Renders now (also used by tests). */
  refresh(): void;
  /** Stops refreshing and restores the log output. */
  stop(): void;
}

function noColor(): boolean {
  try {
    return Deno.env.get("NO_COLOR") !== undefined;
  } catch {
    return false;
  }
}

/** Starts showing the live view. */
export function startLiveDisplay(options: LiveDisplayOptions): LiveDisplay {
  const { analysis, mode } = options;
  const log = options.log ?? getLogger("analysis");
  const onTerminal = mode === "console" || mode === "tty";
  const style: Style = (options.color ?? (onTerminal && !noColor())) ? COLOR : PLAIN;
  if (mode === "none") return { refresh() {}, stop() {} };

  if (mode === "summary") {
    const period = options.summaryMs ?? 10_000;
    const write = options.write ?? ((line: string) => log.info(line));
    let samples = 0;
    let alertChanges = 0;
    const unsubscribe = analysis.onEvent((event) => {
      if (event.type === "data") samples++;
      if (event.type === "alert") alertChanges++;
    });
    const refresh = () => {
      if (samples === 0 && alertChanges === 0) return;
      for (
        const line of summaryLines(analysis.agents(), samples, period / 1000, Date.now(), style)
      ) {
        write(line);
      }
      samples = 0;
      alertChanges = 0;
    };
    const timer = setInterval(refresh, period);
    return {
      refresh,
      stop() {
        clearInterval(timer);
        unsubscribe();
      },
    };
  }

  if (mode === "console") {
    const target = options.console;
    if (!target) throw new TypeError("live display: mode console needs a console");
    return redrawn(
      () => target.setStatus(renderView(analysis.agents(), Date.now(), style)),
      options.refreshMs ?? 1000,
      () => target.setStatus([]),
    );
  }

  // mode "tty": a block redrawn in place, log lines printed above it.
  const output = options.output ?? process.stdout;
  let height = 0;
  const erase = () => {
    if (height > 0) {
      readline.moveCursor(output, 0, -height);
      readline.cursorTo(output, 0);
      readline.clearScreenDown(output);
    }
    height = 0;
  };
  const draw = () => {
    const reported = (output as { columns?: number }).columns;
    const width = (reported && reported >= 20 ? reported : 120) - 1;
    const lines = renderView(analysis.agents(), Date.now(), style).map((l) => truncate(l, width));
    output.write(lines.join("\n") + "\n");
    height = lines.length;
  };
  const refresh = () => {
    erase();
    draw();
  };
  setLogSink((line) => {
    erase();
    output.write(line + "\n");
    draw();
  });
  return redrawn(refresh, options.refreshMs ?? 1000, () => setLogSink(undefined));
}

/** Calls `refresh` now and every `ms`; `stop` clears the timer, then calls `after`. */
function redrawn(refresh: () => void, ms: number, after: () => void): LiveDisplay {
  const timer = setInterval(refresh, ms);
  refresh();
  return {
    refresh,
    stop() {
      clearInterval(timer);
      after();
    },
  };
}
