/**
 * The supervisor's process manager with fake children: readiness,
 * exponential backoff, crash loop, graceful and forced stop; the restart
 * policy on its own; prefixed output.
 */
import assert from "node:assert/strict";
import {
  type ChildExit,
  type ChildHandle,
  ManagedService,
  RestartPolicy,
  ServiceOutput,
  type ServiceReporter,
} from "../services/supervisor/mod.ts";
import { waitUntil } from "./broker_support.ts";

/** A child driven by the test: print lines, exit, see the signals it got. */
class FakeChild implements ChildHandle {
  static nextPid = 1000;
  readonly pid = FakeChild.nextPid++;
  readonly signals: string[] = [];
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  readonly status: Promise<ChildExit>;
  #out!: ReadableStreamDefaultController<Uint8Array>;
  #err!: ReadableStreamDefaultController<Uint8Array>;
  #exit!: (exit: ChildExit) => void;
  #done = false;

  constructor(readonly behaviour: { ignoreTerm?: boolean } = {}) {
    this.stdout = new ReadableStream({ start: (c) => void (this.#out = c) });
    this.stderr = new ReadableStream({ start: (c) => void (this.#err = c) });
    this.status = new Promise((resolve) => this.#exit = resolve);
  }

  print(text: string, stream: "stdout" | "stderr" = "stdout") {
    (stream === "stdout" ? this.#out : this.#err).enqueue(new TextEncoder().encode(text));
  }

  exit(code: number, signal: string | null = null) {
    if (this.#done) return;
    this.#done = true;
    this.#out.close();
    this.#err.close();
    this.#exit({ code, signal });
  }

  kill(signal: Deno.Signal) {
    if (this.#done) throw new TypeError("child process has already terminated");
    this.signals.push(signal);
    if (signal === "SIGKILL") this.exit(137, "SIGKILL");
    else if (!this.behaviour.ignoreTerm) this.exit(0);
  }
}

class Recorder implements ServiceReporter {
  readonly lines: string[] = [];
  readonly events: string[] = [];
  line(service: string, stream: string, text: string) {
    this.lines.push(`${service} ${stream} ${text}`);
  }
  event(service: string, level: string, message: string) {
    this.events.push(`${level} ${service} ${message}`);
  }
}

function harness(
  behaviour: { ignoreTerm?: boolean } = {},
  options: { readyTimeoutMs?: number; stopTimeoutMs?: number } = {},
) {
  const children: FakeChild[] = [];
  const reporter = new Recorder();
  const service = new ManagedService("broker", { program: "deno", args: ["run", "x.ts"] }, {
    spawn: () => {
      const child = new FakeChild(behaviour);
      children.push(child);
      return child;
    },
    policy: { initialDelayMs: 5, maxDelayMs: 40, crashLimit: 5, crashWindowMs: 60_000 },
    readyTimeoutMs: options.readyTimeoutMs ?? 5_000,
    stopTimeoutMs: options.stopTimeoutMs ?? 5_000,
    reporter,
  });
  return { children, reporter, service };
}

Deno.test("restart policy: delays double up to the cap, 5 crashes within 60 s give up", () => {
  const policy = new RestartPolicy();
  const delays: number[] = [];
  let t = 0;
  for (let i = 0; i < 4; i++) {
    const d = policy.crashed(t += 1000, 100);
    assert.equal(d.action, "restart");
    if (d.action === "restart") delays.push(d.delayMs);
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000]);
  const last = policy.crashed(t += 1000, 100);
  assert.deepEqual(last, { action: "give-up", crashes: 5, windowMs: 60_000 });
});

Deno.test("restart policy: crashes spread over more than the window never give up; a long run resets the delay", () => {
  const policy = new RestartPolicy({ maxDelayMs: 2000 });
  let t = 0;
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) {
    const d = policy.crashed(t += 20_000, 1000); // 3 per minute at most
    assert.equal(d.action, "restart", `crash ${i + 1}`);
    if (d.action === "restart") delays.push(d.delayMs);
  }
  assert.deepEqual(delays.slice(0, 4), [500, 1000, 2000, 2000], "capped");
  const afterLongRun = policy.crashed(t += 20_000, 60_000);
  assert.equal(afterLongRun.action === "restart" && afterLongRun.delayMs, 500);
});

Deno.test("a service's monitor:serving lines say what it bound; a restart forgets them", async () => {
  const { children, reporter, service } = harness();
  const ready = service.start();
  await waitUntil(() => children.length === 1, 2000, "spawn");
  children[0].print("monitor:serving dashboard http://127.0.0.1:41234/\n");
  children[0].print("monitor:serving not a serving line\nmonitor:ready\n");
  assert.equal(await ready, true);
  assert.equal(service.serving("dashboard"), "http://127.0.0.1:41234/");
  assert.equal(service.serving("broker"), undefined);
  // A malformed one is passed on like any other line; the well-formed one is not.
  await waitUntil(() => reporter.lines.length === 1, 2000, "lines");
  assert.deepEqual(reporter.lines, ["broker stdout monitor:serving not a serving line"]);
  // Printed on stderr it is only output.
  children[0].print("monitor:serving admin http://127.0.0.1:1/\n", "stderr");
  await waitUntil(() => reporter.lines.length === 2, 2000, "stderr line");
  assert.equal(service.serving("admin"), undefined);
  const again = service.restart();
  await waitUntil(() => children.length === 2, 2000, "second spawn");
  assert.equal(service.serving("dashboard"), undefined, "the new process has said nothing yet");
  children[1].print("monitor:ready\n");
  assert.equal(await again, true);
  assert.equal(await service.stop(), true);
});

Deno.test("a service is ready when it prints monitor:ready; its output is passed on line by line", async () => {
  const { children, reporter, service } = harness();
  const ready = service.start();
  await waitUntil(() => children.length === 1, 2000, "spawn");
  children[0].print("starting\nhalf a ");
  children[0].print("line\nmonitor:ready\n");
  children[0].print("on stderr\n", "stderr");
  assert.equal(await ready, true);
  assert.equal(service.state, "ready");
  assert.equal(service.pid, children[0].pid);
  await waitUntil(() => reporter.lines.length === 3, 2000, "lines");
  // Order holds within a stream (stdout and stderr are read independently).
  assert.deepEqual(reporter.lines.filter((l) => l.includes("stdout")), [
    "broker stdout starting",
    "broker stdout half a line",
  ]);
  assert.deepEqual(reporter.lines.filter((l) => l.includes("stderr")), ["broker stderr on stderr"]);
  assert.ok(reporter.events.includes(`info broker ready (pid ${children[0].pid})`));
  assert.equal(await service.stop(), true);
  assert.deepEqual(children[0].signals, ["SIGTERM"]);
  assert.equal(service.state, "stopped");
});

Deno.test("an unexpected exit is restarted with growing delays; 5 crashes in a minute stop the retries", async () => {
  const { children, reporter, service } = harness();
  const ready = service.start();
  for (let i = 0; i < 5; i++) {
    await waitUntil(() => children.length === i + 1, 5000, `start ${i + 1}`);
    children[i].exit(1);
  }
  assert.equal(await ready, false, "never ready: gave up");
  assert.equal(service.state, "failed");
  const restarts = reporter.events.filter((e) => e.includes("restarting in"));
  assert.deepEqual(
    restarts.map((e) => /restarting in ([\d.]+ s)/.exec(e)![1]),
    ["0.005 s", "0.01 s", "0.02 s", "0.04 s"],
  );
  const loop = reporter.events.find((e) => e.includes("crash loop"));
  assert.ok(loop, reporter.events.join("\n"));
  assert.match(
    loop!,
    /5 crashes within 60 s; not restarting broker \(the other services keep running\)/,
  );
  assert.ok(reporter.events.some((e) => e.includes("exited with code 1")));
  // No more attempts.
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(children.length, 5);
  assert.equal(await service.stop(), true);
  assert.equal(service.state, "failed");
});

Deno.test("a crash after being ready restarts the service and it becomes ready again", async () => {
  const { children, reporter, service } = harness();
  const ready = service.start();
  await waitUntil(() => children.length === 1, 2000, "spawn");
  children[0].print("monitor:ready\n");
  assert.equal(await ready, true);
  children[0].exit(0, null); // even code 0 is unexpected while it should run
  await waitUntil(() => children.length === 2, 5000, "restart");
  children[1].print("monitor:ready\n");
  await waitUntil(() => service.state === "ready", 5000, "ready again");
  assert.equal(service.pid, children[1].pid);
  assert.ok(reporter.events.some((e) => e.startsWith("error broker exited with code 0")));
  await service.stop();
});

Deno.test("a child that ignores SIGTERM is killed after the stop timeout; the stop is not clean", async () => {
  const { children, reporter, service } = harness({ ignoreTerm: true }, { stopTimeoutMs: 50 });
  const ready = service.start();
  await waitUntil(() => children.length === 1, 2000, "spawn");
  children[0].print("monitor:ready\n");
  await ready;
  assert.equal(await service.stop(), false);
  assert.deepEqual(children[0].signals, ["SIGTERM", "SIGKILL"]);
  assert.ok(reporter.events.some((e) => e.includes("did not stop within")));
});

Deno.test("a child that never prints the ready line is stopped after the ready timeout and retried", async () => {
  const { children, reporter, service } = harness({}, { readyTimeoutMs: 50 });
  const ready = service.start();
  await waitUntil(() => children.length === 2, 5000, "second attempt");
  assert.deepEqual(children[0].signals, ["SIGTERM"]);
  assert.ok(
    reporter.events.some((e) => e.includes('not ready within 0.05 s (no "monitor:ready")')),
  );
  children[1].print("monitor:ready\n");
  assert.equal(await ready, true);
  await service.stop();
});

Deno.test("restart() after a crash loop starts the service afresh", async () => {
  const { children, service } = harness();
  const ready = service.start();
  for (let i = 0; i < 5; i++) {
    await waitUntil(() => children.length === i + 1, 5000, `start ${i + 1}`);
    children[i].exit(1);
  }
  assert.equal(await ready, false);
  const again = service.restart();
  await waitUntil(() => children.length === 6, 2000, "restart");
  children[5].print("monitor:ready\n");
  assert.equal(await again, true);
  await service.stop();
});

Deno.test("output: service lines are prefixed with the name, plain without a terminal", () => {
  const lines: string[] = [];
  const output = new ServiceOutput({ color: false, write: (l) => lines.push(l), now: () => 0 });
  output.line("broker", "stdout", "listening");
  output.event("agent", "error", "exited with code 1");
  // The supervisor's own lines have the services' time and level style.
  assert.deepEqual(lines, [
    "broker    | listening",
    "supervisor| 1970-01-01T00:00:00.000Z ERROR supervisor: agent exited with code 1",
  ]);
  const colored: string[] = [];
  new ServiceOutput({ color: true, write: (l) => colored.push(l) }).line("agent", "stdout", "x");
  assert.equal(colored[0], "\x1b[32magent     |\x1b[0m x");
});

Deno.test("kill() during a stop ends it at once (a second Ctrl-C)", async () => {
  const { children, service } = harness({ ignoreTerm: true }, { stopTimeoutMs: 60_000 });
  const ready = service.start();
  await waitUntil(() => children.length === 1, 2000, "spawn");
  children[0].print("monitor:ready\n");
  await ready;
  const stopped = service.stop();
  await waitUntil(() => children[0].signals.length === 1, 2000, "SIGTERM sent");
  service.kill();
  assert.equal(await stopped, false, "killed, not a clean stop");
  assert.deepEqual(children[0].signals, ["SIGTERM", "SIGKILL"]);
  assert.equal(service.state, "stopped");
});
