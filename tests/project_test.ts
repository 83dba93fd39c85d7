/**
 * The project's promises to a newcomer: the README's quick start is the two
 * `npx` commands, `.ci/run` runs only the README's test command, every task
 * has a description, dependencies are pinned, and `deno task test` first
 * provisions the real components (installing them as root on Debian, else
 * failing with the exact install command — never skipping).
 */
import assert from "node:assert/strict";
import {
  BENCH_COMPONENTS,
  checkComponents,
  type ComponentStatus,
  DEBIAN_PACKAGES,
  INSTALL_COMMAND,
  packagesOf,
  provision,
} from "./harness/provision.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

/** The commands of the first ```sh block after the `## Quick start` heading, comments removed. */
async function quickStartCommands(): Promise<string[]> {
  const readme = await read("README.md");
  const section = readme.split(/^## /m).find((s) => s.startsWith("Quick start\n"));
  assert.ok(section, "README.md: expected a '## Quick start' section");
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  assert.ok(block, "README.md Quick start: expected a ```sh code block");
  return block[1].split("\n").map((l) => l.replace(/#.*$/, "").trim()).filter((l) => l !== "");
}

Deno.test("README: the quick start is exactly the two npx commands (up, test) on the pinned Deno", async () => {
  assert.deepEqual(await quickStartCommands(), [
    "npx -y deno@2.9.6 task up",
    "npx -y deno@2.9.6 task test",
  ]);
  const readme = await read("README.md");
  assert.match(readme, /`deno task up` and `deno task test`/);
});

Deno.test(".ci/run runs the README's test command and nothing a user is not told", async () => {
  const testCommand = (await quickStartCommands()).find((c) => c.endsWith("task test"));
  const script = await read(".ci/run");
  const commands = script.split("\n").map((l) => l.trim()).filter((l) =>
    l !== "" && !l.startsWith("#") && !l.startsWith("set ") &&
    !/^cd "\$\(dirname "\$0"\)\/\.\."$/.test(l)
  );
  assert.deepEqual(commands, [testCommand]);
  const info = await Deno.stat(new URL(".ci/run", ROOT));
  assert.ok(
    info.mode === null || (info.mode & 0o111) !== 0,
    ".ci/run: expected an executable file",
  );
});

Deno.test("deno.json: every task has a description; npm dependencies are pinned; the lockfile is frozen", async () => {
  const config = JSON.parse(await read("deno.json")) as {
    tasks: Record<string, { description?: string; command?: string }>;
    imports: Record<string, string>;
    lock: { frozen?: boolean };
  };
  for (const name of ["up", "test", "check", "bench", "validate", "broker", "agent", "analysis"]) {
    const task = config.tasks[name];
    assert.ok(task, `deno.json: expected a task "${name}"`);
    assert.ok(
      (task.description ?? "").length > 10,
      `deno.json tasks.${name}: expected a description`,
    );
  }
  for (const name of ["@grpc/grpc-js", "kafkajs", "etcd3", "systeminformation", "yaml"]) {
    assert.match(config.imports[name] ?? "", /^npm:(@[^/]+\/)?[^@]+@\d+\.\d+\.\d+$/, name);
  }
  for (const [name, spec] of Object.entries(config.imports)) {
    if (spec.startsWith("npm:")) {
      assert.match(spec, /@\d+\.\d+\.\d+$/, `deno.json imports.${name}: expected an exact version`);
    }
  }
  assert.equal(config.lock.frozen, true);
  // `deno task test` provisions first, then runs every test with sanitizers on.
  const test = config.tasks.test.command ?? "";
  assert.match(
    test,
    /^deno run [^&]*tests\/harness\/provision\.ts && deno test --sanitize-ops --sanitize-resources /,
  );
  for (const name of ["up", "validate", "broker", "agent", "analysis", "bench"]) {
    assert.doesNotMatch(
      config.tasks[name].command ?? "",
      /(^| )(-A|--allow-all|--allow-ffi)( |=|$)/,
      name,
    );
  }
});

/** A fake system for {@linkcode provision}: which components are installed, root, apt-get. */
function fakeSystem(options: { root: boolean; aptGet: boolean; installWorks: boolean }) {
  let installed = false;
  const ran: string[] = [];
  const lines: string[] = [];
  const check = (): ComponentStatus[] =>
    checkComponents().map(({ name, debianPackage }) =>
      installed ? { name, debianPackage, path: `/usr/bin/${name}` } : { name, debianPackage }
    );
  return {
    ran,
    lines,
    options: {
      check,
      findAptGet: () => options.aptGet ? "/usr/bin/apt-get" : undefined,
      isRoot: () => options.root,
      run: (command: string, args: string[]) => {
        ran.push([command, ...args].join(" "));
        if (args[0] === "install" && options.installWorks) installed = true;
        return Promise.resolve(true);
      },
      log: (line: string) => lines.push(line),
    },
  };
}

Deno.test("provision: missing packages are installed with apt-get when root on Debian", async () => {
  const system = fakeSystem({ root: true, aptGet: true, installWorks: true });
  assert.equal(await provision(system.options), 0);
  assert.deepEqual(system.ran, [
    "/usr/bin/apt-get update",
    `/usr/bin/apt-get install -y ${DEBIAN_PACKAGES.join(" ")}`,
  ]);
  assert.match(system.lines.join("\n"), /every component is installed/);
});

Deno.test("provision: not root, or no apt-get, fails with the exact install command and installs nothing", async () => {
  assert.equal(
    INSTALL_COMMAND,
    "apt-get update && apt-get install -y etcd-server etcd-client librdkafka1 kcat chromium prometheus collectd-core",
  );
  for (const setup of [{ root: false, aptGet: true }, { root: true, aptGet: false }]) {
    const system = fakeSystem({ ...setup, installWorks: true });
    assert.equal(await provision(system.options), 1, JSON.stringify(setup));
    assert.deepEqual(system.ran, []);
    const text = system.lines.join("\n");
    assert.match(text, /etcd \(Debian package etcd-server\)/);
    assert.match(text, /librdkafka\.so\.1 \(Debian package librdkafka1\)/);
    assert.ok(text.includes(INSTALL_COMMAND), text);
    assert.match(text, setup.root ? /apt-get was not found/ : /not running as root: run as root/);
  }
});

Deno.test("provision --for bench: only what the benchmarks need, with its own install command; deno task bench runs it first", async () => {
  assert.deepEqual(packagesOf(BENCH_COMPONENTS), [
    "etcd-server",
    "etcd-client",
    "librdkafka1",
    "collectd-core",
  ]);
  const root = fakeSystem({ root: true, aptGet: true, installWorks: true });
  const bench = { components: BENCH_COMPONENTS, who: "The benchmarks" };
  assert.equal(await provision({ ...root.options, ...bench }), 0);
  assert.deepEqual(root.ran, [
    "/usr/bin/apt-get update",
    "/usr/bin/apt-get install -y etcd-server etcd-client librdkafka1 collectd-core",
  ]);
  const user = fakeSystem({ root: false, aptGet: true, installWorks: true });
  assert.equal(await provision({ ...user.options, ...bench }), 1);
  assert.deepEqual(user.ran, []);
  const text = user.lines.join("\n");
  assert.match(
    text,
    /The benchmarks need real components that are not installed: etcd .*collectd \(Debian package collectd-core\)/,
  );
  assert.ok(
    text.includes(
      "run as root apt-get update && apt-get install -y etcd-server etcd-client librdkafka1 collectd-core",
    ),
    text,
  );
  assert.doesNotMatch(text, /chromium|kcat/);
  const config = JSON.parse(await read("deno.json")) as {
    tasks: Record<string, { command: string }>;
  };
  assert.match(
    config.tasks.bench.command,
    /^deno run [^&]*tests\/harness\/provision\.ts --for bench && deno run .*bench\/main\.ts$/,
  );
});

Deno.test("provision: an install that leaves a component missing fails with the command", async () => {
  const system = fakeSystem({ root: true, aptGet: true, installWorks: false });
  assert.equal(await provision(system.options), 1);
  assert.equal(system.ran.length, 2);
  assert.ok(system.lines.at(-1)!.includes(`installation failed; run as root: ${INSTALL_COMMAND}`));
});

Deno.test("provision: the script `deno task test` runs first succeeds when every component is installed", async () => {
  // Whatever was missing was installed (or reported) by `deno task test`'s first step already.
  const missing = checkComponents().filter((c) => c.path === undefined);
  assert.deepEqual(missing, [], "the real components are installed");
  const output = await new Deno.Command("deno", {
    args: ["run", "--allow-run", "--allow-read", "--allow-env", "tests/harness/provision.ts"],
    cwd: new URL(".", ROOT).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
});

Deno.test("layout: the top level is the one the README describes", async () => {
  const entries = [
    "deno.json",
    "deno.lock",
    "services/supervisor/main.ts",
    "services/agent/main.ts",
    "services/broker/main.ts",
    "services/analysis/main.ts",
    "plugins",
    "proto/monitoring.proto",
    "monitor.yaml",
    "docker-compose.yml",
    "tests",
    "README.md",
    ".ci/run",
  ];
  for (const entry of entries) {
    await Deno.stat(new URL(entry, ROOT)).catch(() => {
      throw new Error(`expected ${entry} at the top of the repository`);
    });
  }
  const readme = await read("README.md");
  for (const dir of ["supervisor/", "agent/", "broker/", "analysis/"]) {
    assert.ok(readme.includes(`  ${dir}`), `README.md Layout: expected services/${dir}`);
  }
});

/** Runs a module importing grpc's proto loader (which pulls protobufjs) in a fresh copy of the project's config. */
async function firstRunStderr(config: Record<string, unknown>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "monitor-first-run-" });
  try {
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify(config));
    await Deno.copyFile(new URL("deno.lock", ROOT), `${dir}/deno.lock`);
    await Deno.writeTextFile(`${dir}/main.ts`, 'import "@grpc/proto-loader";\n');
    const out = await new Deno.Command("deno", {
      args: ["run", "--no-prompt", "--allow-read", "--allow-env", "main.ts"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    return stderr;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("first run: no boxed 'Ignored build scripts' warning (protobufjs's script is denied in deno.json)", async () => {
  const config = JSON.parse(await read("deno.json"));
  assert.deepEqual(config.allowScripts, { deny: ["npm:protobufjs"] });
  // Without the setting, a fresh folder shows the warning: the check below can see it.
  const { allowScripts: _, ...without } = config;
  assert.match(await firstRunStderr(without), /Ignored build scripts for packages/);
  const stderr = await firstRunStderr(config);
  assert.doesNotMatch(stderr, /Ignored build scripts|protobufjs/);
});
