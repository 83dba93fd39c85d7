/**
 * `deno task up` on a terminal (a pseudo-terminal from `script`): one
 * console talking to the broker's admin API, service output printed above
 * the prompt, `quit` stopping every service.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { inTerminal, upFolder } from "./e2e_support.ts";
import { freePorts } from "./harness/free_port.ts";

const WAIT_MS = 120_000;

Deno.test("deno task up on a terminal: a console to the broker, output above the prompt, quit stops all", async () => {
  const { dir, stateDir, file } = await upFolder("sup-tty-", "tty-agent", 1);
  const terminal = inTerminal("up in a terminal", ["deno", "task", "up", "--config", file]);
  try {
    let at = await terminal.waitForText(/all services ready/, WAIT_MS);
    at = await terminal.waitForText(/monitor> /, WAIT_MS, at);
    const promptAt = at;
    // The agent connects; its data shows in `list`.
    await terminal.waitForText(/agent tty-agent connected/, WAIT_MS, promptAt);
    await terminal.type("list\r");
    at = await terminal.waitForText(/tty-agent\s+\S+\s+127\.0\.0\.1:\d+/, WAIT_MS, at);
    at = await terminal.waitForText(/1 agent\(s\) connected/, WAIT_MS, at);
    await terminal.type("health\r");
    at = await terminal.waitForText(/tty-agent\s+alive/, WAIT_MS, at);
    // Every service line after the prompt appeared was printed on a cleared line, then the
    // prompt was drawn again below it (never in the middle of the line being typed).
    const after = terminal.raw.slice(promptAt);
    const prefixes = [...after.matchAll(/(broker|analysis|agent|supervisor) *\| /g)];
    assert.ok(prefixes.length > 0, "service output while the console runs");
    for (const match of prefixes) {
      const before = after.slice(Math.max(0, match.index! - 4), match.index!);
      assert.equal(before, "\x1b[0J", `line not cleared before: ${JSON.stringify(match[0])}`);
    }
    await terminal.type("quit\r");
    at = await terminal.waitForText(/Stop every service and quit\?/, WAIT_MS, at);
    await terminal.type("y");
    await terminal.type("\r");
    const status = await terminal.exited(60_000);
    assert.equal(status.code, 0, terminal.raw.slice(-3000));
    assert.match(terminal.raw.slice(at), /stopping \(quit in the console\)/);
    assert.match(terminal.raw.slice(at), /all services stopped/);
    const history = await Deno.readTextFile(join(stateDir, "history", "console"));
    assert.deepEqual(history.trim().split("\n"), ["list", "health", "quit"]);
  } finally {
    await terminal.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("deno task up on a terminal: config opens $EDITOR on a private copy under the state dir and writes the result", async () => {
  const { dir, stateDir, file } = await upFolder("sup-editor-", "ed-agent", 1);
  // The "editor": records where the copy is, then sets the interval to 7 (as a user would).
  const editor = join(dir, "fake-editor");
  const seen = join(dir, "edited-path");
  await Deno.writeTextFile(
    editor,
    `#!/bin/sh\nprintf '%s' "$1" > '${seen}'\nsed -i 's/"interval": 1/"interval": 7/' "$1"\n`,
  );
  await Deno.chmod(editor, 0o755);
  const terminal = inTerminal("up with an editor", ["deno", "task", "up", "--config", file], {
    EDITOR: editor,
  });
  try {
    let at = await terminal.waitForText(/all services ready/, WAIT_MS);
    at = await terminal.waitForText(/monitor> /, WAIT_MS, at);
    await terminal.waitForText(/agent ed-agent connected/, WAIT_MS, at);
    await terminal.type("config\r");
    at = await terminal.waitForText(/Configure which agent\?/, WAIT_MS, at);
    await terminal.type("\r"); // the first choice: ed-agent
    at = await terminal.waitForText(/configuration of ed-agent written/, WAIT_MS, at);
    assert.doesNotMatch(terminal.raw, /could not start|Requires (write|run) access/);
    // The copy was in <state_dir>/edit (0700), and is gone once read back.
    const copy = await Deno.readTextFile(seen);
    assert.equal(join(copy, ".."), join(stateDir, "edit"));
    assert.equal((await Deno.stat(join(stateDir, "edit"))).mode! & 0o777, 0o700);
    await assert.rejects(Deno.stat(copy), Deno.errors.NotFound);
    await terminal.type("config ed-agent\r");
    at = await terminal.waitForText(/"interval": 7/, WAIT_MS, at);
    await terminal.type("quit\r");
    at = await terminal.waitForText(/Stop every service and quit\?/, WAIT_MS, at);
    await terminal.type("y");
    await terminal.type("\r");
    const status = await terminal.exited(60_000);
    assert.equal(status.code, 0, terminal.raw.slice(-3000));
  } finally {
    await terminal.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("deno task broker on a terminal: config opens $EDITOR (run permission for that program, copy under the state dir)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "broker-editor-" });
  const stateDir = join(dir, "state");
  const [port] = freePorts(1);
  const editor = join(dir, "fake-editor");
  await Deno.writeTextFile(
    editor,
    `#!/bin/sh\nprintf '{"interval": 9, "metrics": ["cpu"], "plugins": []}\\n' > "$1"\n`,
  );
  await Deno.chmod(editor, 0o755);
  const terminal = inTerminal("broker with an editor", [
    "deno",
    "task",
    "broker",
    "--state-dir",
    stateDir,
    "--listen",
    `127.0.0.1:${port}`,
    "--admin",
    "off",
  ], { VISUAL: editor });
  try {
    let at = await terminal.waitForText(/broker> /, WAIT_MS);
    await terminal.type("config\r");
    at = await terminal.waitForText(/Configure which agent\?/, WAIT_MS, at);
    await terminal.type("\r"); // "default" (no agent is connected)
    at = await terminal.waitForText(/configuration of default written/, WAIT_MS, at);
    assert.doesNotMatch(terminal.raw, /could not start|Requires (write|run) access/);
    await terminal.type("config default\r");
    at = await terminal.waitForText(/"interval": 9/, WAIT_MS, at);
    await terminal.type("quit\r");
    const status = await terminal.exited(60_000);
    assert.equal(status.code, 0, terminal.raw.slice(-3000));
  } finally {
    await terminal.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
