/**
 * Helpers shared by the Bus backends: argument validation with clear
 * messages, the handler retry loop (a throwing handler is retried with
 * backoff, so the message is neither skipped nor committed).
 *
 * @module
 */
import { sleep } from "../common/async.ts";
import { errorMessage, type Logger } from "../common/log.ts";
import type { BusMessage, OutgoingMessage, SubscribeOptions } from "./types.ts";

/** Default connect timeout of both backends (ms). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/** Default publish timeout (ms). */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 30000;

/** Topic names: the characters Kafka accepts, at most 249 of them. */
const TOPIC_PATTERN = /^[A-Za-z0-9._-]{1,249}$/;

/**
 * Throws a TypeError naming `where` unless `topic` is a valid topic name.
 * @param where e.g. `publish` or `subscribe`
 */
export function checkTopic(topic: unknown, where: string): asserts topic is string {
  if (typeof topic !== "string" || !TOPIC_PATTERN.test(topic) || topic === "." || topic === "..") {
    throw new TypeError(
      `${where}: topic must be 1-249 characters of letters, digits, '.', '_' or '-', got ${
        JSON.stringify(topic) ?? String(topic)
      }`,
    );
  }
}

/** Throws a TypeError naming the message index unless every message has string key and value. */
export function checkMessages(
  topic: string,
  messages: unknown,
): asserts messages is OutgoingMessage[] {
  if (!Array.isArray(messages)) {
    throw new TypeError(`publish to ${topic}: messages must be an array`);
  }
  messages.forEach((m, i) => {
    if (typeof m !== "object" || m === null) {
      throw new TypeError(`publish to ${topic}: message ${i} must be an object {key, value}`);
    }
    const { key, value } = m as Record<string, unknown>;
    if (typeof key !== "string") {
      throw new TypeError(`publish to ${topic}: message ${i}: key must be a string`);
    }
    if (typeof value !== "string") {
      throw new TypeError(`publish to ${topic}: message ${i}: value must be a string`);
    }
  });
}

/** Validates subscribe options; throws a TypeError naming the bad field. */
export function checkSubscribeOptions(options: SubscribeOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("subscribe: options must be an object");
  }
  if (!Array.isArray(options.topics) || options.topics.length === 0) {
    throw new TypeError("subscribe: topics must be a non-empty array of topic names");
  }
  for (const topic of options.topics) checkTopic(topic, "subscribe");
  if (new Set(options.topics).size !== options.topics.length) {
    throw new TypeError(`subscribe: topics must not repeat, got ${options.topics.join(", ")}`);
  }
  if (typeof options.group !== "string" || options.group.length === 0) {
    throw new TypeError("subscribe: group must be a non-empty string");
  }
  if (typeof options.handler !== "function") {
    throw new TypeError("subscribe: handler must be a function");
  }
}

/** Validates a list of topics for ensureTopics. */
export function checkTopics(topics: unknown, where: string): asserts topics is string[] {
  if (!Array.isArray(topics)) throw new TypeError(`${where}: topics must be an array`);
  for (const topic of topics) checkTopic(topic, where);
}

/** Validates a positive duration setting. */
export function positiveMs(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(`bus settings: ${name} must be a positive number of milliseconds`);
  }
  return value;
}

/**
 * Runs `handler(message)` until it succeeds. A throw is logged and retried
 * with backoff (100 ms doubling to 5 s). Returns false when `signal` aborted
 * before the handler succeeded (the message must then not be committed).
 * `beforeRetry` runs before each retry wait (e.g. a group heartbeat) and may
 * throw to abandon the message.
 */
export async function runHandler(
  handler: SubscribeOptions["handler"],
  message: BusMessage,
  log: Logger,
  signal: AbortSignal,
  beforeRetry?: () => Promise<void>,
): Promise<boolean> {
  let delay = 100;
  for (let attempt = 1;; attempt++) {
    if (signal.aborted) return false;
    try {
      await handler(message);
      return true;
    } catch (error) {
      log.warn(
        `handler failed for ${message.topic}[${message.partition}]@${message.offset} ` +
          `(attempt ${attempt}), retrying in ${delay} ms: ${errorMessage(error)}`,
      );
    }
    if (beforeRetry) await beforeRetry();
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 5000);
  }
}
