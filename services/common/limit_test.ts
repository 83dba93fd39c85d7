import assert from "node:assert/strict";
import { concurrencyLimit } from "./limit.ts";

Deno.test("concurrencyLimit: never more than max running, starts in order, errors pass through", async () => {
  const limited = concurrencyLimit(3);
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const calls = Array.from({ length: 20 }, (_, i) =>
    limited(async () => {
      started.push(i);
      running++;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, (i * 7) % 5));
      running--;
      if (i === 5) throw new Error("call 5 failed");
      return i;
    }));
  const settled = await Promise.allSettled(calls);
  assert.equal(most, 3);
  assert.deepEqual(started, Array.from({ length: 20 }, (_, i) => i));
  assert.equal(settled.filter((s) => s.status === "fulfilled").length, 19);
  const failed = settled[5];
  assert.ok(failed.status === "rejected" && String(failed.reason).includes("call 5 failed"));
  assert.deepEqual(await limited(() => Promise.resolve("after")), "after");
});

Deno.test("concurrencyLimit: a limit that is not an integer >= 1 is refused, naming it", () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => concurrencyLimit(bad), /expected an integer >= 1, got/);
  }
});

Deno.test("concurrencyLimit: a call made while a finished call hands its slot to a waiter waits too", async () => {
  // The new call comes a few microtasks after the first call's end, whichever
  // tick that falls on relative to the waiter's start.
  for (let ticks = 0; ticks < 6; ticks++) {
    const limited = concurrencyLimit(1);
    let running = 0;
    let most = 0;
    const calls: Promise<void>[] = [];
    const work = (then?: () => void) =>
      limited(async () => {
        running++;
        most = Math.max(most, running);
        await Promise.resolve();
        running--;
        if (then) {
          let p = Promise.resolve();
          for (let i = 0; i < ticks; i++) p = p.then(() => {});
          calls.push(p.then(() => work()));
        }
      });
    calls.push(work(() => {}), work());
    while (calls.length < 3) await new Promise((resolve) => setTimeout(resolve, 1));
    await Promise.all(calls);
    assert.equal(most, 1, `${ticks} ticks after the first call's end`);
  }
});
