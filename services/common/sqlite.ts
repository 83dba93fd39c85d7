/**
 * Shared SQLite access for the embedded backends (Store and Bus live in the
 * same file). Opens the file in WAL mode with a busy timeout so several
 * processes on one machine can share it, and offers a cheap cross-process
 * change notifier based on `PRAGMA data_version`.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
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

/** Options of {@linkcode ChangeNotifier}. */
export interface ChangeNotifierOptions {
  /**
   * Wake on file-system events of the database and its `-wal` file (inotify
   * on Linux) instead of polling every `intervalMs`: a process that is idle
   * then stays idle (default false: polling only). Falls back to polling
   * when the files cannot be watched.
   */
  watchFiles?: boolean;
  /**
   * A query of one row and one column that changes when the data the
   * listeners care about changes (the store: its revision). After another
   * connection's commit it is asked too, and listeners are called only when
   * its value changed: commits to other tables of the same file (the
   * embedded bus) then wake nobody. Default: every commit counts.
   */
  relevant?: string;
  /**
   * Runs the poll on the caller's timer instead of a `setInterval` of its own
   * (so that a process with a timer of its own wakes once for both): called
   * with the check and its period when checking starts (the first listener),
   * returns a function that stops it (called when the last listener goes).
   */
  poll?: (check: () => void, periodMs: number) => () => void;
}

/** With file events: a backstop poll this often (ms), should an event be missed. */
const WATCHED_BACKSTOP_MS = 2000;
/** With file events: the check after an event waits this long (ms) for the commit to finish. */
const EVENT_DELAY_MS = 5;

/**
 * Calls listeners when any connection (this process or another) commits to the
 * database. Checks `PRAGMA data_version` on a dedicated connection, which costs
 * one tiny query per check instead of re-reading tables: every `intervalMs`,
 * or, with {@linkcode ChangeNotifierOptions.watchFiles}, shortly after the
 * database files change (and once more `intervalMs` later when that first
 * check found nothing yet, in case the commit was still being written), plus
 * a backstop check every second.
 */
export class ChangeNotifier {
  #db: DatabaseSync;
  #path: string;
  #timer: ReturnType<typeof setInterval> | undefined;
  #poll: ChangeNotifierOptions["poll"];
  #stopPoll: (() => void) | undefined;
  #soon: ReturnType<typeof setTimeout> | undefined;
  #watcher: Deno.FsWatcher | undefined;
  #watchFiles: boolean;
  #listeners = new Set<() => void>();
  #version: number;
  #dataVersion: StatementSync;
  #relevant: StatementSync | undefined;
  #relevantValue: unknown;

  /**
   * @param path the SQLite file
   * @param intervalMs poll period (default 50 ms)
   */
  constructor(path: string, readonly intervalMs = 50, options: ChangeNotifierOptions = {}) {
    this.#db = openDatabase(path);
    this.#path = path;
    this.#watchFiles = options.watchFiles ?? false;
    this.#poll = options.poll;
    this.#dataVersion = this.#db.prepare("PRAGMA data_version");
    this.#relevant = options.relevant ? this.#db.prepare(options.relevant) : undefined;
    this.#version = this.#read();
    this.#relevantValue = this.#readRelevant();
  }

  #read(): number {
    const row = this.#dataVersion.get() as { data_version: number };
    return Number(row.data_version);
  }

  #readRelevant(): unknown {
    if (!this.#relevant) return undefined;
    const row = this.#relevant.get() as Record<string, unknown> | undefined;
    return row === undefined ? undefined : Object.values(row)[0];
  }

  /** True when something changed since the last check (listeners were called). */
  #check(): boolean {
    const v = this.#read();
    if (v === this.#version) return false;
    this.#version = v;
    if (this.#relevant) {
      const value = this.#readRelevant();
      if (value === this.#relevantValue) return true; // a commit, but not to what listeners read
      this.#relevantValue = value;
    }
    this.poke();
    return true;
  }

  /** True while file events drive the checks (the poll is only a backstop then). */
  get watchingFiles(): boolean {
    return this.#watcher !== undefined;
  }

  /** Registers a listener; returns a function that removes it. Checking runs while listeners exist. */
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
    if (this.#timer !== undefined || this.#stopPoll !== undefined) return;
    let period = this.intervalMs;
    if (this.#watchFiles) {
      try {
        const watcher = Deno.watchFs([this.#path, `${this.#path}-wal`], { recursive: false });
        this.#watcher = watcher;
        period = Math.max(period, WATCHED_BACKSTOP_MS);
        this.#follow(watcher);
      } catch {
        // Not watchable here (no -wal file yet, no permission): poll.
        this.#watcher = undefined;
      }
    }
    if (this.#poll) this.#stopPoll = this.#poll(() => this.#check(), period);
    else this.#timer = setInterval(() => this.#check(), period);
  }

  async #follow(watcher: Deno.FsWatcher) {
    try {
      for await (const event of watcher) {
        // Events already buffered when the watch was stopped arrive after it: arm nothing then.
        if (this.#watcher !== watcher) break;
        if (event.kind === "access" || this.#soon !== undefined) continue;
        this.#soon = setTimeout(() => {
          if (this.#check() || this.#watcher !== watcher) {
            this.#soon = undefined;
            return;
          }
          // Maybe the commit was not visible yet: look once more a poll period later.
          this.#soon = setTimeout(() => {
            this.#soon = undefined;
            if (this.#watcher === watcher) this.#check();
          }, this.intervalMs);
        }, EVENT_DELAY_MS);
      }
    } catch {
      // The watcher failed: the backstop poll becomes the only check, at the poll period.
      if (this.#watcher === watcher && (this.#timer !== undefined || this.#stopPoll)) {
        this.#watcher = undefined;
        if (this.#timer !== undefined) clearInterval(this.#timer);
        this.#timer = undefined;
        this.#stopPoll?.();
        this.#stopPoll = undefined;
        if (this.#poll) this.#stopPoll = this.#poll(() => this.#check(), this.intervalMs);
        else this.#timer = setInterval(() => this.#check(), this.intervalMs);
      }
    }
  }

  #stopTimer() {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#stopPoll?.();
    this.#stopPoll = undefined;
    clearTimeout(this.#soon);
    this.#soon = undefined;
    const watcher = this.#watcher;
    this.#watcher = undefined;
    try {
      watcher?.close();
    } catch { /* already closed */ }
  }

  /** Stops polling and closes the connection. */
  close(): void {
    this.#stopTimer();
    this.#listeners.clear();
    this.#db.close();
  }
}
