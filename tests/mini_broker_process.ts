/**
 * Test support: the broker stand-in of tests/agent_support.ts (MiniBroker) in
 * a subprocess (tests/fixtures/mini_broker_main.ts), for tests that stop the
 * broker while an in-process agent's connection is live.
 *
 * Why a subprocess, and why it is only ever killed: on Deno 2.9.6, a gRPC
 * (node:http2) client session that receives a GOAWAY after one of its streams
 * closed can abort the whole process inside nghttp2 (exit 134,
 * `find_stream_on_goaway_func: Assertion stream->closed_next == NULL`) or
 * segfault (exit 139); see denoland/deno#36788. A graceful gRPC server
 * shutdown sends that GOAWAY, also after the agent has closed its stream
 * (grpc-js keeps the connection a while). Measured on
 * tests/agent_broker_restart_test.ts: with MiniBroker in-process, 2 of 6 runs
 * crashed; with this subprocess shut down gracefully, 1 of 20; killed
 * mid-stream but shut down gracefully at the end, 8 of 32 (the instrumented
 * crash came at that end-of-test shutdown, after agent.stop()); killed both
 * times (the connection just drops, no GOAWAY), 0 of 35. The crash rate of
 * the test depends on machine load, so the sequence was also looped in one
 * process (broker killed, reconnect attempts, reconnect, the client cancels
 * its stream, broker shut down): with a graceful shutdown the process crashed
 * within 7 to 24 cycles in 4 of 4 runs; with SIGKILL, none in 60 cycles.
 *
 * What the subprocess sees (hellos, batches, acknowledgements, results) is
 * mirrored here from its event lines, in the order it happened. Not product
 * code.
 *
 * @module
 */
import type { Batch, CommandResult, Hello, WireSample } from "../services/rpc/mod.ts";
import { ServiceProcess } from "./e2e_support.ts";

const SCRIPT = "tests/fixtures/mini_broker_main.ts";

/** Options of {@linkcode MiniBrokerProcess.start}. */
export interface MiniBrokerProcessOptions {
  /** Largest batch announced in the welcome (default 1000). */
  maxBatchSamples?: number;
  /** The first batch seen (and every re-send of it) ends the stream with INVALID_ARGUMENT and this message. */
  refuseFirstBatch?: string;
  /** Bound on start-up and on each request, ms (default 20 000). */
  timeoutMs?: number;
}

type Event =
  | { event: "ready"; address: string }
  | { event: "hello"; hello: Hello }
  | { event: "batch"; batch: Batch; acked: boolean; refused: string | null }
  | { event: "result"; result: CommandResult }
  | { event: "reply"; id: number };

/** A broker stand-in on a real gRPC server in its own process. */
export class MiniBrokerProcess {
  readonly #process: ServiceProcess;
  readonly #timeoutMs: number;
  #linesRead = 0;
  #hellos: Hello[] = [];
  #received: Batch[] = [];
  #acked = new Map<number, Batch>();
  #refused = new Set<number>();
  #results: CommandResult[] = [];
  #replies = new Set<number>();
  #address = "";
  #nextId = 0;
  #killing: Promise<void> | undefined;

  private constructor(process: ServiceProcess, timeoutMs: number) {
    this.#process = process;
    this.#timeoutMs = timeoutMs;
  }

  /** Starts the subprocess listening on `listen` (`host:port`, a fixed port) and waits until it listens. */
  static async start(
    listen: string,
    options: MiniBrokerProcessOptions = {},
  ): Promise<MiniBrokerProcess> {
    const args = [
      "--no-prompt",
      `--allow-net=${listen}`,
      SCRIPT,
      "--listen",
      listen,
      "--max-batch-samples",
      String(options.maxBatchSamples ?? 1000),
      ...(options.refuseFirstBatch !== undefined
        ? ["--refuse-first-batch", options.refuseFirstBatch]
        : []),
    ];
    const process = new ServiceProcess(`mini broker at ${listen}`, args, { stdin: "piped" });
    const broker = new MiniBrokerProcess(process, options.timeoutMs ?? 20_000);
    try {
      await process.waitForLine(/^\{"event":"ready"/, broker.#timeoutMs, "its ready line");
    } catch (error) {
      await process.stop(5_000).catch(() => {});
      throw error;
    }
    broker.#sync();
    return broker;
  }

  /** `host:port` listened on. */
  get address(): string {
    this.#sync();
    return this.#address;
  }

  /** Hellos received, in arrival order. */
  get hellos(): readonly Hello[] {
    this.#sync();
    return this.#hellos;
  }

  /** Every batch received, in arrival order (re-sends included). */
  get received(): readonly Batch[] {
    this.#sync();
    return this.#received;
  }

  /** Batches acknowledged, by seq. */
  get acked(): ReadonlyMap<number, Batch> {
    this.#sync();
    return this.#acked;
  }

  /** Seqs of batches refused with INVALID_ARGUMENT. */
  get refused(): ReadonlySet<number> {
    this.#sync();
    return this.#refused;
  }

  /** Command results received. */
  get results(): readonly CommandResult[] {
    this.#sync();
    return this.#results;
  }

  /** Acknowledged samples in sequence order. */
  samples(): WireSample[] {
    return [...this.acked.values()].sort((a, b) => a.seq - b.seq).flatMap((b) => b.samples);
  }

  /**
   * Holds acknowledgements (batches are still recorded) or resumes them.
   * Resolves once the subprocess applied it: every batch recorded here before
   * then was handled under the previous setting, every later one under the new.
   */
  async holdAcks(hold: boolean): Promise<void> {
    await this.#request({ op: "hold", value: hold });
  }

  /**
   * Kills the subprocess (SIGKILL) as a crashing broker dies: no status on
   * the streams, no GOAWAY, the connection just drops. Also the way to tear
   * it down (see the module note). Every event it wrote before dying stays
   * readable (an acknowledgement is recorded before it is sent). Idempotent.
   */
  kill(): Promise<void> {
    this.#killing ??= (async () => {
      this.#process.kill("SIGKILL");
      await this.#process.exited(this.#timeoutMs);
      await this.#process.closeStdin();
      this.#sync();
    })();
    return this.#killing;
  }

  async #request(request: Record<string, unknown>): Promise<void> {
    const id = ++this.#nextId;
    await this.#process.write(JSON.stringify({ id, ...request }) + "\n");
    const what = `the reply to ${JSON.stringify(request)}`;
    const deadline = Date.now() + this.#timeoutMs;
    let exited = false;
    this.#process.status.then(() => exited = true);
    while (true) {
      this.#sync();
      if (this.#replies.has(id)) return;
      if (exited) {
        await this.#process.exited(this.#timeoutMs);
        this.#sync();
        if (this.#replies.has(id)) return;
        throw new Error(
          `${this.#process.name} exited before ${what}; output:\n${this.#process.output}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${this.#timeoutMs} ms waiting for ${what} from ${this.#process.name}; output:\n${this.#process.output}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Applies event lines not read yet, in order. */
  #sync(): void {
    const lines = this.#process.lines;
    for (; this.#linesRead < lines.length; this.#linesRead++) {
      const line = lines[this.#linesRead];
      if (!line.startsWith('{"event":')) continue; // stderr (warnings) interleaves
      const event = JSON.parse(line) as Event;
      switch (event.event) {
        case "ready":
          this.#address = event.address;
          break;
        case "hello":
          this.#hellos.push(event.hello);
          break;
        case "batch":
          this.#received.push(event.batch);
          if (event.acked) this.#acked.set(event.batch.seq, event.batch);
          if (event.refused !== null) this.#refused.add(event.batch.seq);
          break;
        case "result":
          this.#results.push(event.result);
          break;
        case "reply":
          this.#replies.add(event.id);
          break;
      }
    }
  }
}
