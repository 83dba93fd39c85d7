/**
 * Helpers shared by the Store backends: argument validation with clear
 * messages, the prefix range end, and the serial event dispatcher every
 * watcher uses.
 *
 * @module
 */
import { errorMessage, type Logger } from "../common/log.ts";
import type { WatchEvent, WatchOptions } from "./types.ts";

/** Default connect timeout of both backends (ms). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  return JSON.stringify(value) ?? String(value);
}

/** Throws a TypeError naming `where` unless `key` is a non-empty string. */
export function checkKey(key: unknown, where: string): asserts key is string {
  if (typeof key !== "string" || key.length === 0) {
    throw new TypeError(`${where}: key must be a non-empty string, got ${show(key)}`);
  }
}

/** Throws a TypeError naming `where` unless `prefix` is a string (empty means every key). */
export function checkPrefix(prefix: unknown, where: string): asserts prefix is string {
  if (typeof prefix !== "string") {
    throw new TypeError(`${where}: prefix must be a string, got ${show(prefix)}`);
  }
}

/** Throws a TypeError naming `where` unless `value` is a string. */
export function checkValue(value: unknown, where: string): asserts value is string {
  if (typeof value !== "string") {
    throw new TypeError(`${where}: value must be a string, got ${show(value)}`);
  }
}

/**
 * Throws a TypeError naming `where` unless `revision` is a whole number
 * `>= min`.
 */
export function checkRevision(
  revision: unknown,
  where: string,
  min: number,
): asserts revision is number {
  if (typeof revision !== "number" || !Number.isSafeInteger(revision) || revision < min) {
    throw new TypeError(
      `${where}: expected a whole number >= ${min}, got ${show(revision)}`,
    );
  }
}

/** Throws a TypeError unless `ttl` is a whole number of seconds >= 1. */
export function checkTtl(ttl: unknown): asserts ttl is number {
  if (typeof ttl !== "number" || !Number.isSafeInteger(ttl) || ttl < 1) {
    throw new TypeError(`lease: TTL must be a whole number of seconds >= 1, got ${show(ttl)}`);
  }
}

/** Throws a TypeError unless `fn` is a function. */
export function checkFunction(fn: unknown, where: string): void {
  if (typeof fn !== "function") {
    throw new TypeError(`${where}: expected a function, got ${show(fn)}`);
  }
}

/**
 * Validates the arguments of `watch`; throws a TypeError naming the watch
 * and the bad argument.
 */
export function checkWatchArgs(
  prefix: unknown,
  options: WatchOptions,
  onEvent: unknown,
): asserts prefix is string {
  checkPrefix(prefix, "watch");
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`watch ${JSON.stringify(prefix)}: options must be an object`);
  }
  checkFunction(onEvent, `watch ${JSON.stringify(prefix)}: onEvent`);
  if (options.onError !== undefined) {
    checkFunction(options.onError, `watch ${JSON.stringify(prefix)}: onError`);
  }
  if (options.fromRevision !== undefined) {
    checkRevision(options.fromRevision, `watch ${JSON.stringify(prefix)}: fromRevision`, 1);
  }
}

/**
 * Tells a lease's onLost listeners that it was re-established: logs
 * `error` as a warning, then calls each listener; one that throws is logged
 * (naming lease `id`) and the others still run.
 */
export function notifyLeaseLost(
  listeners: Iterable<(error: Error) => void>,
  error: Error,
  id: number | string,
  log: Logger,
): void {
  log.warn(error.message);
  for (const listener of listeners) {
    try {
      listener(error);
    } catch (e) {
      log.error(`lease ${id}: onLost listener threw: ${errorMessage(e)}`);
    }
  }
}

/**
 * The smallest string greater than every string that starts with `prefix`
 * (in UTF-8 byte order, which is code point order), or `undefined` when there
 * is none (empty prefix, or only U+10FFFF code points).
 */
export function prefixEnd(prefix: string): string | undefined {
  const points = Array.from(prefix, (c) => c.codePointAt(0) ?? 0);
  while (points.length > 0) {
    let last = points.pop()!;
    if (last < 0x10ffff) {
      last += 1;
      // Lone surrogates are not valid in UTF-8: skip the surrogate block.
      if (last >= 0xd800 && last <= 0xdfff) last = 0xe000;
      points.push(last);
      return String.fromCodePoint(...points);
    }
  }
  return undefined;
}

/** True when `key` starts with `prefix`. */
export function hasPrefix(key: string, prefix: string): boolean {
  return key.startsWith(prefix);
}

/**
 * Delivers watch events to one handler, one at a time and in order: each
 * call is awaited before the next. A handler that throws is logged and the
 * watch goes on (the event is not redelivered). After {@linkcode close} no
 * new handler call starts.
 */
export class WatchDispatcher {
  #queue: WatchEvent[] = [];
  #running = false;
  #closed = false;
  #idle: (() => void)[] = [];

  /**
   * @param onEvent the watch handler
   * @param what names the watch in log lines, e.g. `watch /monitor/config/`
   * @param log where handler failures go
   */
  constructor(
    readonly onEvent: (event: WatchEvent) => void | Promise<void>,
    readonly what: string,
    readonly log: Logger,
  ) {}

  /** Events queued and not yet handed to the handler. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Queues events for delivery. Ignored after close. */
  push(events: WatchEvent[]): void {
    if (this.#closed || events.length === 0) return;
    this.#queue.push(...events);
    if (!this.#running) {
      // Set before the call: a synchronous handler may finish the whole drain at once.
      this.#running = true;
      void this.#drain();
    }
  }

  /** Resolves when every queued event was handled (or the dispatcher closed). */
  idle(): Promise<void> {
    if (!this.#running || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #drain(): Promise<void> {
    try {
      while (!this.#closed && this.#queue.length > 0) {
        const event = this.#queue.shift()!;
        try {
          await this.onEvent(event);
        } catch (error) {
          this.log.error(
            `${this.what}: handler failed on ${event.type} ${event.key} at revision ${event.revision}: ${
              errorMessage(error)
            }`,
          );
        }
      }
    } finally {
      this.#running = false;
      this.#wakeIdle();
    }
  }

  #wakeIdle() {
    const waiting = this.#idle;
    this.#idle = [];
    for (const resolve of waiting) resolve();
  }

  /**
   * Stops delivery: queued events are dropped and no handler call starts
   * afterwards (a call already running finishes on its own).
   */
  close(): void {
    this.#closed = true;
    this.#queue.length = 0;
    this.#wakeIdle();
  }
}
