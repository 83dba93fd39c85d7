/**
 * `deno task plugins`: the real task command of deno.json (its permission
 * flags included) run as a subprocess in a project directory whose
 * monitor.yaml declares plugins served by a real HTTP server; pins go to
 * the embedded store in the state directory.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openStore } from "../services/store/mod.ts";
import { readPin } from "../services/plugin_loader/mod.ts";
import { openSite, type Site } from "./fixtures/url_plugins/site.ts";

const ROOT = new URL("../", import.meta.url);

/**
 * The `plugins` task's command split into arguments, with the script (the
 * launcher that computes the plugins process's permissions) made absolute.
 */
async function taskArgs(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const command: string = config.tasks.plugins.command;
  const args = command.split(/\s+/);
  assert.equal(args.shift(), "deno");
  const script = args.indexOf("services/supervisor/run.ts");
  assert.ok(script > 0, command);
  assert.equal(args[script + 1], "plugins", command);
  args[script] = new URL("services/supervisor/run.ts", ROOT).pathname;
  assert.ok(!args.includes("-A") && !args.includes("--allow-all"));
  return args;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function plugins(project: string, ...args: string[]): Promise<Run> {
  const output = await new Deno.Command("deno", {
    args: [...await taskArgs(), ...args],
    cwd: project,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(120_000),
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

async function withProject(fn: (site: Site, project: string) => Promise<void>) {
  const site = await openSite();
  try {
    const project = await site.tempDir();
    await Deno.writeTextFile(
      join(project, "monitor.yaml"),
      [
        "plugins:",
        "  scale:",
        `    url: ${site.url("/scale@1.0.0/mod.ts")}`,
        "    permissions: { env: [SCALE_TOKEN] }",
        "    config: { factor: 2 }",
        "  slow:",
        `    url: ${site.url("/slow@1.0.0/mod.ts")}`,
        "",
      ].join("\n"),
    );
    await fn(site, project);
  } finally {
    await site.cleanup();
  }
}

Deno.test("deno task plugins pins monitor.yaml's plugins into the embedded store, lists and verifies them", async () => {
  await withProject(async (site, project) => {
    const pinned = await plugins(project, "pin");
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.match(pinned.stdout, /^scale 1\.0\.0: created \(4 modules, sha256-/m);
    assert.match(pinned.stdout, /^slow 1\.0\.0: created \(1 modules, sha256-/m);

    const store = await openStore({
      backend: "embedded",
      endpoints: [],
      prefix: "/monitor",
      path: join(project, ".monitor", "monitor.db"),
    });
    try {
      const pin = await readPin(store, "/monitor", "scale");
      assert.equal(pin?.url, site.url("/scale@1.0.0/mod.ts"));
      assert.deepEqual(pin?.permissions, { net: [], read: [], env: ["SCALE_TOKEN"] });
      assert.deepEqual(pin?.config, { factor: 2 });
    } finally {
      await store.close();
    }

    const again = await plugins(project, "pin", "scale");
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^scale 1\.0\.0: unchanged/m);

    const listed = await plugins(project, "list");
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      /^scale 1\.0\.0 {2}http:\/\/127\.0\.0\.1:\d+\/scale@1\.0\.0\/mod\.ts {2}4 modules/m,
    );
    assert.match(listed.stdout, /permissions: env: SCALE_TOKEN/);

    const verified = await plugins(project, "verify");
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(
      verified.stdout,
      /^scale 1\.0\.0: ok, all 4 published modules match the pin \(4 cached\)/m,
    );

    const shown = await plugins(project, "show", "slow");
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(JSON.parse(shown.stdout).entry, site.url("/slow@1.0.0/mod.ts"));
  });
});

Deno.test("deno task plugins refuses changed bytes, reports them in verify, and re-pins with --force", async () => {
  await withProject(async (site, project) => {
    assert.equal((await plugins(project, "pin", "scale")).code, 0);
    await site.changeOneByte("/scale@1.0.0/lib/scale.ts", "*", "/");

    const refused = await plugins(project, "pin", "scale");
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /plugins: error: plugin "scale" .* version 1\.0\.0: the published bytes changed/,
    );
    assert.ok(refused.stderr.includes(site.url("/scale@1.0.0/lib/scale.ts")), refused.stderr);

    const verify = await plugins(project, "verify", "scale");
    assert.equal(verify.code, 1);
    assert.match(verify.stderr, /integrity check failed for module .*lib\/scale\.ts/);

    const forced = await plugins(project, "pin", "scale", "--force");
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /^scale 1\.0\.0: forced .*; changed: .*lib\/scale\.ts/m);

    const removed = await plugins(project, "remove", "scale");
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal((await plugins(project, "show", "scale")).code, 1);
  });
});

Deno.test("deno task plugins try runs a plugin once in its sandbox; mistakes name the key", async () => {
  await withProject(async (site, project) => {
    const tried = await plugins(
      project,
      "try",
      site.url("/scale@1.0.0/mod.ts"),
      "--plugin-config",
      '{"factor": 10}',
      "--sample",
      '{"timestamp": 7, "metrics": {"cpu": 1.5}}',
    );
    assert.equal(tried.code, 0, tried.stderr);
    assert.match(tried.stdout, /resolved 4 modules/);
    assert.match(tried.stdout, /\[plugin info\] \[scale\] factor 10 on try@localhost/);
    assert.ok(
      tried.stdout.includes(
        'run({"timestamp":7,"metrics":{"cpu":1.5}}) -> {"timestamp":7,"metrics":{"cpu":15,"interval":5}}',
      ),
      tried.stdout,
    );

    const unknown = await plugins(project, "pin", "scael");
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /plugins\.scael: not declared \(did you mean "scale"\?\)/);

    await Deno.writeTextFile(
      join(project, "monitor.yaml"),
      `plugins:\n  scale:\n    url: ${
        site.url("/scale@1.0.0/mod.ts")
      }\n    permissions: { write: [/tmp] }\n`,
    );
    const bad = await plugins(project, "pin");
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /monitor\.yaml:4:20: plugins\.scale\.permissions\.write: expected one of net, read, env/,
    );
  });
});

Deno.test("deno task plugins try runs several --sample in order through one instance (state shows)", async () => {
  await withProject(async (site, project) => {
    await site.write(
      "/count@1.0.0/mod.ts",
      `export default function create() {
  let seen = 0;
  return {
    name: "count",
    version: "1.0.0",
    initialize() {},
    run(sample: { timestamp: number; metrics: Record<string, number> }) {
      seen++;
      return { ...sample, metrics: { ...sample.metrics, seen } };
    },
    finalize() {},
  };
}
`,
    );
    const tried = await plugins(
      project,
      "try",
      site.url("/count@1.0.0/mod.ts"),
      "--sample",
      '{"timestamp": 1, "metrics": {"cpu": 1}}',
      "--sample",
      '{"timestamp": 2, "metrics": {"cpu": 2}}',
      "--sample",
      '{"timestamp": 3, "metrics": {"cpu": 3}}',
    );
    assert.equal(tried.code, 0, tried.stderr);
    const runs = tried.stdout.split("\n").filter((l) => l.startsWith("run("));
    assert.deepEqual(runs, [
      'run({"timestamp":1,"metrics":{"cpu":1}}) -> {"timestamp":1,"metrics":{"cpu":1,"seen":1}}',
      'run({"timestamp":2,"metrics":{"cpu":2}}) -> {"timestamp":2,"metrics":{"cpu":2,"seen":2}}',
      'run({"timestamp":3,"metrics":{"cpu":3}}) -> {"timestamp":3,"metrics":{"cpu":3,"seen":3}}',
    ]);
    const bad = await plugins(
      project,
      "try",
      site.url("/count@1.0.0/mod.ts"),
      "--sample",
      '{"timestamp": 1, "metrics": {}}',
      "--sample",
      "{oops",
    );
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--sample #2: expected JSON, found "\{oops"/);
  });
});
