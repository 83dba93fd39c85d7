/**
 * Group commit for the broker's publishes: while one publish to a topic is
 * in flight, publishes from other sessions wait and then go out together as
 * one `Bus.publish` (one Kafka produce request per partition leader instead
 * of one per agent batch). Under light load a publish goes out at once, so
 * nothing waits that did not have to.
 *
 * Each caller's promise settles with the publish that carried its messages:
 * a failure fails every caller of that group (each session then ends its
 * stream and its agent re-sends, as after a failure of its own publish).
 * Order is kept: one publish per topic is in flight at a time and groups go
 * out in arrival order.
 *
 * Under load, groups also wait out a short interval: a group goes out no
 * sooner than `minIntervalMs` after the previous one to its topic started
 * ({@linkcode DEFAULT_MIN_PUBLISH_INTERVAL_MS}), so a broker sends at most
 * about 1000 / `minIntervalMs` produce requests per second and topic however
 * many agents it carries (each request costs kafkajs and the bus a fixed
 * amount of CPU, and with a fast bus the groups were small). A publish after
 * a quiet interval still goes out at once.
 *
 * @module
 */
import type { Bus, OutgoingMessage, SubscribeOptions, Subscription } from "../bus/types.ts";

/** Payload bytes above which a group is sent without adding more callers (one caller always fits). */
export const MAX_GROUP_BYTES = 256 * 1024;

/**
 * Least time between the starts of two publishes to one topic (ms). Measured
 * with bench scenario 8 (one broker, 3,000 agents at 1 sample/s, Kafka mock,
 * two runs each): 25 ms against 10 ms left the broker's CPU the same (44-50 %)
 * and cut the Kafka mock's from 27-28 % of a core to 18 %, for sample →
 * Kafka p50 22 ms instead of 11 ms.
 */
export const DEFAULT_MIN_PUBLISH_INTERVAL_MS = 25;

/** Options of {@linkcode coalescingBus}. */
export interface CoalesceOptions {
  /** Default {@linkcode MAX_GROUP_BYTES}. */
  maxGroupBytes?: number;
  /** Default {@linkcode DEFAULT_MIN_PUBLISH_INTERVAL_MS}; 0 sends each group as soon as the previous one is done. */
  minIntervalMs?: number;
}

interface Waiter {
  messages: OutgoingMessage[];
  bytes: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface TopicQueue {
  waiting: Waiter[];
  flying: boolean;
  /** When the last publish to this topic started (performance.now()). */
  lastStart: number;
}

/**
 * Wraps `inner` so that concurrent publishes to the same topic are combined;
 * everything else is passed through. Closing the wrapper closes `inner`.
 */
export function coalescingBus(inner: Bus, options: number | CoalesceOptions = {}): Bus {
  const { maxGroupBytes = MAX_GROUP_BYTES, minIntervalMs = DEFAULT_MIN_PUBLISH_INTERVAL_MS } =
    typeof options === "number" ? { maxGroupBytes: options } : options;
  const queues = new Map<string, TopicQueue>();

  const flush = async (topic: string, queue: TopicQueue) => {
    queue.flying = true;
    try {
      while (queue.waiting.length > 0) {
        const wait = queue.lastStart + minIntervalMs - performance.now();
        // Let more callers join the group (only under load: the last publish was recent).
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        let taken = 0;
        let bytes = 0;
        while (taken < queue.waiting.length) {
          const next = queue.waiting[taken];
          if (taken > 0 && bytes + next.bytes > maxGroupBytes) break;
          taken++;
          bytes += next.bytes;
        }
        const group = queue.waiting.splice(0, taken);
        let messages: OutgoingMessage[];
        if (group.length === 1) messages = group[0].messages;
        else {
          messages = [];
          for (const w of group) for (const m of w.messages) messages.push(m);
        }
        queue.lastStart = performance.now();
        try {
          await inner.publish(topic, messages);
          for (const w of group) w.resolve();
        } catch (error) {
          for (const w of group) w.reject(error);
        }
      }
    } finally {
      queue.flying = false;
    }
  };

  return {
    get backend() {
      return inner.backend;
    },
    publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
      if (messages.length === 0) return inner.publish(topic, messages);
      let queue = queues.get(topic);
      if (!queue) {
        queues.set(topic, queue = { waiting: [], flying: false, lastStart: -Infinity });
      }
      let bytes = 0;
      for (const m of messages) bytes += m.key.length + m.value.length;
      const done = new Promise<void>((resolve, reject) => {
        queue.waiting.push({ messages, bytes, resolve, reject });
      });
      if (!queue.flying) void flush(topic, queue);
      return done;
    },
    subscribe(options: SubscribeOptions): Promise<Subscription> {
      return inner.subscribe(options);
    },
    ensureTopics(topics: string[]): Promise<void> {
      return inner.ensureTopics(topics);
    },
    close(): Promise<void> {
      return inner.close();
    },
  };
}
