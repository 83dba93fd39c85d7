import assert from "node:assert/strict";
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import { patchedRequestQueue } from "./kafkajs_patch.ts";

/** A stand-in for kafkajs's RequestQueue state that the patched method reads. */
function queue(pending: number, throttledUntil: number) {
  return {
    throttledUntil,
    throttleCheckTimeoutId: null as ReturnType<typeof setTimeout> | null,
    pending: Array.from({ length: pending }, (_, i) => i),
    checks: 0,
    checkPendingRequests() {
      this.checks++;
    },
  };
}

const schedule = (q: ReturnType<typeof queue>) =>
  (RequestQueue.prototype.scheduleCheckPendingRequests as (this: unknown) => void).call(q);

Deno.test("kafkajs patch: nothing waiting and nothing throttled arms no timer (kafkajs re-armed one every ~1 ms)", () => {
  assert.equal(
    patchedRequestQueue,
    true,
    "the installed kafkajs has RequestQueue.scheduleCheckPendingRequests",
  );
  const idle = queue(0, -1);
  schedule(idle);
  assert.equal(idle.throttleCheckTimeoutId, null);
  // A throttle that already ended is the same.
  const ended = queue(0, Date.now() - 5);
  schedule(ended);
  assert.equal(ended.throttleCheckTimeoutId, null);
});

Deno.test("kafkajs patch: waiting requests are checked again in 10 ms, or when the throttle ends", async () => {
  const waiting = queue(2, -1);
  schedule(waiting);
  assert.notEqual(waiting.throttleCheckTimeoutId, null);
  // One timer at a time.
  const first = waiting.throttleCheckTimeoutId;
  schedule(waiting);
  assert.equal(waiting.throttleCheckTimeoutId, first);
  const throttled = queue(0, Date.now() + 60);
  schedule(throttled);
  assert.notEqual(throttled.throttleCheckTimeoutId, null);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(waiting.checks, 1, "checked after 10 ms");
  assert.equal(waiting.throttleCheckTimeoutId, null);
  assert.equal(throttled.checks, 0, "not before the throttle ends");
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(throttled.checks, 1, "checked when the throttle ended");
});
