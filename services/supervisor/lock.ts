/**
 * One `deno task up` per state folder: the supervisor holds an exclusive
 * lock on `<state_dir>/up.lock` (an OS file lock, released by the kernel when
 * the process ends, so a crash leaves nothing stale) and writes who holds it.
 * A second start finds the lock taken and is refused at once, naming the
 * running one.
 *
 * @example
 * ```ts ignore
 * import { lockStateDir } from "./lock.ts";
 * const lock = lockStateDir(".monitor", { config: "monitor.yaml" });
 * if (!lock.ok) throw new Error(lock.message);
 * // ... run; the lock goes with the process (or lock.release()).
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { ensurePrivateDir, PRIVATE_FILE_MODE } from "../common/state_files.ts";

/** File name of the lock in the state folder. */
export const LOCK_FILE = "up.lock";

/** Who holds the lock (the lock file's JSON). */
export interface LockHolder {
  /** The `deno task up` launcher's pid (the process a user stops). */
  pid: number;
  /** The supervisor's own pid. */
  supervisor_pid: number;
  /** When it started (ISO 8601). */
  started: string;
  /** The monitor.yaml it runs. */
  config: string;
}

/** Outcome of {@linkcode lockStateDir}. */
export type StateLock =
  | { ok: true; path: string; release(): void }
  | { ok: false; path: string; holder?: LockHolder; message: string };

/**
 * Takes the state folder's lock without waiting.
 * @param stateDir the state folder (created 0700 when missing)
 * @param info what to record about this run
 */
export function lockStateDir(stateDir: string, info: { config: string }): StateLock {
  ensurePrivateDir(stateDir);
  const path = join(stateDir, LOCK_FILE);
  const file = Deno.openSync(path, {
    read: true,
    write: true,
    create: true,
    mode: PRIVATE_FILE_MODE,
  });
  let locked: boolean;
  try {
    locked = file.tryLockSync(true);
  } catch (error) {
    file.close();
    throw error;
  }
  if (!locked) {
    const holder = readHolder(file);
    file.close();
    return { ok: false, path, holder, message: refusal(stateDir, path, holder) };
  }
  const holder: LockHolder = {
    pid: Deno.ppid,
    supervisor_pid: Deno.pid,
    started: new Date().toISOString(),
    config: info.config,
  };
  file.truncateSync(0);
  file.seekSync(0, Deno.SeekMode.Start);
  const bytes = new TextEncoder().encode(JSON.stringify(holder) + "\n");
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
  let released = false;
  return {
    ok: true,
    path,
    release() {
      if (released) return;
      released = true;
      try {
        file.truncateSync(0);
        file.unlockSync();
      } finally {
        file.close();
      }
    },
  };
}

function readHolder(file: Deno.FsFile): LockHolder | undefined {
  try {
    file.seekSync(0, Deno.SeekMode.Start);
    const buffer = new Uint8Array(4096);
    const n = file.readSync(buffer) ?? 0;
    const value = JSON.parse(new TextDecoder().decode(buffer.subarray(0, n)));
    return typeof value?.pid === "number" ? value as LockHolder : undefined;
  } catch {
    return undefined; // being written this very moment, or not ours
  }
}

function refusal(stateDir: string, path: string, holder: LockHolder | undefined): string {
  const who = holder
    ? `pid ${holder.pid} (supervisor pid ${holder.supervisor_pid}), started ${holder.started}, running ${holder.config}`
    : `the process holding ${path}`;
  const stop = holder ? `Ctrl-C in its terminal, or kill ${holder.pid}` : "Ctrl-C in its terminal";
  return `another "deno task up" is already running with the state folder ${stateDir}: ${who}. ` +
    `Stop it first (${stop}), or give this one another state_dir in monitor.yaml.`;
}
