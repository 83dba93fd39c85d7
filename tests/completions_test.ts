/**
 * `deno task completions bash` as a user runs it: the script, sourced in a
 * real bash, completes task names, subcommands, flags read from each task's
 * own --help, listed values and paths; and every product task prints its
 * help in one style (commander's, `Usage: deno task <name>`, defaults
 * written `(default: …)`).
 */
import assert from "node:assert/strict";
import { REPO } from "./e2e_support.ts";

async function run(command: string, args: string[], stdin?: string) {
  const child = new Deno.Command(command, {
    args,
    cwd: REPO,
    env: { NO_COLOR: "1" },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

Deno.test("deno task completions bash: completes tasks, subcommands, flags, values and paths in bash", async () => {
  const generated = await run("deno", ["task", "-q", "completions", "bash"]);
  assert.equal(generated.code, 0, generated.stderr);
  const script = generated.stdout;
  const probe = `${script}
t() { COMP_WORDS=("$@"); COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); _monitor_deno_task; echo "$*|\${COMPREPLY[*]}"; }
t deno task ag
t deno task agent --to
t deno task agent --log-format ""
t deno task agent --test --on
t deno task plugins t
t deno task plugins try --sa
t deno task analysis --gr
t deno task up --config monitor.ya
t deno task validate --he
`;
  const result = await run("bash", ["--norc", "--noprofile", "-s"], probe);
  assert.equal(result.code, 0, result.stderr);
  const answers = Object.fromEntries(result.stdout.trim().split("\n").map((l) => l.split("|")));
  assert.equal(answers["deno task ag"], "agent");
  assert.equal(answers["deno task agent --to"], "--token-file --token-env");
  assert.equal(answers["deno task agent --log-format "], "text json");
  assert.equal(answers["deno task agent --test --on"], "--once");
  assert.equal(answers["deno task plugins t"], "try");
  assert.equal(answers["deno task plugins try --sa"], "--sample");
  assert.equal(answers["deno task analysis --gr"], "--group");
  assert.equal(answers["deno task up --config monitor.ya"], "monitor.yaml");
  assert.equal(answers["deno task validate --he"], "--help");
});

Deno.test("every product task prints its help in one style", async () => {
  for (
    const task of [
      "up",
      "broker",
      "agent",
      "analysis",
      "plugins",
      "validate",
      "completions",
      "bench",
    ]
  ) {
    const help = await run("deno", ["task", "-q", task, "--help"]);
    assert.equal(help.code, 0, `${task}: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`^Usage: deno task ${task} `), task);
    assert.match(help.stdout, /\nOptions:\n/, task);
    // Defaults written one way, by us: "(default: X)", never commander's quoted "(default: "X")"
    // nor "(default X)".
    const flat = help.stdout.replace(/\s+/g, " ");
    assert.doesNotMatch(flat, /\(default [^:]|\(default: "/, `${task}: ${flat}`);
  }
});
