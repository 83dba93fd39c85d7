/**
 * Files the services keep in the state directory (console history, the
 * embedded database, the state lock) are private to the user who runs them:
 * files 0600, their folders 0700. Modes are set explicitly because Deno's
 * `node:fs` ignores the umask (an `appendFileSync` creates 0666 files).
 *
 * @example
 * ```ts ignore
 * import { appendPrivateFile } from "./state_files.ts";
 * appendPrivateFile(".monitor/history/console", "list\n"); // 0600 in a 0700 folder
 * ```
 *
 * @module
 */
import { dirname } from "node:path";

/** Mode of a state folder: the owner only. */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode of a state file: the owner reads and writes, nobody else. */
export const PRIVATE_FILE_MODE = 0o600;

function chmodQuietly(path: string, mode: number): void {
  try {
    Deno.chmodSync(path, mode);
  } catch { /* not ours, or a system without modes: leave it */ }
}

/**
 * Creates `dir` (and missing parents) 0700; `own: true` also makes an
 * existing `dir` 0700 (a folder only the services use, such as `history/`).
 */
export function ensurePrivateDir(dir: string, options: { own?: boolean } = {}): void {
  Deno.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (options.own) chmodQuietly(dir, PRIVATE_DIR_MODE);
}

/** Appends `text` to `path`, creating it 0600 (and an existing file is made 0600) in a 0700 folder. */
export function appendPrivateFile(path: string, text: string): void {
  ensurePrivateDir(dirname(path), { own: true });
  Deno.writeTextFileSync(path, text, { append: true, mode: PRIVATE_FILE_MODE });
}

/** Replaces `path` with `text`, 0600, in a 0700 folder. */
export function writePrivateFile(path: string, text: string): void {
  ensurePrivateDir(dirname(path), { own: true });
  Deno.writeTextFileSync(path, text, { mode: PRIVATE_FILE_MODE });
}

/**
 * Creates `path` empty and 0600 when it does not exist (so that a library
 * creating it later, e.g. SQLite with its `-wal` and `-shm` files that copy
 * the database's mode, does not make it world-readable). Its folder is
 * created 0700 when missing.
 */
export function createPrivateFile(path: string): void {
  ensurePrivateDir(dirname(path));
  try {
    Deno.openSync(path, { createNew: true, write: true, mode: PRIVATE_FILE_MODE }).close();
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
}
