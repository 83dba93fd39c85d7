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
 * @module
 */
import type { Bus, OutgoingMessage, SubscribeOptions, Subscription } from "../bus/types.ts";

/** Payload bytes above which a group is sent without adding more callers (one caller always fits). */
export const MAX_GROUP_BYTES = 256 * 1024;

interface Waiter {
  messages: OutgoingMessage[];
  bytes: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface TopicQueue {
  waiting: Waiter[];
  flying: boolean;
}

/**
 * Wraps `inner` so that concurrent publishes to the same topic are combined;
 * everything else is passed through. Closing the wrapper closes `inner`.
 */
export function coalescingBus(inner: Bus, maxGroupBytes = MAX_GROUP_BYTES): Bus {
  const queues = new Map<string, TopicQueue>();

  const flush = async (topic: string, queue: TopicQueue) => {
    queue.flying = true;
    try {
      while (queue.waiting.length > 0) {
        const group: Waiter[] = [];
        let bytes = 0;
        while (queue.waiting.length > 0) {
          const next = queue.waiting[0];
          if (group.length > 0 && bytes + next.bytes > maxGroupBytes) break;
          group.push(queue.waiting.shift()!);
          bytes += next.bytes;
        }
        const messages = group.length === 1 ? group[0].messages : group.flatMap((w) => w.messages);
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
      if (!queue) queues.set(topic, queue = { waiting: [], flying: false });
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
