/**
 * A `deno` subprocess whose stdout is collected line by line, as the Bus and
 * Store contract suites run their `*_contract_child.ts` (another process using
 * the same backend). Test support, not product code.
 *
 * @module
 */
import { forEachLine } from "../../services/common/lines.ts";

/** A running `deno <args>` (stdin closed) with its stdout lines and stderr. */
export class DenoLineProcess {
  /** Complete stdout lines so far (the last, unterminated one once stdout ends). */
  readonly lines: string[] = [];
  /** True once the process has exited. */
  exited = false;
  /** The exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  /** All of stderr, once the process closed it. */
  readonly stderr: Promise<string>;
  /** Resolves when stdout was read to its end (every line is in {@linkcode lines}). */
  readonly stdoutDone: Promise<void>;
  /** The process itself. */
  protected readonly process: Deno.ChildProcess;

  /** Spawns `deno` with `args`. */
  constructor(args: string[]) {
    this.process = new Deno.Command("deno", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.process.status.then((s) => {
      this.exited = true;
      return s;
    });
    this.stderr = new Response(this.process.stderr).text();
    this.stdoutDone = forEachLine(this.process.stdout, (line) => this.lines.push(line));
  }

  /** The process id. */
  get pid(): number {
    return this.process.pid;
  }

  /** Sends `signal` unless the process has exited. */
  signal(signal: Deno.Signal): void {
    if (!this.exited) this.process.kill(signal);
  }
}
