/**
 * The `embedded` Bus backend: append-only topic tables in the SQLite file the
 * embedded Store also uses (tables prefixed `bus_`), shared by several
 * processes on one machine.
 *
 * - `bus_topics`: per topic, the next offset to assign (offsets only grow,
 *   also after retention removed every message).
 * - `bus_messages`: (topic, offset) -> key, value, accept time (ms). Publishing
 *   a batch is one `BEGIN IMMEDIATE` transaction, committed with
 *   `synchronous = FULL`, so a resolved publish survives a crash.
 * - `bus_group_offsets`: per (group, topic), the next offset to deliver.
 *   Committed after the handler finished (at-least-once): at most every
 *   {@linkcode COMMIT_INTERVAL_MS} while busy, whenever the consumer caught
 *   up, and on close.
 * - `bus_group_leases`: per (group, topic), the member currently consuming and
 *   when its lease expires. One member of a group consumes a topic at a time;
 *   another takes over when the holder closes (its row is deleted) or stops
 *   renewing it (process died: the lease expires after the group's
 *   `sessionTimeoutMs`). This is the consumer-group handover.
 * - Retention by age and by count, pruned by publishers at most every
 *   {@linkcode PRUNE_INTERVAL_MS}.
 * - Consumers notice new messages through {@linkcode ChangeNotifier}
 *   (`PRAGMA data_version`), not by re-reading the tables.
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
  checkMessages,
  checkSubscribeOptions,
  checkTopic,
  checkTopics,
  DEFAULT_CONNECT_TIMEOUT_MS,
  positiveMs,
  runHandler,
} from "./common.ts";
import {
  type Bus,
  type BusMessage,
  type BusSettings,
  BusUnavailableError,
  type OutgoingMessage,
  type SubscribeOptions,
  type Subscription,
} from "./types.ts";

const log = getLogger("bus/embedded");

/** Default retention: one day, and at most this many messages per topic. */
export const DEFAULT_RETENTION: Readonly<Retention> = Object.freeze({
  maxAgeSeconds: 86400,
  maxMessages: 100000,
});
/** Publishers prune at most this often (ms). */
export const PRUNE_INTERVAL_MS = 5000;
/** Consumers commit processed offsets at most this often while busy (ms). */
export const COMMIT_INTERVAL_MS = 500;
/** Messages read per query. */
const BATCH_SIZE = 100;
/** Longest sleep of an idle consumer between checks, besides change notifications (ms). */
const IDLE_RECHECK_MS = 2000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS bus_topics (
  topic TEXT PRIMARY KEY,
  next_offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_messages (
  topic TEXT NOT NULL,
  msg_offset INTEGER NOT NULL,
  msg_key TEXT NOT NULL,
  msg_value TEXT NOT NULL,
  accepted_ms INTEGER NOT NULL,
  PRIMARY KEY (topic, msg_offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bus_messages_by_time ON bus_messages (accepted_ms);
CREATE TABLE IF NOT EXISTS bus_group_offsets (
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY (grp, topic)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_group_leases (
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  member TEXT NOT NULL,
  expires_ms INTEGER NOT NULL,
  PRIMARY KEY (grp, topic)
) WITHOUT ROWID;
`;

/** Retention of the embedded bus, see {@linkcode BusSettings.retention}. */
export interface Retention {
  /** Messages accepted longer ago than this are deleted. */
  maxAgeSeconds: number;
  /** Per topic, only the newest this many messages are kept. */
  maxMessages: number;
}

function checkRetention(value: BusSettings["retention"]): Retention {
  if (value === undefined) return { ...DEFAULT_RETENTION };
  const { maxAgeSeconds, maxMessages } = value ?? {};
  if (typeof maxAgeSeconds !== "number" || !(maxAgeSeconds > 0)) {
    throw new TypeError("bus.retention.maxAgeSeconds: expected a positive number of seconds");
  }
  if (!Number.isInteger(maxMessages) || maxMessages < 1) {
    throw new TypeError("bus.retention.maxMessages: expected a positive integer");
  }
  return { maxAgeSeconds, maxMessages };
}

interface MessageRow {
  msg_offset: number;
  msg_key: string;
  msg_value: string;
  accepted_ms: number;
}

/** The prepared statements of one connection. */
class Statements {
  readonly ensureTopic: StatementSync;
  readonly nextOffset: StatementSync;
  readonly setNextOffset: StatementSync;
  readonly insertMessage: StatementSync;
  readonly readBatch: StatementSync;
  readonly initGroup: StatementSync;
  readonly committed: StatementSync;
  readonly commit: StatementSync;
  readonly lease: StatementSync;
  readonly takeLease: StatementSync;
  readonly renewLease: StatementSync;
  readonly releaseLeases: StatementSync;
  readonly pruneByAge: StatementSync;
  readonly topics: StatementSync;
  readonly pruneByCount: StatementSync;

  constructor(db: DatabaseSync) {
    this.ensureTopic = db.prepare(
      "INSERT OR IGNORE INTO bus_topics (topic, next_offset) VALUES (?, 0)",
    );
    this.nextOffset = db.prepare("SELECT next_offset FROM bus_topics WHERE topic = ?");
    this.setNextOffset = db.prepare("UPDATE bus_topics SET next_offset = ? WHERE topic = ?");
    this.insertMessage = db.prepare(
      "INSERT INTO bus_messages (topic, msg_offset, msg_key, msg_value, accepted_ms) " +
        "VALUES (?, ?, ?, ?, ?)",
    );
    this.readBatch = db.prepare(
      "SELECT msg_offset, msg_key, msg_value, accepted_ms FROM bus_messages " +
        "WHERE topic = ? AND msg_offset >= ? ORDER BY msg_offset LIMIT ?",
    );
    this.initGroup = db.prepare(
      "INSERT OR IGNORE INTO bus_group_offsets (grp, topic, next_offset) VALUES (?, ?, ?)",
    );
    this.committed = db.prepare(
      "SELECT next_offset FROM bus_group_offsets WHERE grp = ? AND topic = ?",
    );
    this.commit = db.prepare(
      "UPDATE bus_group_offsets SET next_offset = MAX(next_offset, ?) WHERE grp = ? AND topic = ?",
    );
    this.lease = db.prepare(
      "SELECT member, expires_ms FROM bus_group_leases WHERE grp = ? AND topic = ?",
    );
    this.takeLease = db.prepare(
      "INSERT OR REPLACE INTO bus_group_leases (grp, topic, member, expires_ms) VALUES (?, ?, ?, ?)",
    );
    this.renewLease = db.prepare(
      "UPDATE bus_group_leases SET expires_ms = ? WHERE grp = ? AND topic = ? AND member = ?",
    );
    this.releaseLeases = db.prepare(
      "DELETE FROM bus_group_leases WHERE grp = ? AND member = ?",
    );
    this.pruneByAge = db.prepare("DELETE FROM bus_messages WHERE accepted_ms < ?");
    this.topics = db.prepare("SELECT topic, next_offset FROM bus_topics");
    this.pruneByCount = db.prepare(
      "DELETE FROM bus_messages WHERE topic = ? AND msg_offset < ?",
    );
  }
}

/**
 * Opens the embedded bus in the SQLite file `settings.path` (its directory is
 * created when missing). Fails with {@linkcode BusUnavailableError} naming the
 * file when it cannot be opened.
 */
export function openEmbeddedBus(settings: BusSettings): Promise<EmbeddedBus> {
  try {
    return Promise.resolve(new EmbeddedBus(settings));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The embedded bus; besides the {@linkcode Bus} port it offers {@linkcode EmbeddedBus.prune}. */
export class EmbeddedBus implements Bus {
  /** Always `"embedded"`. */
  readonly backend = "embedded";
  readonly #path: string;
  readonly #endpoint: string;
  readonly #db: DatabaseSync;
  readonly #sql: Statements;
  readonly #notifier: ChangeNotifier;
  readonly #retention: Retention;
  readonly #sessionTimeoutMs: number;
  readonly #heartbeatIntervalMs: number;
  readonly #subscriptions = new Set<EmbeddedSubscription>();
  #lastPrune = 0;
  #closing: Promise<void> | undefined;

  /** Use {@linkcode openEmbeddedBus}. */
  constructor(settings: BusSettings) {
    if (typeof settings.path !== "string" || settings.path.length === 0) {
      throw new TypeError("bus.path: expected the path of the SQLite file (embedded backend)");
    }
    this.#path = settings.path;
    this.#endpoint = `embedded bus at ${settings.path}`;
    this.#retention = checkRetention(settings.retention);
    const busyTimeoutMs = positiveMs(
      settings.connectTimeoutMs,
      "connectTimeoutMs",
      DEFAULT_CONNECT_TIMEOUT_MS,
    );
    this.#sessionTimeoutMs = positiveMs(
      settings.group?.sessionTimeoutMs,
      "group.sessionTimeoutMs",
      10000,
    );
    this.#heartbeatIntervalMs = Math.min(
      positiveMs(settings.group?.heartbeatIntervalMs, "group.heartbeatIntervalMs", 3000),
      this.#sessionTimeoutMs / 3,
    );
    let db: DatabaseSync | undefined;
    try {
      ensurePrivateDir(dirname(this.#path));
      db = openDatabase(this.#path, { busyTimeoutMs });
      // A resolved publish must survive a crash of the machine, not only of the process.
      db.exec("PRAGMA synchronous = FULL");
      immediateTransaction(db, () => db!.exec(SCHEMA));
      this.#sql = new Statements(db);
      this.#notifier = new ChangeNotifier(this.#path);
    } catch (error) {
      db?.close();
      throw new BusUnavailableError(
        this.#endpoint,
        `${this.#endpoint}: cannot open the SQLite file: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    this.#db = db;
  }

  #checkOpen(what: string) {
    if (this.#closing) throw new Error(`${what}: the ${this.#endpoint} is closed`);
  }

  /** Runs `fn` in a write transaction; SQLite failures become BusUnavailableError. */
  #write<T>(what: string, fn: () => T): T {
    try {
      return immediateTransaction(this.#db, fn);
    } catch (error) {
      throw new BusUnavailableError(
        this.#endpoint,
        `${what} on ${this.#endpoint} failed: ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }

  publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    try {
      this.#checkOpen("publish");
      checkTopic(topic, "publish");
      checkMessages(topic, messages);
      if (messages.length === 0) return Promise.resolve();
      const now = Date.now();
      this.#write(`publish to ${topic}`, () => {
        this.#sql.ensureTopic.run(topic);
        const row = this.#sql.nextOffset.get(topic) as { next_offset: number };
        let offset = Number(row.next_offset);
        for (const { key, value } of messages) {
          this.#sql.insertMessage.run(topic, offset++, key, value, now);
        }
        this.#sql.setNextOffset.run(offset, topic);
      });
      this.#notifier.poke();
      if (now - this.#lastPrune >= PRUNE_INTERVAL_MS) this.#pruneQuietly();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #pruneQuietly() {
    try {
      this.prune();
    } catch (error) {
      log.warn(errorMessage(error));
    }
  }

  /**
   * Applies retention now: deletes messages older than `maxAgeSeconds` and,
   * per topic, all but the newest `maxMessages`. Publishers call it on their
   * own at most every {@linkcode PRUNE_INTERVAL_MS}. Returns how many
   * messages were deleted.
   */
  prune(): number {
    this.#checkOpen("prune");
    const now = Date.now();
    this.#lastPrune = now;
    const { maxAgeSeconds, maxMessages } = this.#retention;
    return this.#write("pruning", () => {
      let deleted = Number(this.#sql.pruneByAge.run(now - maxAgeSeconds * 1000).changes);
      const topics = this.#sql.topics.all() as Array<{ topic: string; next_offset: number }>;
      for (const { topic, next_offset } of topics) {
        const keepFrom = Number(next_offset) - maxMessages;
        if (keepFrom > 0) deleted += Number(this.#sql.pruneByCount.run(topic, keepFrom).changes);
      }
      return deleted;
    });
  }

  ensureTopics(topics: string[]): Promise<void> {
    try {
      this.#checkOpen("ensureTopics");
      checkTopics(topics, "ensureTopics");
      this.#write("ensureTopics", () => {
        for (const topic of topics) this.#sql.ensureTopic.run(topic);
      });
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  subscribe(options: SubscribeOptions): Promise<Subscription> {
    try {
      this.#checkOpen("subscribe");
      checkSubscribeOptions(options);
      // The group's starting point is fixed now: the beginning, or the current end.
      this.#write(`subscribe of group ${options.group}`, () => {
        for (const topic of options.topics) {
          this.#sql.ensureTopic.run(topic);
          const start = options.fromBeginning
            ? 0
            : Number((this.#sql.nextOffset.get(topic) as { next_offset: number }).next_offset);
          this.#sql.initGroup.run(options.group, topic, start);
        }
      });
      const subscription = new EmbeddedSubscription({
        options,
        sql: this.#sql,
        write: (what, fn) => this.#write(what, fn),
        notifier: this.#notifier,
        sessionTimeoutMs: this.#sessionTimeoutMs,
        heartbeatIntervalMs: this.#heartbeatIntervalMs,
        onClosed: () => this.#subscriptions.delete(subscription),
      });
      this.#subscriptions.add(subscription);
      return Promise.resolve(subscription);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#subscriptions].map((s) => s.close()));
      this.#notifier.close();
      this.#db.close();
    })();
    return this.#closing;
  }
}

interface SubscriptionContext {
  options: SubscribeOptions;
  sql: Statements;
  write<T>(what: string, fn: () => T): T;
  notifier: ChangeNotifier;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  onClosed(): void;
}

/** One group member consuming its topics, each under a (group, topic) lease. */
class EmbeddedSubscription implements Subscription {
  readonly #c: SubscriptionContext;
  readonly #group: string;
  readonly #member = crypto.randomUUID();
  readonly #log: Logger;
  readonly #abort = new AbortController();
  /** Topics whose lease this member holds, with the expiry it last wrote. */
  readonly #held = new Map<string, number>();
  /** Topics whose lease another member holds, with its expiry. */
  readonly #foreign = new Map<string, number>();
  /** Next offset after the last handled message, per topic. */
  readonly #processed = new Map<string, number>();
  /** Offsets last written to bus_group_offsets, per topic. */
  readonly #committed = new Map<string, number>();
  readonly #stopListening: () => void;
  readonly #heartbeat: ReturnType<typeof setInterval>;
  readonly #loop: Promise<void>;
  #lastCommit = Date.now();
  #signaled = true;
  #wake: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  constructor(context: SubscriptionContext) {
    this.#c = context;
    this.#group = context.options.group;
    this.#log = log.child(this.#group);
    this.#stopListening = context.notifier.subscribe(() => this.#signal());
    this.#heartbeat = setInterval(() => this.#renewAll(), context.heartbeatIntervalMs);
    this.#loop = this.#run();
  }

  #signal() {
    this.#signaled = true;
    this.#wake?.();
  }

  async #run(): Promise<void> {
    while (!this.#abort.signal.aborted) {
      this.#signaled = false;
      let progressed = false;
      try {
        for (const topic of this.#c.options.topics) {
          if (this.#abort.signal.aborted) break;
          if (!this.#ensureLease(topic)) continue;
          if (await this.#consumeBatch(topic)) progressed = true;
        }
        this.#commit(false);
      } catch (error) {
        this.#log.warn(`consuming ${this.#c.options.topics.join(", ")}: ${errorMessage(error)}`);
        await sleep(500, this.#abort.signal);
      }
      if (!progressed && !this.#abort.signal.aborted) {
        // Caught up: commit what was handled, then wait.
        try {
          this.#commit(true);
        } catch (error) {
          this.#log.warn(errorMessage(error));
        }
        await this.#idle();
      }
    }
  }

  /** Waits for a change notification, a foreign lease to expire, or the recheck period. */
  async #idle(): Promise<void> {
    if (this.#signaled || this.#abort.signal.aborted) return;
    let wait = IDLE_RECHECK_MS;
    const now = Date.now();
    for (const expires of this.#foreign.values()) wait = Math.min(wait, expires - now + 5);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      timer = setTimeout(resolve, Math.max(5, wait));
    });
    clearTimeout(timer);
    this.#wake = undefined;
  }

  /** True when this member holds the topic's lease (renewing or taking it as needed). */
  #ensureLease(topic: string): boolean {
    const now = Date.now();
    const ttl = this.#c.sessionTimeoutMs;
    const held = this.#held.get(topic);
    if (held !== undefined && held - now > ttl / 2) return true;
    // A plain read first, so a waiting member takes the write lock only when the lease is free.
    const current = this.#c.sql.lease.get(this.#group, topic) as
      | { member: string; expires_ms: number }
      | undefined;
    if (current && current.member !== this.#member && Number(current.expires_ms) > now) {
      this.#held.delete(topic);
      this.#foreign.set(topic, Number(current.expires_ms));
      return false;
    }
    const result = this.#c.write(`lease of ${this.#group}/${topic}`, () => {
      const row = this.#c.sql.lease.get(this.#group, topic) as
        | { member: string; expires_ms: number }
        | undefined;
      if (row && row.member !== this.#member && Number(row.expires_ms) > now) {
        return { ok: false, expires: Number(row.expires_ms), previous: row.member };
      }
      this.#c.sql.takeLease.run(this.#group, topic, this.#member, now + ttl);
      return { ok: true, expires: now + ttl, previous: row?.member };
    });
    if (!result.ok) {
      this.#held.delete(topic);
      this.#foreign.set(topic, result.expires);
      return false;
    }
    this.#foreign.delete(topic);
    if (held === undefined) {
      // Progress made while not holding the lease belongs to whoever held it.
      this.#processed.delete(topic);
      this.#committed.delete(topic);
      this.#log.debug(
        `member ${this.#member} consumes ${topic}` +
          (result.previous && result.previous !== this.#member
            ? ` (took over from ${result.previous})`
            : ""),
      );
    }
    this.#held.set(topic, result.expires);
    return true;
  }

  /** Heartbeat: extends every held lease; drops those another member took. */
  #renewAll() {
    if (this.#held.size === 0) return;
    const expires = Date.now() + this.#c.sessionTimeoutMs;
    try {
      const lost = this.#c.write(
        `lease renewal of ${this.#group}`,
        () =>
          [...this.#held.keys()].filter((topic) =>
            Number(
              this.#c.sql.renewLease.run(expires, this.#group, topic, this.#member).changes,
            ) ===
              0
          ),
      );
      for (const topic of this.#held.keys()) this.#held.set(topic, expires);
      for (const topic of lost) {
        this.#held.delete(topic);
        this.#log.warn(`lost the lease of ${topic} to another member of group ${this.#group}`);
      }
    } catch (error) {
      this.#log.warn(errorMessage(error));
    }
  }

  /** Delivers the next batch of `topic`; true when at least one message was handled. */
  async #consumeBatch(topic: string): Promise<boolean> {
    const row = this.#c.sql.committed.get(this.#group, topic) as { next_offset: number };
    const from = Math.max(Number(row.next_offset), this.#processed.get(topic) ?? 0);
    const rows = this.#c.sql.readBatch.all(topic, from, BATCH_SIZE) as unknown as MessageRow[];
    let handled = false;
    for (const r of rows) {
      if (this.#abort.signal.aborted || !this.#ensureLease(topic)) break;
      const message: BusMessage = {
        topic,
        key: r.msg_key,
        value: r.msg_value,
        partition: 0,
        offset: String(r.msg_offset),
        timestamp: Number(r.accepted_ms),
      };
      if (!await runHandler(this.#c.options.handler, message, this.#log, this.#abort.signal)) {
        break;
      }
      this.#processed.set(topic, Number(r.msg_offset) + 1);
      handled = true;
      this.#commit(false);
    }
    return handled;
  }

  /** Writes processed offsets (at most every COMMIT_INTERVAL_MS unless `force`). */
  #commit(force: boolean) {
    if (!force && Date.now() - this.#lastCommit < COMMIT_INTERVAL_MS) return;
    const pending = [...this.#processed].filter(([topic, next]) =>
      this.#committed.get(topic) !== next
    );
    this.#lastCommit = Date.now();
    if (pending.length === 0) return;
    this.#c.write(`commit of group ${this.#group}`, () => {
      for (const [topic, next] of pending) this.#c.sql.commit.run(next, this.#group, topic);
    });
    for (const [topic, next] of pending) this.#committed.set(topic, next);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort();
      this.#wake?.();
      // Waits for the message in progress, then commits and hands the topics over.
      await this.#loop;
      clearInterval(this.#heartbeat);
      this.#stopListening();
      try {
        this.#commit(true);
        this.#c.write(`release of group ${this.#group}`, () => {
          this.#c.sql.releaseLeases.run(this.#group, this.#member);
        });
      } catch (error) {
        this.#log.warn(`closing: ${errorMessage(error)}`);
      }
      this.#held.clear();
      this.#c.onClosed();
    })();
    return this.#closing;
  }
}
