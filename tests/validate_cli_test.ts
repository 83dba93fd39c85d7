/**
 * `deno task validate [file]` as a user runs it: the real task from deno.json
 * in a subprocess, its exit codes, the resolved configuration on stdout and
 * the `file:line:col: path: expected X, found Y` lines on stderr.
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { DEFAULT_AGENT_CONFIG_JSON } from "../services/config/mod.ts";
import { checkMonitorConfig } from "../services/config/monitor_yaml.ts";
import { MAX_NESTING_DEPTH } from "../services/config/yaml_source.ts";
import { validateFileArgument, validatePermissions } from "../services/config/permissions.ts";
import { nestedDocument, unknownKeysDocument } from "../bench/validate.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** Bound on one run of the task (it takes well under a second once cached). */
const TIMEOUT_MS = 60_000;

interface Run {
  code: number;
  stdout: string;
  /** stderr without deno's own `Task validate ...` banner. */
  stderr: string;
}

async function validate(...args: string[]): Promise<Run> {
  const command = new Deno.Command("deno", {
    args: ["task", "validate", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const { code, stdout, stderr } = await command.output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return {
    code,
    stdout: decode(stdout),
    stderr: decode(stderr).split("\n").filter((l) => !/^Task validate /.test(l)).join("\n"),
  };
}

/** A scratch folder inside the repository, under the ignored .monitor/. */
async function scratch(): Promise<{ dir: string; rel: (file: string) => string }> {
  const base = join(ROOT, ".monitor");
  await Deno.mkdir(base, { recursive: true });
  const dir = await Deno.makeTempDir({ dir: base, prefix: "validate-test-" });
  return { dir, rel: (file) => relative(ROOT, join(dir, file)) };
}

Deno.test("validate: the shipped monitor.yaml is valid; the output is the resolved configuration", async () => {
  const run = await validate();
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr.trim(), "");
  const resolved = parseYaml(run.stdout);
  assert.equal(resolved.store.backend, "embedded");
  assert.equal(resolved.bus.topics.data, "monitoring-data");
  assert.equal(resolved.broker.listen, "127.0.0.1:50052");
  assert.equal(resolved.broker.max_batch_samples, 1000); // a default the file does not set
  assert.equal(typeof resolved.agent.id, "string");
  assert.equal(resolved.agents.default.interval, DEFAULT_AGENT_CONFIG_JSON.interval);
  assert.deepEqual(resolved.agents.default.metrics, DEFAULT_AGENT_CONFIG_JSON.metrics);
  assert.deepEqual(resolved.agents.default.plugins.map((p: { name: string }) => p.name), [
    "duplicate_filter",
    "threshold_alert",
  ]);

  // The printed configuration is itself a valid monitor.yaml that resolves the same.
  const { dir, rel } = await scratch();
  try {
    await Deno.writeTextFile(join(dir, "resolved.yaml"), run.stdout);
    const again = await validate(rel("resolved.yaml"));
    assert.equal(again.code, 0, again.stderr);
    const body = (text: string) => text.split("\n").slice(1).join("\n");
    assert.equal(body(again.stdout), body(run.stdout));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validate: an invalid file prints every issue with file:line:col and exits 1", async () => {
  const { dir, rel } = await scratch();
  try {
    await Deno.writeTextFile(
      join(dir, "bad.yaml"),
      [
        "store:",
        "  backend: etdc",
        "agents:",
        "  default:",
        "    intervl: 5",
        "    interval: 5s",
        "    metrics: [cpu]",
      ].join("\n") + "\n",
    );
    const file = rel("bad.yaml");
    const run = await validate(file);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.deepEqual(run.stderr.trim().split("\n"), [
      `${file}:2:12: store.backend: expected "embedded" or "etcd", found "etdc" (a string) (did you mean "etcd"?)`,
      `${file}:5:5: agents.default.intervl: expected one of the agent configuration keys interval, metrics, plugins, plugin_configs, heartbeat_ttl, buffer, batch_max_samples, plugin_timeout_ms, plugin_max_failures, log_level, found unknown key "intervl" (did you mean "interval"?)`,
      `${file}:6:15: agents.default.interval: expected the collection interval in seconds, a number from 1 to 3600, found "5s" (a string) (write 5 without the unit)`,
      `${file}: 3 problems`,
    ]);

    await Deno.writeTextFile(join(dir, "syntax.yaml"), "bus:\n\tbackend: kafka\n");
    const syntax = await validate(rel("syntax.yaml"));
    assert.equal(syntax.code, 1);
    assert.equal(
      syntax.stderr.trim().split("\n")[0],
      `${
        rel("syntax.yaml")
      }:2:1: bus: expected valid YAML, found Tabs are not allowed as indentation`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validate: 2,000 nested mappings are refused naming the nesting limit, block or flow style", async () => {
  const { dir, rel } = await scratch();
  try {
    await Deno.writeTextFile(join(dir, "nested.yaml"), nestedDocument(2000));
    await Deno.writeTextFile(
      join(dir, "flow.yaml"),
      `a: ${"{b: ".repeat(2000)}1${"}".repeat(2000)}\n`,
    );
    for (const file of ["nested.yaml", "flow.yaml"]) {
      const run = await validate(rel(file));
      assert.equal(run.code, 1, run.stderr);
      const lines = run.stderr.trim().split("\n");
      assert.equal(lines.length, 2, run.stderr);
      assert.match(
        lines[0],
        new RegExp(
          `^${
            rel(file)
          }:\\d+:\\d+: [\\w.]+: expected at most ${MAX_NESTING_DEPTH} levels of nested mappings and lists, found deeper nesting$`,
        ),
      );
      assert.doesNotMatch(run.stderr, /call stack/);
    }
    // At the limit, nesting itself is no problem.
    const atLimit = checkMonitorConfig(nestedDocument(MAX_NESTING_DEPTH - 4), "limit.yaml");
    assert.ok(
      !atLimit.issues.some((i) => /levels of nested/.test(i.expected)),
      JSON.stringify(atLimit.issues),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validate: the work grows linearly with the number of unknown keys (each one reported and located)", () => {
  // Timing figures live in `deno task bench --only validate`; this checks the growth only:
  // 4 times the keys may cost at most 8 times the time (quadratic work costs 16 times).
  const time = (n: number) => {
    const text = unknownKeysDocument(n);
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const { issues } = checkMonitorConfig(text, "many.yaml");
      times.push(performance.now() - started);
      assert.equal(issues.length, n);
      assert.equal(issues[n - 1].line, n);
    }
    return Math.min(...times);
  };
  time(500); // warm-up
  const small = time(4000);
  const large = time(16000);
  assert.ok(
    large < small * 8,
    `4,000 keys: ${small.toFixed(0)} ms, 16,000 keys: ${large.toFixed(0)} ms`,
  );
});

Deno.test("validate: missing and unreadable files, --help, bad usage", async () => {
  const missing = await validate("no-such-monitor.yaml");
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr.trim().split("\n")[0],
    "no-such-monitor.yaml: (top level): expected a readable monitor.yaml, found no such file",
  );

  // A file outside the project (as the docs show: /etc/monitor/monitor.yaml) is read: the
  // validator gets read access to exactly that file.
  const outsideDir = await Deno.makeTempDir({ prefix: "validate-outside-" });
  try {
    const outside = join(outsideDir, "other.yaml");
    await Deno.writeTextFile(outside, "log_format: json\nbroker: { listen: 127.0.0.1:1234 }\n");
    const run = await validate(outside);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^log_format: json$/m);
    assert.match(run.stdout, /listen: 127\.0\.0\.1:1234/);
    await Deno.writeTextFile(outside, "log_format: jsn\n");
    const bad = await validate(outside);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`${outside}:1:13: log_format: expected "text" or "json"`));
  } finally {
    await Deno.remove(outsideDir, { recursive: true });
  }

  const help = await validate("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task validate \[file\]/);
  assert.match(help.stdout, /file:line:column: key\.path: expected X, found Y/);

  const bad = await validate("--frobnicate");
  assert.equal(bad.code, 2);
  // Commander, as every other task: the error, then the help.
  assert.match(bad.stderr, /^error: unknown option '--frobnicate'$/m);
  assert.match(bad.stderr, /Usage: deno task validate \[file\] \[options\]/);

  const two = await validate("a.yaml", "b.yaml");
  assert.equal(two.code, 2);
  assert.match(two.stderr, /expected at most one file, found 2/);
});

Deno.test("validate: the task is a launcher; the validator reads exactly the file it checks", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const command: string = config.tasks.validate.command;
  assert.equal(
    command,
    "deno run --no-prompt --allow-read --allow-run=deno services/config/validate_task.ts",
  );
  assert.deepEqual(validatePermissions("/etc/monitor/monitor.yaml"), {
    read: ["/etc/monitor/monitor.yaml"],
    write: [],
    net: [],
    env: ["LOG_TOKENS", "LOG_STREAM", "NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE"],
    sys: ["hostname"],
  });
  assert.equal(validateFileArgument(["--print-commands", "x.yaml"]), "x.yaml");
  assert.equal(validateFileArgument([]), "monitor.yaml");
});
