/**
 * Shared SQLite access for the embedded backends (Store and Bus live in the
 * same file). Opens the file in WAL mode with a busy timeout so several
 * processes on one machine can share it, and offers a cheap cross-process
 * change notifier based on `PRAGMA data_version`.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { createPrivateFile } from "./state_files.ts";

/** Options of {@linkcode openDatabase}. */
export interface OpenDatabaseOptions {
  /** How long a writer waits for another process's lock (ms). Default 5000. */
  busyTimeoutMs?: number;
}

/**
 * Opens (creating if needed, 0600, its folder 0700) the SQLite file at `path`
 * in WAL mode. SQLite gives the `-wal` and `-shm` files the database's mode.
 */
export function openDatabase(path: string, options: OpenDatabaseOptions = {}): DatabaseSync {
  if (path !== ":memory:" && !path.startsWith("file:")) createPrivateFile(path);
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  db.exec("PRAGMA foreign_keys = ON");
  return db;
}

/**
 * Runs `fn` inside `BEGIN IMMEDIATE … COMMIT` (rolled back on throw), so that
 * read-modify-write sequences are atomic across processes.
 */
export function immediateTransaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (error) {
    db.exec("ROLLBACK");
    throw error;
  }
}

/**
 * Calls listeners when any connection (this process or another) commits to the
 * database. Polls `PRAGMA data_version` on a dedicated connection, which costs
 * one tiny query per tick instead of re-reading tables.
 */
export class ChangeNotifier {
  #db: DatabaseSync;
  #timer: ReturnType<typeof setInterval> | undefined;
  #listeners = new Set<() => void>();
  #version: number;

  /**
   * @param path the SQLite file
   * @param intervalMs poll period (default 50 ms)
   */
  constructor(path: string, readonly intervalMs = 50) {
    this.#db = openDatabase(path);
    this.#version = this.#read();
  }

  #read(): number {
    const row = this.#db.prepare("PRAGMA data_version").get() as { data_version: number };
    return Number(row.data_version);
  }

  /** Registers a listener; returns a function that removes it. Polling runs while listeners exist. */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    this.#ensureTimer();
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stopTimer();
    };
  }

  /** Notifies listeners at once (for commits made by this process's own connections). */
  poke(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  #ensureTimer() {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      const v = this.#read();
      if (v !== this.#version) {
        this.#version = v;
        this.poke();
      }
    }, this.intervalMs);
  }

  #stopTimer() {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Stops polling and closes the connection. */
  close(): void {
    this.#stopTimer();
    this.#listeners.clear();
    this.#db.close();
  }
}
