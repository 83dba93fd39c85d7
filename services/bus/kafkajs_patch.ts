/**
 * A fix for kafkajs 2.2.4's idle timer loop (tulios/kafkajs#1556, fixes
 * proposed in #1667 and #1768, not released): once a connection has had a
 * response, `RequestQueue.scheduleCheckPendingRequests` re-arms a timer of
 * `throttledUntil - Date.now()` ms, negative when nothing is throttled, so
 * every Kafka connection (producer, consumers, admin; one per Kafka broker
 * each) wakes its process about once a millisecond for ever, with nothing
 * to do. Measured on a broker with 20 agents (bench scenario 8, Kafka mock,
 * README.md "Performance"): 12-13 % of a core without this patch, 4 % with.
 *
 * The patched method arms the timer only when it has a purpose: requests
 * are waiting (then as before: at the end of a throttle, else in 10 ms), or
 * the connection is throttled (then when the throttle ends). With no request
 * waiting and no throttle there is nothing to check: a request pushed later
 * is sent at once or schedules its own check (`push` calls this method), and
 * every answered request checks the queue again.
 *
 * Imported for its effect by kafka.ts (the only importer of kafkajs);
 * {@linkcode patchedRequestQueue} says whether the patch is in place.
 *
 * @module
 */
// kafkajs's own module (CommonJS, one instance per process, the one its connections use).
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";

/** What kafkajs waits before checking waiting requests again (its CHECK_PENDING_REQUESTS_INTERVAL). */
const CHECK_PENDING_REQUESTS_INTERVAL_MS = 10;

interface Queue {
  throttledUntil: number;
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
  pending: unknown[];
  checkPendingRequests(): void;
}

const proto = (RequestQueue as { prototype?: Record<string, unknown> } | undefined)?.prototype;
const original = proto?.scheduleCheckPendingRequests;

/** True when the installed kafkajs has the method this patch replaces (and it was replaced). */
export const patchedRequestQueue: boolean = typeof original === "function";

if (proto && patchedRequestQueue) {
  proto.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: Queue) {
    if (this.throttleCheckTimeoutId) return;
    let scheduleAt = this.throttledUntil - Date.now();
    if (this.pending.length > 0) {
      scheduleAt = scheduleAt > 0 ? scheduleAt : CHECK_PENDING_REQUESTS_INTERVAL_MS;
    } else if (scheduleAt <= 0) {
      return; // Nothing waits, nothing throttled: no timer (kafkajs re-armed one every ~1 ms).
    }
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    }, scheduleAt);
  };
}
