/**
 * One `deno task up` per state folder: a second start in the same folder is
 * refused at once, naming the running one, and disturbs nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { LOCK_FILE } from "../services/supervisor/lock.ts";
import { ServiceProcess, upFolder } from "./e2e_support.ts";

const WAIT_MS = 120_000;

/** `pid ppid args` of every process. */
async function processTable(): Promise<Array<{ pid: number; ppid: number; args: string }>> {
  const out = await new Deno.Command("ps", { args: ["-e", "-o", "pid=,ppid=,args="] }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim()).map((line) => {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line)!;
    return { pid: Number(m[1]), ppid: Number(m[2]), args: m[3] };
  });
}

Deno.test("deno task up: a second start in the same folder is refused at once, naming the running one", async () => {
  const { dir, stateDir, file } = await upFolder("sup-lock-", "lock-agent", 2);
  const first = new ServiceProcess("first up", ["task", "up", "--config", file], {
    command: "deno",
  });
  let second: ServiceProcess | undefined;
  try {
    await first.waitForLine(/supervisor: all services ready/, WAIT_MS, "all services ready");
    const table = await processTable();
    const launcher = table.find((p) =>
      p.ppid === first.child.pid && p.args.includes("services/supervisor/main.ts")
    );
    assert.ok(launcher, "the launcher of the first deno task up");
    assert.equal((await Deno.stat(join(stateDir, LOCK_FILE))).mode! & 0o777, 0o600);
    const before = first.lines.length;

    second = new ServiceProcess("second up", ["task", "up", "--config", file], {
      command: "deno",
    });
    const status = await second.exited(60_000);
    assert.equal(status.code, 1, second.output);
    assert.match(
      second.output,
      new RegExp(
        `supervisor: error: another "deno task up" is already running with the state folder ${stateDir}: pid ${launcher.pid} \\(supervisor pid \\d+\\), started \\S+, running ${file}\\. Stop it first \\(Ctrl-C in its terminal, or kill ${launcher.pid}\\)`,
      ),
    );
    // Refused before starting anything: no service line, no pinning, no store write.
    assert.ok(
      !second.lines.some((l) => /^(broker|agent|analysis|supervisor) *\|/.test(l)),
      second.output,
    );
    // The first one runs on undisturbed: no second agent replacing its stream, no crash.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const after = first.lines.slice(before).join("\n");
    assert.doesNotMatch(after, /replac|EADDRINUSE|exited|crash/, after);
    first.kill("SIGTERM");
    assert.equal(
      (await first.exited(60_000)).code,
      0,
      first.output.split("\n").slice(-20).join("\n"),
    );
  } finally {
    await second?.stop();
    await first.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
