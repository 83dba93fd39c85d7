/**
 * End-to-end test support: service subprocesses (broker, analysis, agent)
 * with scoped permissions, their output, free ports. Not product code.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePorts } from "./harness/free_port.ts";
import { shellQuote } from "../services/supervisor/commands.ts";
import { delay, within } from "./broker_support.ts";

/** One flag per permission from several builders (the permission module's merge). */
export { mergePermissionFlags } from "../services/common/permissions.ts";

/** Root of the repository. */
export const REPO = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

/** A service running as a `deno run` subprocess, with its output collected line by line. */
export class ServiceProcess {
  /** Every line of stdout and stderr, in arrival order (per stream). */
  readonly lines: string[] = [];
  /** Everything written to stdout and stderr, as received (terminal output keeps its escapes). */
  raw = "";
  readonly child: Deno.ChildProcess;
  readonly status: Promise<Deno.CommandStatus>;
  #readers: Promise<void>[] = [];
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;

  /**
   * @param name shown in failures
   * @param args arguments of `deno run` (permissions, script, flags)
   * @param options `stdin: "piped"` to write to it; `command` to run something else than `deno run`
   */
  constructor(
    readonly name: string,
    args: string[],
    options: {
      stdin?: "piped" | "null";
      env?: Record<string, string>;
      cwd?: string;
      command?: string;
    } = {},
  ) {
    this.child = new Deno.Command(options.command ?? "deno", {
      args: options.command ? args : ["run", ...args],
      cwd: options.cwd ?? REPO,
      stdin: options.stdin ?? "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...options.env },
    }).spawn();
    if (options.stdin === "piped") this.#stdin = this.child.stdin.getWriter();
    this.#readers.push(this.#read(this.child.stdout), this.#read(this.child.stderr));
    this.status = this.child.status;
  }

  async #read(stream: ReadableStream<Uint8Array>) {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      this.raw += chunk;
      buffer += chunk;
      let newline = buffer.indexOf("\n");
      while (newline >= 0) {
        this.lines.push(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf("\n");
      }
    }
    if (buffer !== "") this.lines.push(buffer);
  }

  /** All output so far as one text. */
  get output(): string {
    return this.lines.join("\n");
  }

  /** Waits for an output line matching `pattern`; fails (with the output) after `ms` or on exit. */
  async waitForLine(pattern: RegExp, ms: number, what = String(pattern)): Promise<string> {
    const deadline = Date.now() + ms;
    let exited = false;
    this.status.then(() => exited = true);
    while (true) {
      const found = this.lines.find((l) => pattern.test(l));
      if (found !== undefined) return found;
      if (exited) {
        await delay(50);
        const late = this.lines.find((l) => pattern.test(l));
        if (late !== undefined) return late;
        throw new Error(`${this.name} exited before ${what}; output:\n${this.output}`);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${ms} ms waiting for ${what} from ${this.name}; output:\n${this.output}`,
        );
      }
      await delay(25);
    }
  }

  /** Waits until the raw output (from `from` on) matches `pattern`; returns the index after the match. */
  async waitForText(pattern: RegExp, ms: number, from = 0): Promise<number> {
    const deadline = Date.now() + ms;
    let exited = false;
    this.status.then(() => exited = true);
    while (true) {
      const match = pattern.exec(this.raw.slice(from));
      if (match) return from + match.index + match[0].length;
      if (exited) {
        await Promise.all(this.#readers);
        const late = pattern.exec(this.raw.slice(from));
        if (late) return from + late.index + late[0].length;
        throw new Error(`${this.name} exited before ${pattern}; output:\n${this.raw.slice(from)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${ms} ms waiting for ${pattern} from ${this.name}; output:\n${
            this.raw.slice(from)
          }`,
        );
      }
      await delay(25);
    }
  }

  /** Writes text to stdin (started with `stdin: "piped"`). */
  async write(text: string): Promise<void> {
    if (!this.#stdin) throw new Error(`${this.name}: stdin is not piped`);
    await this.#stdin.write(new TextEncoder().encode(text));
  }

  /** Types `text` on stdin (keys, in a terminal), then lets the terminal settle for 150 ms. */
  async type(text: string): Promise<void> {
    await this.write(text);
    await delay(150);
  }

  /** Closes stdin (end of input). */
  async closeStdin(): Promise<void> {
    const writer = this.#stdin;
    this.#stdin = undefined;
    await writer?.close().catch(() => {});
  }

  /** Sends a signal (ignored once exited). */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch { /* already exited */ }
  }

  /** Waits for the exit (bounded) and for the output to be read. */
  async exited(ms = 20_000): Promise<Deno.CommandStatus> {
    const status = await within(this.status, ms, `${this.name} to exit`);
    await Promise.all(this.#readers);
    return status;
  }

  /** Stops gracefully (SIGTERM), then forcefully after `ms`; always collects the output. */
  async stop(ms = 15_000): Promise<Deno.CommandStatus> {
    await this.closeStdin();
    this.kill("SIGTERM");
    try {
      return await this.exited(ms);
    } catch {
      this.kill("SIGKILL");
      return await this.exited(10_000);
    }
  }
}

/**
 * Runs `argv` in a pseudo-terminal through script(1), its input our pipe
 * (write or {@linkcode ServiceProcess.type} into it), with `TERM=xterm` and
 * no editor set (unless `env` sets one).
 */
export function inTerminal(
  name: string,
  argv: string[],
  env: Record<string, string> = {},
): ServiceProcess {
  const command = argv.map(shellQuote).join(" ");
  return new ServiceProcess(name, ["-qfec", command, "/dev/null"], {
    command: "script",
    stdin: "piped",
    env: { TERM: "xterm", EDITOR: "", VISUAL: "", ...env },
  });
}

/** A `deno task up` system in a temporary folder: its monitor.yaml and state folder. */
export interface UpFolder {
  /** The temporary folder (remove it when done). */
  dir: string;
  /** The state folder the monitor.yaml names. */
  stateDir: string;
  /** The monitor.yaml written there. */
  file: string;
}

/**
 * Writes a monitor.yaml for one `deno task up` in a new temporary folder:
 * broker and admin API on free loopback ports, the local agent `agentId`,
 * and a default configuration collecting cpu every `interval` seconds
 * without plugins.
 */
export async function upFolder(
  prefix: string,
  agentId: string,
  interval: number,
): Promise<UpFolder> {
  const dir = await Deno.makeTempDir({ prefix });
  const stateDir = join(dir, "state");
  const file = join(dir, "monitor.yaml");
  const [port, adminPort] = freePorts(2);
  await Deno.writeTextFile(
    file,
    `state_dir: ${stateDir}
broker: { listen: 127.0.0.1:${port}, admin: 127.0.0.1:${adminPort} }
agent: { id: ${agentId} }
agents:
  default: { interval: ${interval}, metrics: [cpu], plugins: [] }
`,
  );
  return { dir, stateDir, file };
}
