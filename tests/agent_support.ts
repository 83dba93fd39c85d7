/**
 * Test support for the agent tests: bounded waits, the embedded store in a
 * temporary directory, and a minimal broker on a real gRPC server
 * (services/rpc startRpcServer) that records hellos and batches, acknowledges
 * batches (or holds the acks), and sends commands. Not product code.
 *
 * @module
 */
import { join } from "node:path";
import { type Falsy, waitUntil } from "../services/common/async.ts";
import {
  type Batch,
  type CommandResult,
  type Hello,
  type RpcServer,
  RpcStatus,
  type ServerStream,
  startRpcServer,
  type WireAlert,
  type WireSample,
} from "../services/rpc/mod.ts";
import { openStore } from "../services/store/mod.ts";
import type { Store } from "../services/store/types.ts";

/** Sleeps `ms` milliseconds (services/common/async.ts `sleep`). */
export { sleep as delay } from "../services/common/async.ts";

/** Polls `check` every 25 ms until it returns a truthy value; fails after `ms` naming `what`. */
export function waitFor<T>(
  check: () => T | Falsy | Promise<T | Falsy>,
  ms: number,
  what: string,
): Promise<T> {
  return waitUntil(check, ms, what, { intervalMs: 25 });
}

/** The embedded store in a fresh temporary directory; `cleanup` closes it and removes the directory. */
export async function embeddedStore(): Promise<
  { store: Store; dir: string; path: string; cleanup(): Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "agent-test-" });
  const path = join(dir, "monitor.db");
  const store = await openStore({ backend: "embedded", endpoints: [], prefix: "/monitor", path });
  return {
    store,
    dir,
    path,
    async cleanup() {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A free loopback port (listened on and released). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A broker stand-in on a real gRPC server. */
export class MiniBroker {
  readonly hellos: Hello[] = [];
  /** Every batch received, in arrival order (re-sends included). */
  readonly received: Batch[] = [];
  /** Batches acknowledged, by seq. */
  readonly acked = new Map<number, Batch>();
  readonly results: CommandResult[] = [];
  /** When true, batches are recorded but not acknowledged. */
  holdAcks = false;
  /** When it returns a message, the batch ends the stream with INVALID_ARGUMENT (like the broker). */
  refuse: (batch: Batch) => string | undefined = () => undefined;
  #server: RpcServer;
  #streams: ServerStream[] = [];
  #commandCounter = 0;

  private constructor(server: RpcServer) {
    this.#server = server;
  }

  /** Starts listening on `listen` (default a free port). */
  static async start(listen = "127.0.0.1:0", maxBatchSamples = 1000): Promise<MiniBroker> {
    const holder: { broker?: MiniBroker } = {};
    const server = await startRpcServer({
      listen,
      onStream(stream) {
        holder.broker!.#streams.push(stream);
        stream.onMessage((message) => {
          const b = holder.broker!;
          if (message.hello) {
            b.hellos.push(message.hello);
            stream.send({
              welcome: { broker_version: "mini", max_batch_samples: maxBatchSamples },
            });
          } else if (message.batch) {
            b.received.push(message.batch);
            const problem = b.refuse(message.batch);
            if (problem) {
              stream.fail(RpcStatus.INVALID_ARGUMENT, problem);
              return;
            }
            if (!b.holdAcks) {
              b.acked.set(message.batch.seq, message.batch);
              stream.send({ ack: { seq: message.batch.seq } });
            }
          } else if (message.result) {
            b.results.push(message.result);
          }
        });
      },
    });
    holder.broker = new MiniBroker(server);
    return holder.broker;
  }

  /** `host:port` listened on. */
  get address(): string {
    return this.#server.address;
  }

  /** Acknowledged samples in sequence order. */
  samples(): WireSample[] {
    return [...this.acked.values()].sort((a, b) => a.seq - b.seq).flatMap((b) => b.samples);
  }

  /** Acknowledged alerts in sequence order. */
  alerts(): WireAlert[] {
    return [...this.acked.values()].sort((a, b) => a.seq - b.seq).flatMap((b) => b.alerts);
  }

  /** The newest open stream. */
  #current(): ServerStream | undefined {
    return this.#streams.filter((s) => !s.closed).at(-1);
  }

  /** Sends a command to the connected agent and waits for its result. */
  async command(type: string, argsJson = "", ms = 10_000): Promise<CommandResult> {
    const stream = await waitFor(() => this.#current(), ms, "an agent stream");
    const id = `t-${++this.#commandCounter}-${type}`;
    stream.send({
      command: { command_id: id, command_type: type, args_json: argsJson, timestamp: 1 },
    });
    return await waitFor(
      () => this.results.find((r) => r.command_id === id),
      ms,
      `result of ${id}`,
    );
  }

  /** Ends every stream as a dying broker would and stops listening. */
  async close(): Promise<void> {
    for (const stream of this.#streams) {
      if (!stream.closed) stream.fail(RpcStatus.UNAVAILABLE, "mini broker going away");
    }
    await this.#server.close(500);
  }
}

/** Parses a result's output. */
export function output(result: CommandResult): Record<string, unknown> & { [k: string]: unknown } {
  return JSON.parse(result.output_json);
}
