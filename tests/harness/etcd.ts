/**
 * Test harness: a real etcd (Debian `etcd-server`) on free loopback ports
 * with its own temporary data directory.
 *
 * ```ts
 * const etcd = await startEtcd();
 * try {
 *   // ... use etcd.endpoint ...
 *   await etcd.down(); // connection loss
 *   await etcd.up();   // same ports, same data
 * } finally {
 *   await etcd.stop(); // kills it and removes the data directory
 * }
 * ```
 *
 * A process still running when the test process exits is killed (and its
 * directory removed) by an `unload` handler, so a failing test leaves nothing
 * behind.
 *
 * @module
 */
import { join } from "node:path";
import { freePorts } from "./free_port.ts";
import { requireComponents } from "./provision.ts";

/** Options of {@linkcode startEtcd}. */
export interface EtcdOptions {
  /** Longest wait for etcd to become healthy (ms). Default 30000. */
  startTimeoutMs?: number;
}

/** A running (or stopped-for-now) etcd. */
export interface EtcdServer {
  /** Client endpoint, `127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** Client URL, `http://127.0.0.1:<port>`. */
  readonly clientUrl: string;
  /** Peer port. */
  readonly peerPort: number;
  /** Data directory (removed by {@linkcode EtcdServer.stop}). */
  readonly dataDir: string;
  /** True while the process runs. */
  readonly running: boolean;
  /** Kills the process (SIGKILL: a crash, no goodbye to clients); data and ports are kept. */
  down(): Promise<void>;
  /** Starts the same etcd again (same ports and data) and waits until it is healthy. */
  up(): Promise<void>;
  /** Runs `etcdctl` against this etcd; resolves to its stdout, rejects with its stderr. */
  etcdctl(...args: string[]): Promise<string>;
  /** Kills etcd and removes its data directory. Idempotent. */
  stop(): Promise<void>;
}

/** Output kept per process for error messages. */
const TAIL_BYTES = 16 * 1024;

const live = new Set<EtcdInstance>();
let unloadHooked = false;

function hookUnload() {
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const instance of live) instance.killSync();
  });
}

async function drain(stream: ReadableStream<Uint8Array>, sink: (text: string) => void) {
  const decoder = new TextDecoder();
  for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
}

class EtcdInstance implements EtcdServer {
  readonly endpoint: string;
  readonly clientUrl: string;
  #child: Deno.ChildProcess | undefined;
  #outputDone: Promise<unknown> | undefined;
  #tail = "";
  #stopped = false;
  #exit: Deno.CommandStatus | undefined;

  constructor(
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dataDir: string,
    readonly baseDir: string,
    readonly startTimeoutMs: number,
  ) {
    this.endpoint = `127.0.0.1:${clientPort}`;
    this.clientUrl = `http://${this.endpoint}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  get tail(): string {
    return this.#tail;
  }

  #spawn() {
    const peerUrl = `http://127.0.0.1:${this.peerPort}`;
    const child = new Deno.Command("etcd", {
      args: [
        "--name",
        "test",
        "--data-dir",
        this.dataDir,
        "--listen-client-urls",
        this.clientUrl,
        "--advertise-client-urls",
        this.clientUrl,
        "--listen-peer-urls",
        peerUrl,
        "--initial-advertise-peer-urls",
        peerUrl,
        "--initial-cluster",
        `test=${peerUrl}`,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        `test-${this.clientPort}`,
        "--logger",
        "zap",
        "--log-level",
        "warn",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const keep = (text: string) => {
      this.#tail = (this.#tail + text).slice(-TAIL_BYTES);
    };
    this.#outputDone = Promise.all([drain(child.stdout, keep), drain(child.stderr, keep)]);
    this.#exit = undefined;
    child.status.then((status) => {
      if (this.#child === child) this.#exit = status;
    });
    this.#child = child;
  }

  async #waitHealthy(): Promise<void> {
    const deadline = Date.now() + this.startTimeoutMs;
    let last = "no answer yet";
    while (Date.now() < deadline) {
      if (this.#child === undefined) throw new Error("etcd was stopped while starting");
      const exited = this.#exit;
      if (exited !== undefined) {
        await this.#reap();
        throw new Error(
          `etcd on ${this.endpoint} exited with code ${exited.code} while starting:\n${this.#tail}`,
        );
      }
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 1000);
      try {
        const response = await fetch(`${this.clientUrl}/health`, { signal: abort.signal });
        const body = await response.text();
        if (response.ok && /"health"\s*:\s*"true"/.test(body)) return;
        last = `HTTP ${response.status} ${body.trim()}`;
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      } finally {
        clearTimeout(timer);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `etcd on ${this.endpoint} did not become healthy within ${this.startTimeoutMs} ms (${last}):\n${this.#tail}`,
    );
  }

  async #reap(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await child.status;
    await this.#outputDone;
    this.#child = undefined;
    this.#outputDone = undefined;
  }

  async up(): Promise<void> {
    if (this.#stopped) throw new Error(`etcd on ${this.endpoint} was stopped for good`);
    if (this.#child !== undefined) return;
    this.#spawn();
    try {
      await this.#waitHealthy();
    } catch (error) {
      await this.#reap();
      throw error;
    }
  }

  async down(): Promise<void> {
    await this.#reap();
  }

  async etcdctl(...args: string[]): Promise<string> {
    const out = await new Deno.Command("etcdctl", {
      args: [`--endpoints=${this.clientUrl}`, "--command-timeout=10s", ...args],
      env: { ETCDCTL_API: "3" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    if (!out.success) {
      throw new Error(
        `etcdctl ${args.join(" ")} failed (exit ${out.code}): ${decoder.decode(out.stderr).trim()}`,
      );
    }
    return decoder.decode(out.stdout);
  }

  /** Kills the process and removes the directory synchronously (exit handler). */
  killSync() {
    try {
      this.#child?.kill("SIGKILL");
    } catch { /* gone */ }
    try {
      Deno.removeSync(this.baseDir, { recursive: true });
    } catch { /* gone */ }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      await this.#reap();
    } finally {
      live.delete(this);
      await Deno.remove(this.baseDir, { recursive: true }).catch(() => {});
    }
  }
}

/**
 * Starts a single-member etcd on free loopback client and peer ports with a
 * fresh data directory, and waits until `/health` says it is healthy.
 * Throws (with the install command) when etcd is not installed.
 */
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdServer> {
  requireComponents(["etcd", "etcdctl"]);
  const baseDir = await Deno.makeTempDir({ prefix: "etcd-test-" });
  const [clientPort, peerPort] = freePorts(2);
  const instance = new EtcdInstance(
    clientPort,
    peerPort,
    join(baseDir, "data"),
    baseDir,
    options.startTimeoutMs ?? 30000,
  );
  hookUnload();
  live.add(instance);
  try {
    await instance.up();
  } catch (error) {
    await instance.stop();
    throw error;
  }
  return instance;
}

/** Runs `fn` with a fresh etcd, stopping it afterwards (also when `fn` throws). */
export async function withEtcd<T>(fn: (etcd: EtcdServer) => Promise<T>): Promise<T> {
  const etcd = await startEtcd();
  try {
    return await fn(etcd);
  } finally {
    await etcd.stop();
  }
}
