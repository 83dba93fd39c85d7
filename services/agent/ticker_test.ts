import assert from "node:assert/strict";
import { Ticker, type TickerClock } from "./ticker.ts";

/** A clock whose time moves only when told; timers fire in order as it passes them. */
class FakeClock implements TickerClock {
  time = 1_000_000;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now = () => this.time;
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + ms, fn });
    return id;
  };
  clearTimeout = (handle: unknown) => {
    this.#timers.delete(handle as number);
  };
  /** Timers pending. */
  get pending(): number {
    return this.#timers.size;
  }
  /** Moves the clock to `this.time + ms`, firing every timer due on the way, in order. */
  advance(ms: number) {
    const end = this.time + ms;
    for (;;) {
      const due = [...this.#timers].filter(([, t]) =>
        t.at <= end
      ).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.time = Math.max(this.time, due[1].at);
      due[1].fn();
    }
    this.time = end;
  }
}

/** A periodic task on `ticker` that records when (relative to `t0`) it ran. */
function periodic(ticker: Ticker, clock: FakeClock, periodMs: number, slackMs = 0) {
  const t0 = clock.time;
  const runs: number[] = [];
  const task = ticker.task(() => {
    runs.push(clock.time - t0);
    task.in(periodMs);
  }, { slackMs });
  task.in(periodMs);
  return { runs, task };
}

Deno.test("ticker: tasks run when due, one timer pending at a time", () => {
  const clock = new FakeClock();
  const ticker = new Ticker(clock);
  const a = periodic(ticker, clock, 1000);
  const b = periodic(ticker, clock, 2500);
  assert.equal(clock.pending, 1);
  clock.advance(5000);
  assert.deepEqual(a.runs, [1000, 2000, 3000, 4000, 5000]);
  assert.deepEqual(b.runs, [2500, 5000]);
  assert.equal(clock.pending, 1);
  // 1000, 2000, 2500, 3000, 4000, 5000 (a and b together at 5000)
  assert.equal(ticker.wakeUps, 6);
  ticker.close();
  assert.equal(clock.pending, 0);
});

Deno.test("ticker: a task with slack shares the wake-up just before it is due, never an earlier one", () => {
  const clock = new FakeClock();
  const ticker = new Ticker(clock);
  const collect = periodic(ticker, clock, 1000);
  clock.advance(300);
  // The heartbeat: every 5 s, up to 1.5 s early. First due at 5300.
  const beat = periodic(ticker, clock, 5000, 1500);
  clock.advance(20_000 - 300);
  assert.equal(collect.runs.length, 20);
  // It ran at the collection's wake-ups at 5 s, 10 s, ... (not at 4 s, which was
  // within its slack too, because the wake-up at 5 s still came before it was due).
  assert.deepEqual(beat.runs.map((t) => t + 300), [5000, 10000, 15000, 20000]);
  // No wake-up of its own: one per collection.
  assert.equal(ticker.wakeUps, 20);
  ticker.close();
});

Deno.test("ticker: without a wake-up within its slack a task gets its own, on time", () => {
  const clock = new FakeClock();
  const ticker = new Ticker(clock);
  const collect = periodic(ticker, clock, 10_000);
  const beat = periodic(ticker, clock, 3000, 500);
  clock.advance(10_000);
  assert.deepEqual(beat.runs, [3000, 6000, 9000]);
  assert.deepEqual(collect.runs, [10_000]);
  ticker.close();
});

Deno.test("ticker: re-arming, cancelling, a task that throws, bad slack", () => {
  const clock = new FakeClock();
  const ticker = new Ticker(clock);
  const ran: string[] = [];
  const boom = ticker.task(() => {
    ran.push("boom");
    throw new Error("on purpose");
  });
  const other = ticker.task(() => ran.push("other"));
  boom.in(100);
  other.in(100);
  clock.advance(100);
  assert.deepEqual(ran, ["boom", "other"]);
  assert.equal(boom.due, undefined);
  other.in(500);
  other.at(clock.time + 200); // replaces the arming at 500
  assert.equal(other.due, clock.time + 200);
  clock.advance(1000);
  assert.deepEqual(ran, ["boom", "other", "other"]);
  other.in(100);
  other.cancel();
  assert.equal(clock.pending, 0);
  clock.advance(1000);
  assert.equal(ran.length, 3);
  assert.throws(() => ticker.task(() => {}, { slackMs: -1 }), RangeError);
  assert.throws(() => other.in(10, Number.NaN), RangeError);
  ticker.close();
});

Deno.test("ticker: an overdue task runs at the next turn, after the others of this wake-up", () => {
  const clock = new FakeClock();
  const ticker = new Ticker(clock);
  const order: string[] = [];
  const late = ticker.task(() => order.push(`late@${clock.time}`));
  const first = ticker.task(() => {
    order.push(`first@${clock.time}`);
    late.at(clock.time - 50); // already due: fires with a 0 ms timer
  });
  first.in(100);
  clock.advance(100);
  assert.deepEqual(order, [`first@${clock.time}`, `late@${clock.time}`]);
  assert.equal(ticker.wakeUps, 2);
  ticker.close();
});

Deno.test("ticker: a task with a whole period of slack falls into step with another at its first wake-up", () => {
  const clock = new FakeClock();
  const ticker = new Ticker(clock);
  // The embedded store's poll (agentStoreOptions): armed first, every 1 s, up to 1 s early.
  const poll = periodic(ticker, clock, 1000, 1000);
  clock.advance(100);
  // The collection, armed 100 ms later, every 1 s.
  const collect = periodic(ticker, clock, 1000);
  clock.advance(10_000);
  assert.equal(collect.runs.length, 10);
  // The poll's own wake-up at 1000, then it ran with the collection at 1100 and kept in step.
  assert.deepEqual(poll.runs.slice(0, 3), [1000, 1100, 2100]);
  assert.deepEqual(poll.runs.slice(1).map((t, i) => t - 100 - collect.runs[i]), Array(10).fill(0));
  assert.equal(ticker.wakeUps, 11);
  ticker.close();
});
