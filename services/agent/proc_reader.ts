/**
 * Reads `/proc` files through one long-lived `awk` child, started on the
 * first read and kept for the life of the collector: no process is started
 * per collection.
 *
 * Why a child at all: since Deno 1.43, reading anything under `/proc` needs
 * `--allow-all`, which the agent never gets; `--allow-run=awk` lets it start
 * `awk`. Starting a `cat` per collection cost about 5 ms of CPU each time
 * (most of the agent's busy time at a 1 s interval); asking a running `awk`
 * costs a pipe round trip.
 *
 * Protocol (the script is fixed, {@linkcode AWK_READER_SCRIPT}): one request
 * line of space-separated absolute paths, each optionally followed by `:N`
 * to read only its first N lines (`/proc/stat:1`); the answer is each file's
 * lines, each file followed by a marker line `\x1eEOF` (or `\x1eERR` when it
 * could not be opened), then `\x1eEND`, written with one `write` (awk
 * builds it first): one wake-up of the agent per answer. The marker byte
 * (ASCII record separator) never appears in the /proc files read.
 *
 * If the child dies (killed, crashed) the pending read fails with the reason
 * and the next read starts a new one. A read that gets no answer within
 * {@linkcode ProcReaderOptions.timeoutMs} kills the child the same way.
 *
 * ```ts
 * const reader = new ProcReader();
 * try {
 *   const [netDev] = await reader.read(["/proc/net/dev"]);
 *   if (typeof netDev === "string") console.log(netDev.split("\n")[0]); // "Inter-|   Receive ..."
 * } finally {
 *   await reader.close();
 * }
 * ```
 *
 * @module
 */
import { errorMessage } from "../common/log.ts";

/** The program the reader runs (granted with `--allow-run=awk`). */
export const PROC_READER_PROGRAM = "awk";

/** Marker byte of the reader's protocol (ASCII RS). */
const RS = "\x1e";

/**
 * The reader's awk program: for each `path[:N]` of a request line, the lines
 * of that file (the first N with `:N`), then a marker line; the whole answer
 * is built first and printed at once (`-W interactive` leaves stdout
 * unbuffered: one print per line was one `write` per line), `fflush()` so
 * that it leaves at once with other awks.
 */
export const AWK_READER_SCRIPT = `{ o = ""; for (i = 1; i <= NF; i++) { ` +
  `n = split($i, p, ":"); m = n > 1 ? p[2] + 0 : -1; c = 0; r = 1; ` +
  `while (c != m && (r = (getline line < p[1])) > 0) { o = o line "\\n"; c++ } ` +
  `o = o (r < 0 ? "\\036ERR\\n" : "\\036EOF\\n"); close(p[1]) } ` +
  `printf "%s\\036END\\n", o; fflush() }`;

/** A request item: an absolute path without spaces or `:`, optionally `:N` (first N lines). */
const FILE_SPEC = /^\/[^\s:]+(?::[1-9]\d{0,5})?$/;

/** The path of a request item (without its `:N`). */
function pathOf(spec: string): string {
  const colon = spec.indexOf(":");
  return colon < 0 ? spec : spec.slice(0, colon);
}

/**
 * `-W interactive` makes mawk (Debian's awk) read its input line by line
 * from a pipe instead of waiting to fill a buffer; other awks that refuse the
 * option are started without it.
 */
const INTERACTIVE = ["-W", "interactive"];

/** Options of {@linkcode ProcReader}. */
export interface ProcReaderOptions {
  /** Longest wait for an answer before the child is killed (ms, default 5000). */
  timeoutMs?: number;
}

/**
 * Splits one answer of the reader into the texts of the files asked for
 * (each as `cat` would print it, or its first N lines for `path:N`). A file
 * that could not be read is an Error naming it.
 */
export function parseReaderAnswer(
  answer: string,
  files: readonly string[],
): Array<string | Error> {
  const out: Array<string | Error> = [];
  let at = 0;
  while (at < answer.length) {
    const marker = answer.indexOf(RS, at);
    if (marker < 0) break;
    const end = answer.indexOf("\n", marker);
    const kind = answer.slice(marker + 1, end < 0 ? answer.length : end);
    if (kind === "END") break;
    const file = files[out.length];
    out.push(
      kind === "EOF"
        ? answer.slice(at, marker)
        : new Error(`cannot read ${file === undefined ? "?" : pathOf(file)}`),
    );
    if (end < 0) break;
    at = end + 1;
  }
  if (out.length !== files.length) {
    throw new Error(
      `the /proc reader answered ${out.length} file(s) for ${files.length} asked (${
        files.join(" ")
      })`,
    );
  }
  return out;
}

/** The child ended before answering. */
class ReaderExited extends Error {}

interface Pending {
  files: readonly string[];
  resolve(texts: Array<string | Error>): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** A running reader child. */
interface Child {
  process: Deno.ChildProcess;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  stderr: string;
  answered: boolean;
  interactive: boolean;
  /** Set once it exited on its own with a non-zero code. */
  failedCode?: number;
  done: Promise<void>;
}

/** Reads /proc files through one long-lived `awk` (see the module doc). */
export class ProcReader {
  #timeoutMs: number;
  #child: Child | undefined;
  #pending: Pending | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #interactive = true;
  #starts = 0;
  #closed = false;
  /** Every child not yet reaped (a killed one finishes in the background). */
  #live = new Set<Promise<void>>();

  constructor(options: ProcReaderOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  /** How many times a child was started (1 while it lives). */
  get starts(): number {
    return this.#starts;
  }

  /** The pid of the running child, if any. */
  get pid(): number | undefined {
    return this.#child?.process.pid;
  }

  /**
   * Reads `files` (absolute paths without spaces or `:`, each optionally
   * followed by `:N` for its first N lines only); each result is the file's
   * text, or an Error when that file could not be opened. Rejects when the
   * child cannot be started (the message names `--allow-run=awk` when that
   * permission is missing) or died.
   */
  read(files: readonly string[]): Promise<Array<string | Error>> {
    for (const file of files) {
      if (!FILE_SPEC.test(file)) {
        return Promise.reject(
          new TypeError(
            `proc reader: not a plain absolute path (optionally with :N lines): ${file}`,
          ),
        );
      }
    }
    const run = this.#queue.then(() => this.#readNow(files));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #readNow(files: readonly string[]): Promise<Array<string | Error>> {
    if (this.#closed) throw new Error("the /proc reader is closed");
    if (files.length === 0) return [];
    const child = this.#child ?? this.#start();
    try {
      return await this.#ask(child, files);
    } catch (error) {
      if (!(error instanceof ReaderExited) || this.#closed) throw error;
      // An awk that refuses `-W interactive` exits at once with an error: start it without.
      if (child.interactive && !child.answered && child.failedCode !== undefined) {
        this.#interactive = false;
      }
      // The child died (killed, crashed) since the last read: one new one, asked once more.
      return await this.#ask(this.#start(), files);
    }
  }

  #start(): Child {
    let process: Deno.ChildProcess;
    const interactive = this.#interactive;
    try {
      process = new Deno.Command(PROC_READER_PROGRAM, {
        args: [...(interactive ? INTERACTIVE : []), AWK_READER_SCRIPT],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      if (
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        throw new Error(`needs --allow-run=${PROC_READER_PROGRAM} (${errorMessage(error)})`);
      }
      throw new Error(`cannot run ${PROC_READER_PROGRAM}: ${errorMessage(error)}`);
    }
    this.#starts++;
    const child: Child = {
      process,
      writer: process.stdin.getWriter(),
      stderr: "",
      answered: false,
      interactive,
      done: Promise.resolve(),
    };
    this.#child = child;
    const stdout = this.#readStdout(child);
    const stderr = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of process.stderr) {
        child.stderr = (child.stderr + decoder.decode(chunk, { stream: true })).slice(-2000);
      }
    })().catch(() => {});
    child.done = Promise.all([stdout, stderr, process.status]).then(() => {}, () => {});
    this.#live.add(child.done);
    child.done.then(() => this.#live.delete(child.done));
    return child;
  }

  async #readStdout(child: Child): Promise<void> {
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for await (const chunk of child.process.stdout) {
        buffered += decoder.decode(chunk, { stream: true });
        const end = buffered.indexOf(`${RS}END\n`);
        if (end < 0) continue;
        const answer = buffered.slice(0, end + 5);
        buffered = buffered.slice(end + 5);
        const pending = this.#pending;
        this.#pending = undefined;
        if (!pending) continue;
        clearTimeout(pending.timer);
        child.answered = true;
        try {
          pending.resolve(parseReaderAnswer(answer, pending.files));
        } catch (error) {
          pending.reject(error as Error);
        }
      }
    } catch { /* the child's stdout failed: handled as its end */ }
    // The child is gone: fail what waits for it; the next read starts a new one.
    const status = await child.process.status.catch(() => undefined);
    if (status && !status.signal && status.code !== 0) child.failedCode = status.code;
    await child.writer.close().catch(() => {});
    if (this.#child === child) this.#child = undefined;
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) {
      clearTimeout(pending.timer);
      const why = status
        ? `exited with ${status.signal ? `signal ${status.signal}` : `code ${status.code}`}`
        : "ended";
      const stderr = child.stderr.trim();
      pending.reject(
        new ReaderExited(
          `the /proc reader (${PROC_READER_PROGRAM}) ${why}${stderr ? `: ${stderr}` : ""}`,
        ),
      );
    }
  }

  #ask(child: Child, files: readonly string[]): Promise<Array<string | Error>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#pending?.timer !== timer) return;
        this.#pending = undefined;
        reject(new Error(`the /proc reader gave no answer within ${this.#timeoutMs} ms`));
        this.#kill(child);
      }, this.#timeoutMs);
      this.#pending = { files, resolve, reject, timer };
      child.writer.write(new TextEncoder().encode(`${files.join(" ")}\n`)).catch(() => {
        // The child is gone; #readStdout rejects the pending read with its exit status.
      });
    });
  }

  #kill(child: Child) {
    if (this.#child === child) this.#child = undefined;
    try {
      child.process.kill("SIGKILL");
    } catch { /* already gone */ }
  }

  /** Ends the child (its input closed, killed if it lingers) and waits for it. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#queue;
    const child = this.#child;
    this.#child = undefined;
    if (child) {
      await child.writer.close().catch(() => {});
      const timer = setTimeout(() => {
        try {
          child.process.kill("SIGKILL");
        } catch { /* gone */ }
      }, 2000);
      await child.done;
      clearTimeout(timer);
    }
    await Promise.all([...this.#live]);
  }
}
