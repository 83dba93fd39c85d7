/**
 * The analysis application's time-series history: every sample it consumes,
 * kept in an SQLite file in the state directory (`<state_dir>/timeseries.db`).
 *
 * Invariants:
 * - raw points (one row per agent, metric and sample time) are kept for
 *   `rawRetentionHours`; per-minute rollups (count, min, max, sum) for
 *   `rollupRetentionDays`; a point is identified by (agent, metric, time), so
 *   the same sample consumed twice (a replay, two analysis processes) is
 *   stored once;
 * - rollups are computed from the raw points, in the background, for minutes
 *   that got points; a query over a range that is not yet rolled up reads the
 *   raw points of that tail instead, so nothing recent is missing;
 * - the file stays under `maxSizeMb`: past it, the oldest raw points go
 *   first, then the oldest rollups (a warning says so);
 * - writes are batched (one transaction per flush); a query flushes first.
 *
 * A metric missing from a sample means "unchanged" (the duplicate filter):
 * the history stores what was received; readers draw a value as holding
 * until the next one.
 *
 * ```ts
 * const history = HistoryStore.open("/tmp/timeseries.db");
 * history.append({ agent_id: "web-1", hostname: "web-1", timestamp: 1700000000, metrics: { cpu: 12 } });
 * const series = history.query("web-1", 1699999000, 1700000100);
 * console.log(series.cpu.v); // [12]
 * history.close();
 * ```
 *
 * @module
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { openDatabase } from "../common/sqlite.ts";
import type { AlertMessage, DataMessage } from "../common/messages.ts";

/** File name of the history in the state directory. */
export const HISTORY_FILE = "timeseries.db";

/** Retention and size of the history (monitor.yaml `analysis.history`). */
export interface HistoryRetention {
  /** Hours raw points are kept. */
  rawRetentionHours: number;
  /** Days per-minute rollups are kept. */
  rollupRetentionDays: number;
  /** Largest size of the data in the file (MiB). */
  maxSizeMb: number;
}

/** Options of {@linkcode HistoryStore.open}. */
export interface HistoryOptions extends Partial<HistoryRetention> {
  /** Current time (ms), for tests. Default `Date.now`. */
  now?: () => number;
  /** Called with a message when old data is dropped to stay under the size bound. */
  onWarning?: (message: string) => void;
}

/** Points of one metric. Times are Unix seconds. */
export interface SeriesPoints {
  /** Sample times (raw) or minute starts (rollups). */
  t: number[];
  /** Values (raw) or per-minute averages. */
  v: number[];
  /** Per-minute minimum (rollups only). */
  min?: number[];
  /** Per-minute maximum (rollups only). */
  max?: number[];
}

/** Outcome of {@linkcode HistoryStore.query}: metric name -> points. */
export type SeriesSet = Record<string, SeriesPoints>;

/** An alert as the history keeps it: one row from firing to resolved. */
export interface AlertRecord {
  agent_id: string;
  metric: string;
  /** Unix seconds when it fired. */
  start: number;
  /** Unix seconds when it resolved, or null while firing. */
  end: number | null;
  /** Value that fired it. */
  value: number;
  threshold: number;
  /** Value reported with the resolution, when resolved. */
  end_value: number | null;
}

/** Defaults of {@linkcode HistoryRetention} (the same as monitor.yaml's). */
export const HISTORY_DEFAULTS: Readonly<HistoryRetention> = Object.freeze({
  rawRetentionHours: 24,
  rollupRetentionDays: 7,
  maxSizeMb: 1024,
});

/** Queries spanning at most this many seconds read raw points; longer ones read rollups. */
export const RAW_QUERY_SPAN_S = 3 * 3600;

const MINUTE_MS = 60_000;

interface Pending {
  series: number;
  t: number;
  v: number;
}

/**
 * Per-minute rollups as chart points, merged into buckets of whole minutes
 * so that there are at most `maxPoints` (a bucket's time is its first minute).
 */
function bucketed(
  minutes: ReadonlyArray<readonly [number, number, number, number, number]>,
  maxPoints: number,
): SeriesPoints {
  const points: SeriesPoints = { t: [], v: [], min: [], max: [] };
  const width = minutes.length > maxPoints
    ? Math.ceil(minutes.length / Math.max(1, maxPoints)) * MINUTE_MS
    : MINUTE_MS;
  let bucket = NaN;
  let n = 0, lo = Infinity, hi = -Infinity, sum = 0;
  const emit = () => {
    if (n === 0) return;
    points.t.push(bucket / 1000);
    // Averages to 6 significant digits: enough for any chart, and a third of the JSON.
    points.v.push(Number((sum / n).toPrecision(6)));
    points.min!.push(lo);
    points.max!.push(hi);
  };
  for (const [m, count, mLo, mHi, mSum] of minutes) {
    const start = Math.floor(Number(m) / width) * width;
    if (start !== bucket) {
      emit();
      bucket = start;
      n = 0;
      lo = Infinity;
      hi = -Infinity;
      sum = 0;
    }
    n += Number(count);
    lo = Math.min(lo, mLo);
    hi = Math.max(hi, mHi);
    sum += mSum;
  }
  emit();
  return points;
}

/** The history store of one analysis process. */
export class HistoryStore {
  #db: DatabaseSync;
  #retention: HistoryRetention;
  #now: () => number;
  #warn: (message: string) => void;
  #series = new Map<string, number>();
  #names = new Map<number, { agent: string; metric: string }>();
  #pending: Pending[] = [];
  /** series id -> minutes (ms) with new raw points not yet rolled up. */
  #dirty = new Map<number, Set<number>>();
  #stmt: Record<string, StatementSync>;
  #closed = false;
  #timers: Array<ReturnType<typeof setInterval>> = [];

  private constructor(db: DatabaseSync, options: HistoryOptions) {
    this.#db = db;
    this.#retention = {
      rawRetentionHours: options.rawRetentionHours ?? HISTORY_DEFAULTS.rawRetentionHours,
      rollupRetentionDays: options.rollupRetentionDays ?? HISTORY_DEFAULTS.rollupRetentionDays,
      maxSizeMb: options.maxSizeMb ?? HISTORY_DEFAULTS.maxSizeMb,
    };
    this.#now = options.now ?? Date.now;
    this.#warn = options.onWarning ?? (() => {});
    db.exec(`
      CREATE TABLE IF NOT EXISTS series(
        id INTEGER PRIMARY KEY, agent TEXT NOT NULL, metric TEXT NOT NULL, UNIQUE(agent, metric));
      CREATE TABLE IF NOT EXISTS raw(
        series INTEGER NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL,
        PRIMARY KEY(series, t)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS rollup(
        series INTEGER NOT NULL, minute INTEGER NOT NULL, n INTEGER NOT NULL,
        min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL,
        PRIMARY KEY(series, minute)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS alerts(
        agent TEXT NOT NULL, metric TEXT NOT NULL, start REAL NOT NULL, end REAL,
        value REAL NOT NULL, threshold REAL NOT NULL, end_value REAL,
        PRIMARY KEY(agent, metric, start)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS alerts_start ON alerts(start);
      CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    const p = (sql: string) => db.prepare(sql);
    this.#stmt = {
      insertSeries: p("INSERT OR IGNORE INTO series(agent, metric) VALUES (?, ?)"),
      findSeries: p("SELECT id FROM series WHERE agent = ? AND metric = ?"),
      allSeries: p("SELECT id, agent, metric FROM series"),
      insertRaw: p("INSERT OR REPLACE INTO raw(series, t, v) VALUES (?, ?, ?)"),
      rawRange: p("SELECT t, v FROM raw WHERE series = ? AND t >= ? AND t <= ? ORDER BY t"),
      rawLast: p("SELECT t, v FROM raw WHERE series = ? ORDER BY t DESC LIMIT 1"),
      rawBefore: p("SELECT t, v FROM raw WHERE series = ? AND t < ? ORDER BY t DESC LIMIT 1"),
      rollRaw: p(
        `SELECT t / ${MINUTE_MS} * ${MINUTE_MS} AS m, count(*) AS n, min(v) AS lo, max(v) AS hi,
                sum(v) AS s FROM raw WHERE series = ? AND t >= ? AND t < ? GROUP BY m ORDER BY m`,
      ),
      upsertRollup: p("INSERT OR REPLACE INTO rollup VALUES (?, ?, ?, ?, ?, ?)"),
      rollTail: p(
        `SELECT t / ${MINUTE_MS} * ${MINUTE_MS} AS m, count(*) AS n, min(v) AS lo, max(v) AS hi,
                sum(v) AS s FROM raw WHERE series = ? AND t >= ? AND t < ? GROUP BY m ORDER BY m`,
      ),
      rollupRange: p(
        "SELECT minute, n, min, max, sum FROM rollup WHERE series = ? AND minute >= ? AND minute <= ? ORDER BY minute",
      ),
      rollupLastMinute: p("SELECT max(minute) AS m FROM rollup WHERE series = ?"),
      pruneRaw: p("DELETE FROM raw WHERE series = ? AND t < ?"),
      pruneRollup: p("DELETE FROM rollup WHERE series = ? AND minute < ?"),
      pruneAlerts: p("DELETE FROM alerts WHERE start < ? AND end IS NOT NULL"),
      oldestRaw: p("SELECT min(t) AS t FROM raw"),
      oldestRollup: p("SELECT min(minute) AS t FROM rollup"),
      fire: p(
        "INSERT OR IGNORE INTO alerts(agent, metric, start, end, value, threshold) VALUES (?, ?, ?, NULL, ?, ?)",
      ),
      resolve: p(
        `UPDATE alerts SET end = ?, end_value = ? WHERE agent = ? AND metric = ? AND end IS NULL`,
      ),
      alertsSince: p(
        "SELECT * FROM alerts WHERE end IS NULL OR end >= ? ORDER BY start DESC LIMIT ?",
      ),
      getMeta: p("SELECT value FROM meta WHERE key = ?"),
      setMeta: p("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"),
    };
    // The range reads return arrays: rows as objects cost several times more for long ranges.
    for (const name of ["rawRange", "rollupRange", "rollTail"]) {
      (this.#stmt[name] as StatementSync & { setReturnArrays(on: boolean): void })
        .setReturnArrays(true);
    }
    for (
      const row of this.#stmt.allSeries.all() as Array<
        { id: number; agent: string; metric: string }
      >
    ) {
      this.#series.set(`${row.agent}\0${row.metric}`, Number(row.id));
      this.#names.set(Number(row.id), { agent: row.agent, metric: row.metric });
    }
    // Minutes written before a restart but not rolled up yet: roll them up again.
    const rolled = this.#stmt.getMeta.get("rolled_until") as { value: number } | undefined;
    const from = rolled ? Number(rolled.value) : 0;
    for (const id of this.#names.keys()) {
      const row = this.#stmt.rawLast.get(id) as { t: number } | undefined;
      if (row && Number(row.t) >= from) {
        const minutes = new Set<number>();
        for (
          let m = Math.max(from, Number(row.t) - 3 * 3600_000);
          m <= Number(row.t);
          m += MINUTE_MS
        ) {
          minutes.add(Math.floor(m / MINUTE_MS) * MINUTE_MS);
        }
        this.#dirty.set(id, minutes);
      }
    }
  }

  /**
   * Opens (creating if needed) the history file.
   * @param path the SQLite file; its directory must exist
   */
  static open(path: string, options: HistoryOptions = {}): HistoryStore {
    const db = openDatabase(path);
    // Freed pages go back to the file system (incremental_vacuum after pruning).
    db.exec("PRAGMA auto_vacuum = INCREMENTAL");
    return new HistoryStore(db, options);
  }

  /** The retention in force. */
  get retention(): HistoryRetention {
    return { ...this.#retention };
  }

  /**
   * Starts background work: flush every `flushMs`, roll up and prune every
   * `maintainMs`. Stopped by {@linkcode close}.
   */
  startBackground(flushMs = 1000, maintainMs = 30_000): void {
    this.#timers.push(setInterval(() => this.#safely(() => this.flush()), flushMs));
    this.#timers.push(setInterval(() => this.#safely(() => this.maintain()), maintainMs));
  }

  #safely(fn: () => void) {
    try {
      if (!this.#closed) fn();
    } catch (error) {
      this.#warn(`history: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  #seriesId(agent: string, metric: string): number {
    const key = `${agent}\0${metric}`;
    let id = this.#series.get(key);
    if (id === undefined) {
      this.#stmt.insertSeries.run(agent, metric);
      id = Number((this.#stmt.findSeries.get(agent, metric) as { id: number }).id);
      this.#series.set(key, id);
      this.#names.set(id, { agent, metric });
    }
    return id;
  }

  /** Queues a sample's values (written at the next {@linkcode flush}). */
  append(sample: DataMessage): void {
    if (this.#closed) return;
    const t = Math.round(sample.timestamp * 1000);
    for (const [metric, v] of Object.entries(sample.metrics)) {
      this.#pending.push({ series: this.#seriesId(sample.agent_id, metric), t, v });
    }
  }

  /** Records an alert transition. */
  recordAlert(alert: AlertMessage): void {
    if (this.#closed) return;
    if (alert.state === "firing") {
      this.#stmt.fire.run(
        alert.agent_id,
        alert.metric,
        alert.timestamp,
        alert.value,
        alert.threshold,
      );
    } else {
      this.#stmt.resolve.run(alert.timestamp, alert.value, alert.agent_id, alert.metric);
    }
  }

  /** Alerts firing now or resolved within the last `seconds` (newest first). */
  alerts(seconds = 7 * 86400, limit = 1000): AlertRecord[] {
    const since = this.#now() / 1000 - seconds;
    return (this.#stmt.alertsSince.all(since, limit) as Array<Record<string, unknown>>).map((
      r,
    ) => ({
      agent_id: String(r.agent),
      metric: String(r.metric),
      start: Number(r.start),
      end: r.end === null ? null : Number(r.end),
      value: Number(r.value),
      threshold: Number(r.threshold),
      end_value: r.end_value === null ? null : Number(r.end_value),
    }));
  }

  /** Writes the queued points in one transaction. */
  flush(): void {
    if (this.#closed || this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#db.exec("BEGIN");
    try {
      for (const { series, t, v } of batch) {
        this.#stmt.insertRaw.run(series, t, v);
        const minute = Math.floor(t / MINUTE_MS) * MINUTE_MS;
        let set = this.#dirty.get(series);
        if (!set) this.#dirty.set(series, set = new Set());
        set.add(minute);
      }
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** Rolls up finished minutes, prunes what is past retention, enforces the size bound. */
  maintain(): void {
    if (this.#closed) return;
    this.flush();
    this.rollUp();
    this.prune();
  }

  /** Computes the rollups of the minutes that got points (all but the current minute). */
  rollUp(includeCurrent = false): void {
    const current = Math.floor(this.#now() / MINUTE_MS) * MINUTE_MS;
    let lowestLeft = current;
    this.#db.exec("BEGIN");
    try {
      for (const [series, minutes] of this.#dirty) {
        for (const minute of [...minutes]) {
          if (minute >= current && !includeCurrent) {
            lowestLeft = Math.min(lowestLeft, minute);
            continue;
          }
          for (
            const row of this.#stmt.rollRaw.all(series, minute, minute + MINUTE_MS) as Array<
              { m: number; n: number; lo: number; hi: number; s: number }
            >
          ) {
            this.#stmt.upsertRollup.run(series, Number(row.m), row.n, row.lo, row.hi, row.s);
          }
          minutes.delete(minute);
        }
        if (minutes.size === 0) this.#dirty.delete(series);
      }
      this.#stmt.setMeta.run("rolled_until", lowestLeft);
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** Bytes of data in the file (pages in use). */
  sizeBytes(): number {
    const pages = Number(
      (this.#db.prepare("PRAGMA page_count").get() as Record<string, number>).page_count,
    );
    const free = Number(
      (this.#db.prepare("PRAGMA freelist_count").get() as Record<string, number>).freelist_count,
    );
    const size = Number(
      (this.#db.prepare("PRAGMA page_size").get() as Record<string, number>).page_size,
    );
    return (pages - free) * size;
  }

  /** Deletes raw points and rollups past retention; then keeps the file under the size bound. */
  prune(): void {
    const now = this.#now();
    const rawCutoff = now - this.#retention.rawRetentionHours * 3600_000;
    const rollupCutoff = now - this.#retention.rollupRetentionDays * 86400_000;
    this.#deleteBefore(rawCutoff, rollupCutoff);
    this.#stmt.pruneAlerts.run(rollupCutoff / 1000);
    const limit = this.#retention.maxSizeMb * 1024 * 1024;
    let rounds = 0;
    while (this.sizeBytes() > limit && rounds++ < 200) {
      const oldRaw = this.#stmt.oldestRaw.get() as { t: number | null };
      if (oldRaw.t !== null) {
        // Drop the oldest hour of raw points (rollups keep the long view).
        const cut = Number(oldRaw.t) + 3600_000;
        this.#deleteBefore(cut, -Infinity);
        this.#warn(
          `history: above analysis.history.max_size_mb (${this.#retention.maxSizeMb}); dropped raw points before ${
            new Date(cut).toISOString()
          }`,
        );
      } else {
        const oldRollup = this.#stmt.oldestRollup.get() as { t: number | null };
        if (oldRollup.t === null) break;
        const cut = Number(oldRollup.t) + 86400_000;
        this.#deleteBefore(-Infinity, cut);
        this.#warn(
          `history: above analysis.history.max_size_mb (${this.#retention.maxSizeMb}); dropped rollups before ${
            new Date(cut).toISOString()
          }`,
        );
      }
      this.#db.exec("PRAGMA incremental_vacuum");
    }
    this.#db.exec("PRAGMA incremental_vacuum(1000)");
  }

  #deleteBefore(rawCutoff: number, rollupCutoff: number) {
    this.#db.exec("BEGIN");
    try {
      for (const id of this.#names.keys()) {
        if (rawCutoff > -Infinity) this.#stmt.pruneRaw.run(id, Math.floor(rawCutoff));
        if (rollupCutoff > -Infinity) this.#stmt.pruneRollup.run(id, Math.floor(rollupCutoff));
      }
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** Metric names with history for `agent`. */
  metricsOf(agent: string): string[] {
    return [...this.#names.values()].filter((n) => n.agent === agent).map((n) => n.metric).sort();
  }

  /** Agents with history. */
  agentIds(): string[] {
    return [...new Set([...this.#names.values()].map((n) => n.agent))].sort();
  }

  /**
   * Points of `agent` between `from` and `to` (Unix seconds), for `metrics`
   * (default: every metric it has). Spans up to {@linkcode RAW_QUERY_SPAN_S}
   * read raw points; longer spans read per-minute rollups (with the raw
   * points of minutes not rolled up yet folded in the same way). With
   * `carryIn`, a raw series starts with the value in force at `from` (the
   * last point before it, shown at `from`), since a value holds until the
   * next one. With `maxPoints`, rollups are merged into wider buckets
   * (min of the minimums, max of the maximums, average weighted by the
   * samples) so that a series has at most that many points.
   */
  query(
    agent: string,
    from: number,
    to: number,
    metrics?: string[],
    carryIn = false,
    maxPoints = Infinity,
  ): SeriesSet {
    this.flush();
    const out: SeriesSet = {};
    const fromMs = Math.floor(from * 1000);
    const toMs = Math.ceil(to * 1000);
    const raw = to - from <= RAW_QUERY_SPAN_S;
    for (const metric of metrics ?? this.metricsOf(agent)) {
      const id = this.#series.get(`${agent}\0${metric}`);
      if (id === undefined) continue;
      if (raw) {
        const rows = this.#stmt.rawRange.all(id, fromMs, toMs) as unknown as Array<
          [number, number]
        >;
        const points: SeriesPoints = { t: new Array(rows.length), v: new Array(rows.length) };
        for (let i = 0; i < rows.length; i++) {
          points.t[i] = Number(rows[i][0]) / 1000;
          points.v[i] = rows[i][1];
        }
        // The value in force at `from` (it holds until the next one): shown at `from`.
        const before = this.#stmt.rawBefore.get(id, fromMs) as { t: number; v: number } | undefined;
        if (carryIn && before && (rows.length === 0 || Number(rows[0][0]) > fromMs)) {
          points.t.unshift(from);
          points.v.unshift(before.v);
        }
        out[metric] = points;
        continue;
      }
      type Minute = [m: number, n: number, lo: number, hi: number, sum: number];
      const minutes: Minute[] = [];
      const startMinute = Math.floor(fromMs / MINUTE_MS) * MINUTE_MS;
      const rolled = this.#stmt.rollupRange.all(id, startMinute, toMs) as unknown as Minute[];
      const dirty = this.#dirty.get(id) ?? new Set<number>();
      let last = -Infinity;
      for (const row of rolled) {
        const minute = Number(row[0]);
        if (dirty.has(minute)) continue;
        minutes.push(row);
        last = minute;
      }
      // Minutes not rolled up yet (the current one, or newer than the last rollup).
      const tailFrom = Math.max(
        startMinute,
        dirty.size > 0 ? Math.min(...dirty) : last + MINUTE_MS,
      );
      if (tailFrom <= toMs) {
        for (const row of this.#stmt.rollTail.all(id, tailFrom, toMs + 1) as unknown as Minute[]) {
          const minute = Number(row[0]);
          if (minute <= last && !dirty.has(minute)) continue;
          minutes.push(row);
        }
        // Keep time order (dirty minutes can sit between rolled ones).
        if (minutes.some((m, i) => i > 0 && m[0] < minutes[i - 1][0])) {
          minutes.sort((a, b) => a[0] - b[0]);
        }
      }
      out[metric] = bucketed(minutes, maxPoints);
    }
    return out;
  }

  /** Flushes, rolls up what is pending, and closes the file. */
  close(): void {
    if (this.#closed) return;
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    try {
      this.flush();
      this.rollUp();
    } catch (error) {
      this.#warn(`history: closing: ${error instanceof Error ? error.message : String(error)}`);
    }
    this.#closed = true;
    this.#db.close();
  }
}
