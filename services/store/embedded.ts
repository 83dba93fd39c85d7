/**
 * The `embedded` Store backend: one SQLite file (the state directory's
 * `monitor.db`, shared with the embedded Bus; tables prefixed `store_`),
 * shared safely by several processes on one machine.
 *
 * - `store_meta`: the global revision counter (`revision`, bumped once per
 *   changed key) and `compacted` (the oldest revision a watch can start from).
 * - `store_keys`: key -> value, create/mod revision, lease.
 * - `store_events`: the change log (one row per revision: put or delete),
 *   which watchers replay from any revision that was not compacted. Writers
 *   compact it at most every `compactIntervalMs`, keeping at least the last
 *   `historyRevisions` revisions and every event younger than `historyMs`.
 * - `store_leases`: lease id -> TTL and expiry time (wall clock ms). The
 *   owner's keep-alive pushes the expiry forward every TTL/3. Expired leases
 *   are reaped (their keys deleted, each delete logged as an event) by
 *   whichever process notices first: before any read or write, and
 *   periodically in every process that has a watch open.
 *
 * Every write is one `BEGIN IMMEDIATE` transaction, so read-modify-write
 * sequences are atomic across processes; watchers learn about commits of any
 * process through {@linkcode ChangeNotifier} (`PRAGMA data_version`), and only
 * then read the new events.
 *
 * @module
 */
import { dirname } from "node:path";
import { ensurePrivateDir } from "../common/state_files.ts";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { sleep } from "../common/async.ts";
import { errorMessage, getLogger, type Logger } from "../common/log.ts";
import { ChangeNotifier, immediateTransaction, openDatabase } from "../common/sqlite.ts";
import {
  checkFunction,
  checkKey,
  checkPrefix,
  checkRevision,
  checkTtl,
  checkValue,
  checkWatchArgs,
  DEFAULT_CONNECT_TIMEOUT_MS,
  notifyLeaseLost,
  prefixEnd,
  WatchDispatcher,
} from "./common.ts";
import {
  type CasResult,
  type KeyValue,
  type Lease,
  type ListResult,
  type Store,
  StoreCompactedError,
  type StoreSettings,
  StoreUnavailableError,
  type Watcher,
  type WatchEvent,
  type WatchOptions,
} from "./types.ts";

const log = getLogger("store/embedded");

/** Tuning of the embedded backend (defaults suit production). */
export interface EmbeddedStoreOptions {
  /** Keep at least this many of the latest revisions in the change log. Default 10000. */
  historyRevisions?: number;
  /** Keep every change younger than this (ms). Default 10 minutes. */
  historyMs?: number;
  /** Writers compact the change log at most this often (ms). Default 5000. */
  compactIntervalMs?: number;
  /**
   * A process with watches open reaps expired leases when the earliest one
   * expires, but not more often than this (ms). Default 250.
   */
  reapIntervalMs?: number;
  /**
   * While watches are open, `PRAGMA data_version` is checked on file events
   * of the database; this is the longest wait for a commit to show after its
   * event, and the poll period where files cannot be watched (ms). Default 50.
   */
  pollIntervalMs?: number;
  /**
   * Follow the database's file events (inotify) to see other processes'
   * commits within about 5 ms (default true). `false`: only poll every
   * `pollIntervalMs`, e.g. 1000 for a process that must stay quiet although
   * other processes commit to the same file all the time (the agent beside
   * the embedded bus: every commit of the broker woke it, about 5 times a
   * second), at the cost of up to that long to see a change.
   */
  watchFiles?: boolean;
  /**
   * The store's periodic work on the caller's timer instead of `setInterval`s
   * of its own (the agent's ticker): the change poll (`ChangeNotifierOptions.poll`
   * in services/common/sqlite.ts) and each lease's keep-alive. Called with the
   * work and its period; returns a function that stops it. Default none.
   */
  every?: (work: () => void, periodMs: number) => () => void;
}

/** {@linkcode EmbeddedStoreOptions} with every default filled in (`poll` stays optional). */
type ResolvedOptions =
  & Required<Omit<EmbeddedStoreOptions, "every">>
  & Pick<EmbeddedStoreOptions, "every">;

/** Defaults of {@linkcode EmbeddedStoreOptions} (`every`: none). */
export const EMBEDDED_DEFAULTS: Readonly<Required<Omit<EmbeddedStoreOptions, "every">>> = Object
  .freeze({
    historyRevisions: 10000,
    historyMs: 10 * 60 * 1000,
    compactIntervalMs: 5000,
    reapIntervalMs: 250,
    pollIntervalMs: 50,
    watchFiles: true,
  });

/** Events read per query by a watcher. */
const WATCH_BATCH = 256;
/** The lease reaper of a process with watches wakes at least this often (ms). */
const REAP_IDLE_MS = 10_000;
/** An idle watcher re-checks at least this often, besides change notifications (ms). */
const WATCH_RECHECK_MS = 2000;
/**
 * The same while the notifier follows file events (it polls as a backstop
 * itself), or polls on its own by choice ({@linkcode EmbeddedStoreOptions.watchFiles} false).
 */
const WATCH_RECHECK_WATCHED_MS = 10_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS store_meta (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO store_meta (name, value) VALUES ('revision', 0), ('compacted', 1);
CREATE TABLE IF NOT EXISTS store_keys (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision INTEGER NOT NULL,
  lease INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS store_keys_by_lease ON store_keys (lease) WHERE lease IS NOT NULL;
CREATE TABLE IF NOT EXISTS store_events (
  revision INTEGER PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
  key TEXT NOT NULL,
  value TEXT,
  created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS store_leases (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ttl_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS store_leases_by_expiry ON store_leases (expires_ms);
`;

interface KeyRow {
  key: string;
  value: string;
  create_revision: number;
  mod_revision: number;
  lease: number | null;
}

interface EventRow {
  revision: number;
  type: "put" | "delete";
  key: string;
  value: string | null;
}

function toKeyValue(row: KeyRow): KeyValue {
  const kv: KeyValue = {
    key: row.key,
    value: row.value,
    modRevision: Number(row.mod_revision),
    createRevision: Number(row.create_revision),
  };
  if (row.lease !== null) kv.lease = String(row.lease);
  return kv;
}

function toEvent(row: EventRow): WatchEvent {
  return row.type === "put"
    ? { type: "put", key: row.key, value: row.value ?? "", revision: Number(row.revision) }
    : { type: "delete", key: row.key, revision: Number(row.revision) };
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`embedded store: ${name} must be a number >= 0, got ${String(value)}`);
  }
  return value;
}

function flag(value: boolean | undefined, fallback: boolean, name: string): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new TypeError(`embedded store: ${name} must be true or false, got ${String(value)}`);
  }
  return value;
}

/** Prepared statements on the main connection. */
class Statements {
  readonly revision: StatementSync;
  readonly compacted: StatementSync;
  readonly setMeta: StatementSync;
  readonly bump: StatementSync;
  readonly getKey: StatementSync;
  readonly upsert: StatementSync;
  readonly deleteKey: StatementSync;
  readonly addEvent: StatementSync;
  readonly keysOfLease: StatementSync;
  readonly expiredLeases: StatementSync;
  readonly anyExpired: StatementSync;
  readonly nextExpiry: StatementSync;
  readonly deleteLease: StatementSync;
  readonly insertLease: StatementSync;
  readonly extendLease: StatementSync;
  readonly leaseAlive: StatementSync;
  readonly compactCut: StatementSync;
  readonly deleteEventsBelow: StatementSync;

  constructor(db: DatabaseSync) {
    this.revision = db.prepare("SELECT value FROM store_meta WHERE name = 'revision'");
    this.compacted = db.prepare("SELECT value FROM store_meta WHERE name = 'compacted'");
    this.setMeta = db.prepare("UPDATE store_meta SET value = ? WHERE name = ?");
    this.bump = db.prepare(
      "UPDATE store_meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
    );
    this.getKey = db.prepare(
      "SELECT key, value, create_revision, mod_revision, lease FROM store_keys WHERE key = ?",
    );
    this.upsert = db.prepare(
      `INSERT INTO store_keys (key, value, create_revision, mod_revision, lease)
       VALUES (?1, ?2, ?3, ?3, ?4)
       ON CONFLICT (key) DO UPDATE SET
         value = excluded.value, mod_revision = excluded.mod_revision, lease = excluded.lease`,
    );
    this.deleteKey = db.prepare("DELETE FROM store_keys WHERE key = ?");
    this.addEvent = db.prepare(
      "INSERT INTO store_events (revision, type, key, value, created_ms) VALUES (?, ?, ?, ?, ?)",
    );
    this.keysOfLease = db.prepare("SELECT key FROM store_keys WHERE lease = ? ORDER BY key");
    this.expiredLeases = db.prepare(
      "SELECT id FROM store_leases WHERE expires_ms <= ? ORDER BY expires_ms, id",
    );
    this.anyExpired = db.prepare("SELECT 1 AS one FROM store_leases WHERE expires_ms <= ? LIMIT 1");
    this.nextExpiry = db.prepare("SELECT MIN(expires_ms) AS at FROM store_leases");
    this.deleteLease = db.prepare("DELETE FROM store_leases WHERE id = ?");
    this.insertLease = db.prepare(
      "INSERT INTO store_leases (ttl_ms, expires_ms) VALUES (?, ?) RETURNING id",
    );
    this.extendLease = db.prepare(
      "UPDATE store_leases SET expires_ms = ? WHERE id = ? AND expires_ms > ?",
    );
    this.leaseAlive = db.prepare(
      "SELECT 1 AS one FROM store_leases WHERE id = ? AND expires_ms > ?",
    );
    this.compactCut = db.prepare(
      "SELECT MAX(revision) AS cut FROM store_events WHERE revision <= ? AND created_ms <= ?",
    );
    this.deleteEventsBelow = db.prepare("DELETE FROM store_events WHERE revision < ?");
  }
}

/** The part of the backend that touches the database; shared by the store, its leases and watchers. */
class Engine {
  readonly stmts: Statements;
  readonly options: ResolvedOptions;
  #lastCompactMs = 0;
  #prepared = new Map<string, StatementSync>();

  constructor(
    readonly db: DatabaseSync,
    readonly notifier: ChangeNotifier,
    readonly path: string,
    options: ResolvedOptions,
  ) {
    this.options = options;
    this.stmts = new Statements(db);
  }

  /** A prepared statement for `sql`, cached. */
  statement(sql: string): StatementSync {
    let statement = this.#prepared.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.#prepared.set(sql, statement);
    }
    return statement;
  }

  meta(): { revision: number; compacted: number } {
    const revision = Number((this.stmts.revision.get() as { value: number }).value);
    const compacted = Number((this.stmts.compacted.get() as { value: number }).value);
    return { revision, compacted };
  }

  /** Runs `fn` in a write transaction (expired leases reaped first), then wakes local watchers. */
  write<T>(fn: (now: number) => T): T {
    let changed = false;
    const result = immediateTransaction(this.db, () => {
      const now = Date.now();
      const before = this.meta().revision;
      this.reapIn(now);
      const value = fn(now);
      if (this.meta().revision !== before) {
        changed = true;
        this.maybeCompact(now);
      }
      return value;
    });
    if (changed) this.notifier.poke();
    return result;
  }

  /** Runs `fn` in a read transaction: one consistent snapshot. */
  read<T>(fn: () => T): T {
    this.reapIfExpired();
    this.db.exec("BEGIN");
    try {
      return fn();
    } finally {
      this.db.exec("COMMIT");
    }
  }

  /** Reaps expired leases if there are any (one cheap indexed query when there are none). */
  reapIfExpired(): void {
    if (this.stmts.anyExpired.get(Date.now()) === undefined) return;
    this.write(() => undefined);
  }

  /** When the next lease expires (ms since the epoch), or undefined without leases. */
  nextExpiry(): number | undefined {
    const row = this.stmts.nextExpiry.get() as { at: number | null } | undefined;
    return row?.at === null || row?.at === undefined ? undefined : Number(row.at);
  }

  /** Inside a write transaction: bumps the revision and logs one event. */
  change(now: number, type: "put" | "delete", key: string, value: string | null): number {
    const revision = Number((this.stmts.bump.get() as { value: number }).value);
    this.stmts.addEvent.run(revision, type, key, value, now);
    return revision;
  }

  /** Inside a write transaction: puts a key (attached to `lease` or to none). */
  putIn(now: number, key: string, value: string, lease: number | null): number {
    const revision = this.change(now, "put", key, value);
    this.stmts.upsert.run(key, value, revision, lease);
    return revision;
  }

  /** Inside a write transaction: deletes a key; its revision, or 0 when it did not exist. */
  deleteIn(now: number, key: string): number {
    if (this.stmts.getKey.get(key) === undefined) return 0;
    this.stmts.deleteKey.run(key);
    return this.change(now, "delete", key, null);
  }

  /** Inside a write transaction: deletes a lease and its keys (one delete event per key). */
  dropLeaseIn(now: number, id: number): number {
    const keys = this.stmts.keysOfLease.all(id) as { key: string }[];
    for (const { key } of keys) this.deleteIn(now, key);
    this.stmts.deleteLease.run(id);
    return keys.length;
  }

  /** Inside a write transaction: reaps every lease whose expiry has passed. */
  reapIn(now: number): void {
    const expired = this.stmts.expiredLeases.all(now) as { id: number }[];
    for (const { id } of expired) {
      const count = this.dropLeaseIn(now, Number(id));
      log.debug(`lease ${id} expired: ${count} key(s) deleted`);
    }
  }

  /** Inside a write transaction: compacts the change log when it is time to. */
  maybeCompact(now: number): void {
    if (now - this.#lastCompactMs < this.options.compactIntervalMs) return;
    this.#lastCompactMs = now;
    const { revision } = this.meta();
    const row = this.stmts.compactCut.get(
      revision - this.options.historyRevisions,
      now - this.options.historyMs,
    ) as { cut: number | null };
    if (row.cut === null) return;
    this.compactIn(Number(row.cut) + 1);
  }

  /** Inside a write transaction: drops events below `revision` (never the latest revision's). */
  compactIn(revision: number): number {
    const { revision: current, compacted } = this.meta();
    const target = Math.min(revision, current);
    if (target <= compacted) return compacted;
    this.stmts.deleteEventsBelow.run(target);
    this.stmts.setMeta.run(target, "compacted");
    log.debug(`change log compacted below revision ${target}`);
    return target;
  }

  /** Reads the events of `prefix` from revision `next` on (at most one batch). */
  readEvents(prefix: string, next: number): { events: WatchEvent[]; next: number; more: boolean } {
    return this.read(() => {
      const { revision, compacted } = this.meta();
      if (next < compacted) {
        throw compactedError(prefix, next, compacted);
      }
      const end = prefixEnd(prefix);
      const sql = `SELECT revision, type, key, value FROM store_events
        WHERE revision >= ? AND revision <= ? AND key >= ?${end === undefined ? "" : " AND key < ?"}
        ORDER BY revision LIMIT ${WATCH_BATCH}`;
      const params: (string | number)[] = [next, revision, prefix];
      if (end !== undefined) params.push(end);
      const rows = this.statement(sql).all(...params) as unknown as EventRow[];
      const full = rows.length === WATCH_BATCH;
      return {
        events: rows.map(toEvent),
        next: full ? Number(rows[rows.length - 1].revision) + 1 : Math.max(next, revision + 1),
        more: full,
      };
    });
  }
}

function compactedError(prefix: string, from: number, compacted: number): StoreCompactedError {
  return new StoreCompactedError(
    from,
    compacted,
    `watch ${JSON.stringify(prefix)} from revision ${from}: that revision was compacted; ` +
      `the oldest revision available is ${compacted}. Re-read with list() and watch from its revision + 1`,
  );
}

/** A watch on the embedded backend: replays the change log, then follows it. */
class EmbeddedWatcher implements Watcher {
  #closed = false;
  #dirty = true;
  #wake: AbortController | undefined;
  #unsubscribe: () => void;
  #dispatcher: WatchDispatcher;
  #loop: Promise<void>;

  constructor(
    readonly engine: Engine,
    readonly prefix: string,
    private next: number,
    onEvent: (event: WatchEvent) => void | Promise<void>,
    readonly onError: ((error: Error) => void) | undefined,
    readonly onClosed: (watcher: EmbeddedWatcher) => void,
  ) {
    this.#dispatcher = new WatchDispatcher(onEvent, `watch ${JSON.stringify(prefix)}`, log);
    this.#unsubscribe = engine.notifier.subscribe(() => {
      this.#dirty = true;
      this.#wake?.abort();
    });
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      if (!this.#dirty) {
        this.#wake = new AbortController();
        await sleep(
          this.engine.notifier.watchingFiles || !this.engine.options.watchFiles
            ? WATCH_RECHECK_WATCHED_MS
            : WATCH_RECHECK_MS,
          this.#wake.signal,
        );
        this.#wake = undefined;
        if (this.#closed) break;
      }
      this.#dirty = false;
      let batch;
      try {
        batch = this.engine.readEvents(this.prefix, this.next);
        failures = 0;
      } catch (error) {
        if (this.#closed) break;
        if (error instanceof StoreCompactedError) {
          this.#fail(error);
          break;
        }
        failures++;
        log.warn(
          `watch ${JSON.stringify(this.prefix)}: reading the change log failed (${
            errorMessage(error)
          }); retrying`,
        );
        this.#dirty = true;
        await sleep(Math.min(100 * failures, 2000));
        continue;
      }
      if (batch.events.length > 0) {
        this.#dispatcher.push(batch.events);
        await this.#dispatcher.idle();
      }
      this.next = batch.next;
      if (batch.more) this.#dirty = true;
    }
  }

  #fail(error: Error) {
    this.#stop();
    if (this.onError) {
      try {
        this.onError(error);
      } catch (e) {
        log.error(`watch ${JSON.stringify(this.prefix)}: onError threw: ${errorMessage(e)}`);
      }
    } else {
      log.error(`watch ${JSON.stringify(this.prefix)} stopped: ${error.message}`);
    }
  }

  #stop() {
    if (this.#closed) return;
    this.#closed = true;
    this.#dispatcher.close();
    this.#unsubscribe();
    this.#wake?.abort();
    this.onClosed(this);
  }

  async close(): Promise<void> {
    this.#stop();
    await this.#loop;
  }
}

/** A lease on the embedded backend, kept alive by a timer every TTL/3. */
class EmbeddedLease implements Lease {
  #id: number;
  #keys = new Map<string, string>();
  #listeners: ((error: Error) => void)[] = [];
  #stopKeepAlive: (() => void) | undefined;
  #revoked = false;

  constructor(
    readonly engine: Engine,
    id: number,
    readonly ttl: number,
    readonly onEnded: (lease: EmbeddedLease) => void,
  ) {
    this.#id = id;
    const period = Math.max(100, (ttl * 1000) / 3);
    if (engine.options.every) {
      this.#stopKeepAlive = engine.options.every(() => this.#keepAlive(), period);
    } else {
      const timer = setInterval(() => this.#keepAlive(), period);
      this.#stopKeepAlive = () => clearInterval(timer);
    }
  }

  get id(): string {
    return String(this.#id);
  }

  put(key: string, value: string): Promise<number> {
    try {
      checkKey(key, "lease put");
      checkValue(value, `lease put ${JSON.stringify(key)}`);
      if (this.#revoked) throw new Error(`lease ${this.#id}: put ${key}: the lease was revoked`);
      let lost: number | undefined;
      const revision = this.engine.write((now) => {
        if (this.engine.stmts.leaseAlive.get(this.#id, now) === undefined) {
          lost = this.#id;
          this.#id = this.#grantIn(now);
          for (const [k, v] of this.#keys) this.engine.putIn(now, k, v, this.#id);
        }
        return this.engine.putIn(now, key, value, this.#id);
      });
      this.#keys.set(key, value);
      if (lost !== undefined) this.#lost(lost);
      return Promise.resolve(revision);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #grantIn(now: number): number {
    const row = this.engine.stmts.insertLease.get(this.ttl * 1000, now + this.ttl * 1000) as {
      id: number;
    };
    return Number(row.id);
  }

  #keepAlive() {
    if (this.#revoked) return;
    try {
      const now = Date.now();
      const { changes } = this.engine.stmts.extendLease.run(now + this.ttl * 1000, this.#id, now);
      if (Number(changes) > 0) return;
      // Expired (this process was too slow, e.g. suspended) or reaped by another process.
      const old = this.#id;
      this.engine.write((at) => {
        this.#id = this.#grantIn(at);
        for (const [k, v] of this.#keys) this.engine.putIn(at, k, v, this.#id);
      });
      this.#lost(old);
    } catch (error) {
      log.warn(`lease ${this.#id}: keep-alive failed: ${errorMessage(error)}`);
    }
  }

  #lost(old: number) {
    const error = new Error(
      `lease ${old} expired before its keep-alive; re-established as lease ${this.#id} with ${this.#keys.size} key(s) re-put`,
    );
    notifyLeaseLost(this.#listeners, error, this.#id, log);
  }

  revoke(): Promise<void> {
    try {
      if (this.#revoked) return Promise.resolve();
      this.stop();
      this.engine.write((now) => {
        this.engine.dropLeaseIn(now, this.#id);
      });
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  onLost(listener: (error: Error) => void): void {
    checkFunction(listener, "lease onLost");
    this.#listeners.push(listener);
  }

  /** Stops the keep-alive (the lease then expires after its TTL). */
  stop() {
    this.#revoked = true;
    this.#stopKeepAlive?.();
    this.#stopKeepAlive = undefined;
    this.onEnded(this);
  }
}

/** The embedded Store. Open it with {@linkcode openEmbeddedStore}. */
export class EmbeddedStore implements Store {
  /** Always `"embedded"`. */
  readonly backend = "embedded";
  #engine: Engine;
  #closed = false;
  #watchers = new Set<EmbeddedWatcher>();
  #leases = new Set<EmbeddedLease>();
  #reaper: ReturnType<typeof setTimeout> | undefined;
  /** When the reaper's timer fires (ms since the epoch). */
  #reapAt = 0;
  #lastReap = 0;
  #unsubscribeReaper: (() => void) | undefined;
  #log: Logger;

  /** Use {@linkcode openEmbeddedStore}. */
  constructor(engine: Engine) {
    this.#engine = engine;
    this.#log = log;
  }

  /** Path of the SQLite file. */
  get path(): string {
    return this.#engine.path;
  }

  #open(where: string) {
    if (this.#closed) throw new Error(`embedded store ${this.path}: ${where}: the store is closed`);
  }

  #run<T>(where: string, fn: () => T): Promise<T> {
    try {
      this.#open(where);
      return Promise.resolve(fn());
    } catch (error) {
      if (error instanceof TypeError || error instanceof StoreCompactedError) {
        return Promise.reject(error);
      }
      return Promise.reject(
        new Error(`embedded store ${this.path}: ${where}: ${errorMessage(error)}`, {
          cause: error,
        }),
      );
    }
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.#run(`get ${JSON.stringify(key)}`, () => {
      checkKey(key, "get");
      this.#engine.reapIfExpired();
      const row = this.#engine.stmts.getKey.get(key) as KeyRow | undefined;
      return row === undefined ? undefined : toKeyValue(row);
    });
  }

  list(prefix: string): Promise<ListResult> {
    return this.#run(`list ${JSON.stringify(prefix)}`, () => {
      checkPrefix(prefix, "list");
      return this.#engine.read(() => {
        const { revision } = this.#engine.meta();
        const end = prefixEnd(prefix);
        const sql =
          `SELECT key, value, create_revision, mod_revision, lease FROM store_keys WHERE key >= ?${
            end === undefined ? "" : " AND key < ?"
          } ORDER BY key`;
        const statement = this.#engine.statement(sql);
        const rows = (end === undefined
          ? statement.all(prefix)
          : statement.all(prefix, end)) as unknown as KeyRow[];
        return { items: rows.map(toKeyValue), revision };
      });
    });
  }

  put(key: string, value: string): Promise<number> {
    return this.#run(`put ${JSON.stringify(key)}`, () => {
      checkKey(key, "put");
      checkValue(value, `put ${JSON.stringify(key)}`);
      return this.#engine.write((now) => this.#engine.putIn(now, key, value, null));
    });
  }

  delete(key: string): Promise<boolean> {
    return this.#run(`delete ${JSON.stringify(key)}`, () => {
      checkKey(key, "delete");
      return this.#engine.write((now) => this.#engine.deleteIn(now, key) > 0);
    });
  }

  compareAndSet(key: string, value: string, expectedRevision: number): Promise<CasResult> {
    return this.#run(`compareAndSet ${JSON.stringify(key)}`, () => {
      checkKey(key, "compareAndSet");
      checkValue(value, `compareAndSet ${JSON.stringify(key)}`);
      checkRevision(expectedRevision, `compareAndSet ${JSON.stringify(key)}: expectedRevision`, 0);
      return this.#engine.write((now) => {
        const row = this.#engine.stmts.getKey.get(key) as KeyRow | undefined;
        const current = row === undefined ? 0 : Number(row.mod_revision);
        if (current !== expectedRevision) return { ok: false, revision: current };
        return { ok: true, revision: this.#engine.putIn(now, key, value, null) };
      });
    });
  }

  watch(
    prefix: string,
    options: WatchOptions,
    onEvent: (event: WatchEvent) => void | Promise<void>,
  ): Promise<Watcher> {
    return this.#run(`watch ${JSON.stringify(prefix)}`, () => {
      checkWatchArgs(prefix, options, onEvent);
      this.#engine.reapIfExpired();
      const { revision, compacted } = this.#engine.read(() => this.#engine.meta());
      const from = options.fromRevision ?? revision + 1;
      if (from < compacted) throw compactedError(prefix, from, compacted);
      const watcher = new EmbeddedWatcher(
        this.#engine,
        prefix,
        from,
        onEvent,
        options.onError,
        (w) => {
          this.#watchers.delete(w);
          this.#updateReaper();
        },
      );
      this.#watchers.add(watcher);
      this.#updateReaper();
      return watcher;
    });
  }

  lease(ttlSeconds: number): Promise<Lease> {
    return this.#run(`lease ${ttlSeconds}`, () => {
      checkTtl(ttlSeconds);
      const engine = this.#engine;
      const id = engine.write((now) => {
        const row = engine.stmts.insertLease.get(ttlSeconds * 1000, now + ttlSeconds * 1000) as {
          id: number;
        };
        return Number(row.id);
      });
      const lease = new EmbeddedLease(engine, id, ttlSeconds, (l) => this.#leases.delete(l));
      this.#leases.add(lease);
      return lease;
    });
  }

  /**
   * Drops the change log below `revision` (like etcd's compaction): watches
   * from an older revision then fail with {@linkcode StoreCompactedError}.
   * Returns the oldest revision still available.
   */
  compact(revision: number): Promise<number> {
    return this.#run(`compact ${revision}`, () => {
      checkRevision(revision, "compact: revision", 1);
      return this.#engine.write(() => this.#engine.compactIn(revision));
    });
  }

  /**
   * Runs while watches are open: reaps expired leases so that watchers see
   * the deletes. It wakes when the earliest lease expires (at most every
   * `reapIntervalMs`, at least every {@linkcode REAP_IDLE_MS}), and looks
   * again whenever the database changes (a new lease may expire sooner), so
   * a process with nothing expiring stays asleep.
   */
  #updateReaper() {
    const wanted = this.#watchers.size > 0 && !this.#closed;
    if (wanted && this.#unsubscribeReaper === undefined) {
      this.#unsubscribeReaper = this.#engine.notifier.subscribe(() => this.#scheduleReap());
      this.#scheduleReap();
    } else if (!wanted && this.#unsubscribeReaper !== undefined) {
      this.#unsubscribeReaper();
      this.#unsubscribeReaper = undefined;
      clearTimeout(this.#reaper);
      this.#reaper = undefined;
    }
  }

  /** (Re)arms the reaper's timer for the earliest lease expiry. */
  #scheduleReap() {
    if (this.#unsubscribeReaper === undefined || this.#closed) return;
    let next: number | undefined;
    try {
      next = this.#engine.nextExpiry();
    } catch (error) {
      this.#log.warn(`reading lease expiries failed: ${errorMessage(error)}`);
    }
    const now = Date.now();
    const earliest = this.#lastReap + this.#engine.options.reapIntervalMs;
    const at = Math.max(earliest, Math.min(next ?? Infinity, now + REAP_IDLE_MS));
    if (this.#reaper !== undefined && this.#reapAt <= at) return;
    clearTimeout(this.#reaper);
    this.#reapAt = at;
    this.#reaper = setTimeout(() => {
      this.#reaper = undefined;
      this.#lastReap = Date.now();
      try {
        this.#engine.reapIfExpired();
      } catch (error) {
        this.#log.warn(`reaping expired leases failed: ${errorMessage(error)}`);
      }
      this.#scheduleReap();
    }, Math.max(0, at - now));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#watchers].map((w) => w.close()));
    for (const lease of [...this.#leases]) lease.stop();
    this.#updateReaper();
    this.#engine.notifier.close();
    this.#engine.db.close();
  }
}

/**
 * Opens (creating if needed) the embedded store in the SQLite file
 * `settings.path`. A file that cannot be opened gives
 * {@linkcode StoreUnavailableError} naming the path.
 */
export function openEmbeddedStore(
  settings: StoreSettings,
  options: EmbeddedStoreOptions = {},
): Promise<EmbeddedStore> {
  const path = settings?.path;
  if (typeof path !== "string" || path.length === 0) {
    return Promise.reject(
      new TypeError(
        `store.path: the embedded store needs the path of its SQLite file, got ${
          JSON.stringify(path) ?? String(path)
        }`,
      ),
    );
  }
  let resolved: ResolvedOptions;
  try {
    resolved = {
      historyRevisions: positive(
        options.historyRevisions,
        EMBEDDED_DEFAULTS.historyRevisions,
        "historyRevisions",
      ),
      historyMs: positive(options.historyMs, EMBEDDED_DEFAULTS.historyMs, "historyMs"),
      compactIntervalMs: positive(
        options.compactIntervalMs,
        EMBEDDED_DEFAULTS.compactIntervalMs,
        "compactIntervalMs",
      ),
      reapIntervalMs: Math.max(
        10,
        positive(options.reapIntervalMs, EMBEDDED_DEFAULTS.reapIntervalMs, "reapIntervalMs"),
      ),
      pollIntervalMs: Math.max(
        5,
        positive(options.pollIntervalMs, EMBEDDED_DEFAULTS.pollIntervalMs, "pollIntervalMs"),
      ),
      watchFiles: flag(options.watchFiles, EMBEDDED_DEFAULTS.watchFiles, "watchFiles"),
    };
    if (options.every !== undefined) {
      if (typeof options.every !== "function") {
        throw new TypeError(
          `embedded store: every must be a function (work, periodMs) => stop, got ${typeof options
            .every}`,
        );
      }
      resolved.every = options.every;
    }
  } catch (error) {
    return Promise.reject(error);
  }
  const endpoint = `embedded store at ${path}`;
  let db: DatabaseSync | undefined;
  let notifier: ChangeNotifier | undefined;
  try {
    ensurePrivateDir(dirname(path));
    db = openDatabase(path, {
      busyTimeoutMs: settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    });
    immediateTransaction(db, () => db!.exec(SCHEMA));
    notifier = new ChangeNotifier(path, resolved.pollIntervalMs, {
      watchFiles: resolved.watchFiles,
      poll: resolved.every,
      // Watchers read the change log: only a new revision (or compaction) is news to them.
      relevant:
        "SELECT group_concat(value, ',') AS v FROM store_meta WHERE name IN ('revision', 'compacted')",
    });
  } catch (error) {
    try {
      notifier?.close();
      db?.close();
    } catch { /* already failing */ }
    return Promise.reject(
      new StoreUnavailableError(
        endpoint,
        `cannot open the ${endpoint}: ${errorMessage(error)}`,
        { cause: error },
      ),
    );
  }
  return Promise.resolve(new EmbeddedStore(new Engine(db, notifier, path, resolved)));
}
