/**
 * Consoles driven through streams: line mode (piped input) against a real
 * broker's admin API, and terminal mode (history across runs, completion,
 * log lines above the prompt).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { getLogger } from "../services/common/log.ts";
import {
  type Choice,
  type CommandSpec,
  parseCommandLine,
  type Prompter,
  startConsole,
  stripAnsi,
} from "../services/console/mod.ts";
import { startAdminConsole } from "../services/broker/console.ts";
import { answerCommands, tempDir, TestAgent, waitUntil, within } from "./broker_support.ts";
import { withBroker } from "./broker_fixture.ts";

/** A writable that keeps everything written. */
class Capture extends Writable {
  text = "";
  columns = 100;
  override _write(chunk: unknown, _encoding: string, callback: () => void) {
    this.text += String(chunk);
    callback();
  }
}

/** A terminal admin console on piped streams, `prompter` answering its questions. */
interface TerminalConsole {
  input: PassThrough;
  output: Capture;
  console: ReturnType<typeof startAdminConsole>;
}

/** Runs `body` with a terminal admin console on `adminUrl`; closes it and its input however it ends. */
async function withTerminalConsole(
  adminUrl: string,
  prompter: Prompter | undefined,
  body: (c: TerminalConsole) => Promise<void>,
): Promise<void> {
  const input = new PassThrough();
  const output = new Capture();
  const console = startAdminConsole({
    adminUrl,
    input,
    output,
    terminal: true,
    captureLogs: false,
    prompter,
  });
  try {
    await body({ input, output, console });
  } finally {
    console.close();
    input.end();
  }
}

Deno.test("console: command lines split into words; quotes group; rest keeps raw JSON", () => {
  const line = parseCommandLine(`  send web-1 status {"a": [1, 2], "b": "x y"}  `)!;
  assert.equal(line.name, "send");
  assert.deepEqual(line.args.slice(0, 2), ["web-1", "status"]);
  assert.equal(line.rest(2), `{"a": [1, 2], "b": "x y"}`);
  assert.deepEqual(parseCommandLine(`config "my agent" '{"x": 1}'`)!.args, [
    "my agent",
    `{"x": 1}`,
  ]);
  assert.equal(parseCommandLine("   "), undefined);
});

Deno.test("console: piped commands against the broker admin API; errors say what was expected", () =>
  withBroker({ commandTimeoutMs: 500 }, async ({ broker, adminUrl }) => {
    const agent = await TestAgent.connect(broker.address, "con-1");
    answerCommands(agent, (c) => ({ status: "ok", output: { type: c.command_type, uptime: 42 } }));
    agent.batch(1, [{ timestamp: Date.now() / 1000, metrics: { cpu: 12.5, memory: 40 } }]);
    await agent.waitFor((m) => m.ack?.seq === 1, "ack");
    const input = new PassThrough();
    const output = new Capture();
    const console = startAdminConsole({ adminUrl, input, output, terminal: false });
    try {
      input.end(
        [
          "help",
          "list",
          "health",
          "stats",
          "send all status",
          'send con-1 status {"verbose": true}',
          "send ghost-7 status",
          "send",
          "send all",
          "send all status {nope",
          "lst",
          "config",
          "config con-1",
          "config bad/id {}",
          "quit",
          "list",
        ].join("\n") + "\n",
      );
      await within(console.done, 20_000, "the console to finish the piped commands");
      const text = output.text;
      assert.match(text, /monitor> help\n/);
      assert.match(text, /send <agent\|all> <command> \[json args\]/);
      assert.match(text, /AGENT\s+HOST\s+PEER/);
      assert.match(text, /con-1\s+con-1\.host/);
      assert.match(text, /cpu 12\.5%\s+mem 40%/);
      assert.match(text, /1 agent\(s\) connected/);
      assert.match(text, /con-1\s+unknown/);
      assert.match(text, /PUBLISH p50\/p99/);
      assert.match(text, /total\s+1\s+1\s+0\s+[\d.]+ \w?B\s+[\d.]+\/s\s+[\d.]+\/[\d.]+ ms\s+0/);
      assert.match(text, /con-1 {2}ok {2}\{"type":"status","uptime":42\}/);
      assert.match(text, /1 answered; ok: con-1/);
      assert.match(text, /ghost-7 {2}error {2}agent ghost-7 is not connected/);
      assert.match(
        text,
        /error: send <agent\|all> <command> \[json args\]: expected an agent id \(or all\) and a command/,
      );
      assert.match(text, /error: send <agent\|all> <command> \[json args\]: expected a command/);
      assert.match(text, /error: json args: expected a JSON object/);
      assert.match(
        text,
        /error: unknown command "lst": expected one of .* \(did you mean "list"\?\)/,
      );
      assert.match(text, /error: config <agent> <json>: expected an agent id/);
      assert.match(text, /con-1 has no configuration/);
      assert.match(
        text,
        /error: configuration of bad\/id not written:\nagent id "bad\/id" is not valid/,
      );
      // Nothing runs after quit.
      assert.equal(text.match(/monitor> list\n/g)?.length, 1);
    } finally {
      console.close();
      agent.close();
    }
  }));

Deno.test("console: terminal mode keeps history across runs and completes commands", async () => {
  const dir = await tempDir();
  const historyFile = join(dir, "history", "test");
  const ran: string[] = [];
  const commands: CommandSpec[] = [{
    name: "stats",
    usage: "stats",
    summary: "test",
    run: () => {
      ran.push("stats");
    },
  }, {
    name: "send",
    usage: "send <agent>",
    summary: "test",
    complete: (index) => index === 0 ? ["web-1", "web-2", "db-1"] : [],
    run: (line) => {
      ran.push(`send ${line.args.join(" ")}`);
    },
  }];
  try {
    for (const round of [1, 2]) {
      const input = new PassThrough();
      const output = new Capture();
      const console = startConsole({
        name: "t",
        commands,
        input,
        output,
        terminal: true,
        historyFile,
        captureLogs: false,
      });
      if (round === 1) {
        input.write("stats\r");
        await waitUntil(() => ran.length === 1, 5000, "stats to run");
        input.write("sen\t");
        input.write("d\t");
        input.write("\r");
        await waitUntil(() => ran.length === 2, 5000, "completed send to run");
        assert.equal(ran[1], "send db-1");
      } else {
        // Up arrow three times: the previous run's "stats" (before "send db-1" and "quit").
        input.write("\u001b[A\u001b[A\u001b[A\r");
        await waitUntil(() => ran.length === 3, 5000, "history entry to run");
        assert.equal(ran[2], "stats");
      }
      input.write("quit\r");
      await within(console.done, 5000, "quit");
    }
    const saved = await Deno.readTextFile(historyFile);
    assert.deepEqual(saved.trim().split("\n"), ["stats", "send db-1", "quit", "stats", "quit"]);
    // Private to the user, whatever the umask (Deno's node:fs ignores it).
    assert.equal((await Deno.stat(historyFile)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(join(dir, "history"))).mode! & 0o777, 0o700);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("console: log lines are printed above the prompt and the typed text is redrawn", async () => {
  const input = new PassThrough();
  const output = new Capture();
  const console = startConsole({ name: "b", commands: [], input, output, terminal: true });
  try {
    input.write("sta");
    await waitUntil(() => output.text.includes("sta"), 5000, "typed text echoed");
    const before = output.text.length;
    getLogger("test").info("agent web-1 connected");
    const after = output.text.slice(before);
    // The log line starts on a cleared line and the prompt with "sta" comes back after it.
    const logAt = after.indexOf("agent web-1 connected");
    assert.ok(logAt >= 0, "log line printed");
    assert.ok(/\[(0J|1G)/.test(after.slice(0, logAt)) && after.slice(0, logAt).includes("\u001b["));
    assert.match(after.slice(logAt), /\n.*b> .*sta/s);
    console.setStatus(["status line one"]);
    assert.match(output.text.slice(before), /status line one\n.*b> .*sta/s);
  } finally {
    console.close();
    input.end();
  }
});

Deno.test("console: on a terminal, tab completes connected agent ids and command types from the broker", () =>
  withBroker({ commandTimeoutMs: 2000 }, async ({ broker, adminUrl }) => {
    const agent = await TestAgent.connect(broker.address, "tab-1");
    answerCommands(agent, (c) => ({ status: "ok", output: { type: c.command_type } }));
    try {
      await withTerminalConsole(adminUrl, undefined, async ({ input, output, console }) => {
        // "ta" completes to the only connected agent, "stat" to the command type status.
        input.write("send ta\t");
        await waitUntil(() => output.text.includes("send tab-1"), 5000, "agent id completed");
        input.write("stat\t");
        await waitUntil(
          () => output.text.includes("send tab-1 status"),
          5000,
          "command completed",
          {
            detail: () => JSON.stringify(output.text),
          },
        );
        input.write("\r");
        await waitUntil(
          () => stripAnsi(output.text).includes("1 answered; ok: tab-1"),
          10_000,
          "the completed send to run",
        );
        input.write("config tab\t");
        await waitUntil(
          () => stripAnsi(output.text).includes("config tab-1 "),
          5000,
          "agent id completed after config",
          { detail: () => JSON.stringify(output.text.slice(-300)) },
        );
        input.write("\r");
        await waitUntil(
          () => stripAnsi(output.text).includes("tab-1 has no configuration"),
          10_000,
          "the completed config to run",
        );
        input.write("quit\r");
        await within(console.done, 5000, "quit");
      });
    } finally {
      agent.close();
    }
  }));

/** A prompter that answers from a script and records every question. */
class ScriptedPrompter implements Prompter {
  asked: string[] = [];
  constructor(readonly answers: Array<string | boolean | ((text: string) => string)>) {}
  #next(message: string) {
    this.asked.push(message);
    if (this.answers.length === 0) throw new Error(`no scripted answer for "${message}"`);
    return this.answers.shift()!;
  }
  select(message: string, _choices: Choice[]) {
    return Promise.resolve(String(this.#next(message)));
  }
  input(message: string) {
    return Promise.resolve(String(this.#next(message)));
  }
  confirm(message: string) {
    return Promise.resolve(this.#next(message) === true);
  }
  edit(message: string, text: string) {
    const answer = this.#next(message);
    return Promise.resolve(typeof answer === "function" ? answer(text) : String(answer));
  }
}

Deno.test("console: config alone offers the agent, opens its configuration for editing and asks before replacing it", () =>
  withBroker({}, async ({ broker, adminUrl, store }) => {
    const agent = await TestAgent.connect(broker.address, "cfg-1");
    const key = "/monitor/config/cfg-1";
    await store.put(key, JSON.stringify({ interval: 5, metrics: ["cpu"] }));
    const edited: string[] = [];
    const withInterval = (interval: number) => (text: string) => {
      edited.push(text);
      return JSON.stringify({ ...JSON.parse(text), interval });
    };
    const prompter = new ScriptedPrompter([
      "cfg-1", // Configure which agent?
      withInterval(7), // the editor
      false, // Replace the configuration of cfg-1? no
      "cfg-1",
      withInterval(9),
      true, // yes
    ]);
    try {
      await withTerminalConsole(adminUrl, prompter, async ({ input, output, console }) => {
        input.write("config\r");
        await waitUntil(() => stripAnsi(output.text).includes("not written"), 10_000, "declined");
        assert.equal(JSON.parse((await store.get(key))!.value).interval, 5, "unchanged after no");
        input.write("config\r");
        await waitUntil(
          () =>
            stripAnsi(output.text).includes(
              "configuration of cfg-1 written to /monitor/config/cfg-1",
            ),
          10_000,
          "written after yes",
        );
        assert.deepEqual(JSON.parse((await store.get(key))!.value), {
          interval: 9,
          metrics: ["cpu"],
        });
        // The editor was opened on the agent's current configuration.
        assert.deepEqual(JSON.parse(edited[0]), { interval: 5, metrics: ["cpu"] });
        assert.deepEqual(prompter.asked, [
          "Configure which agent?",
          "Configuration of cfg-1",
          "Replace the configuration of cfg-1?",
          "Configure which agent?",
          "Configuration of cfg-1",
          "Replace the configuration of cfg-1?",
        ]);
        input.write("quit\r");
        await within(console.done, 5000, "quit");
      });
    } finally {
      agent.close();
    }
  }));
