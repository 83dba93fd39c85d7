/**
 * The supervisor keeps monitor.yaml's desired state until the store has it
 * (a real etcd stopped and restarted), and pins new URL plugins before it
 * writes the agent configurations that use them (the real pin subprocess
 * against the fixture plugin site). The services themselves are not under
 * test here: they are children that say ready and wait for their stop.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type ChildExit,
  type ChildHandle,
  parsePlan,
  ServiceOutput,
  spawnSubprocess,
  Supervisor,
} from "../services/supervisor/mod.ts";
import { openStore, storeKeys } from "../services/store/mod.ts";
import { waitUntil } from "./broker_support.ts";
import { openSite } from "./fixtures/url_plugins/site.ts";
import { startEtcd } from "./harness/etcd.ts";

const KEYS = storeKeys("/monitor");

/** A service child that is ready at once and exits when signalled. */
class ReadyChild implements ChildHandle {
  static nextPid = 4_000_000;
  readonly pid = ReadyChild.nextPid++;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  readonly status: Promise<ChildExit>;
  #close!: () => void;
  constructor() {
    let out!: ReadableStreamDefaultController<Uint8Array>;
    let err!: ReadableStreamDefaultController<Uint8Array>;
    this.stdout = new ReadableStream({ start: (c) => void (out = c) });
    this.stderr = new ReadableStream({ start: (c) => void (err = c) });
    out.enqueue(new TextEncoder().encode("monitor:ready\n"));
    let exit!: (e: ChildExit) => void;
    this.status = new Promise((resolve) => exit = resolve);
    this.#close = () => {
      out.close();
      err.close();
      exit({ code: 0, signal: null });
    };
  }
  kill(_signal: Deno.Signal) {
    this.#close();
  }
}

/** Services are ReadyChild; the pin command (plugin_loader) runs for real. */
function spawner(command: Parameters<typeof spawnSubprocess>[0]): ChildHandle {
  const pin = command.args.some((a) => a.endsWith("plugin_loader/main.ts"));
  return pin ? spawnSubprocess(command) : new ReadyChild();
}

function supervisorFor(file: string, text: string, lines: string[]): Supervisor {
  return new Supervisor({
    plan: parsePlan(text, file),
    parse: (t) => parsePlan(t, file),
    output: new ServiceOutput({ color: false, write: (line) => lines.push(line) }),
    spawn: spawner,
    storeRetry: { initialMs: 200, maxMs: 1000 },
  });
}

/** The supervisor said that the store has the desired state after failed attempts. */
function assertRecovered(lines: string[]) {
  assert.ok(
    lines.some((l) =>
      /agent configuration is in the store now \(after \d+ failed attempts?\)/.test(l)
    ),
    lines.join("\n"),
  );
}

Deno.test("supervisor: an edit made while etcd is down is kept and written once etcd is back", async () => {
  const etcd = await startEtcd();
  const dir = await Deno.makeTempDir({ prefix: "monitor-reconcile-" });
  const file = join(dir, "monitor.yaml");
  const yaml = (interval: number) => `
state_dir: ${join(dir, "state")}
store: { backend: etcd, endpoints: [${etcd.endpoint}] }
agents:
  default: { interval: ${interval}, metrics: [cpu] }
`;
  const lines: string[] = [];
  const interval = async () => {
    const out = await etcd.etcdctl("get", "--print-value-only", KEYS.config("default"));
    return JSON.parse(out.trim()).interval;
  };
  await Deno.writeTextFile(file, yaml(5));
  const supervisor = supervisorFor(file, yaml(5), lines);
  try {
    assert.equal(await supervisor.start(), true, lines.join("\n"));
    assert.equal(await interval(), 5);

    await etcd.down();
    await supervisor.applyEdit(yaml(7), file);
    assert.deepEqual(supervisor.pendingAgentConfigs, ["default"]);
    assert.ok(
      lines.some((l) =>
        /ERROR +supervisor: cannot write agent configuration \(default\): .*keeping the desired state and retrying in [\d.]+ s \(attempt 1\)/
          .test(l)
      ),
      lines.join("\n"),
    );
    // Saving the same text again is not "nothing to apply" while the store lags behind.
    await supervisor.applyEdit(yaml(7), file);
    assert.ok(
      lines.some((l) =>
        /nothing new to apply; the agent configuration of default is not in the store yet: retrying now/
          .test(l)
      ),
      lines.join("\n"),
    );

    await etcd.up();
    await waitUntil(
      () => supervisor.pendingAgentConfigs.length === 0,
      60_000,
      "the desired configuration in etcd",
    );
    assert.equal(await interval(), 7);
    assertRecovered(lines);
  } finally {
    await supervisor.stop();
    await etcd.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervisor: a live edit that declares a URL plugin and uses it pins first; a failing pin is named and the rest applies", async () => {
  const site = await openSite();
  const dir = await site.tempDir();
  const file = join(dir, "monitor.yaml");
  const dbPath = join(dir, "state", "monitor.db");
  const before = `
state_dir: ${join(dir, "state")}
agents:
  default: { interval: 1, metrics: [memory] }
`;
  const after = `
state_dir: ${join(dir, "state")}
agents:
  default:
    interval: 2
    metrics: [memory]
    plugins: [{ name: scale, config: { factor: 2 } }]
  web-1: { interval: 3, metrics: [cpu] }
plugins:
  scale:
    url: ${site.url("/scale@1.0.0/mod.ts")}
  missing:
    url: ${site.url("/missing@1.0.0/mod.ts")}
`;
  const lines: string[] = [];
  await Deno.writeTextFile(file, before);
  const supervisor = supervisorFor(file, before, lines);
  const store = await openStore({
    backend: "embedded",
    endpoints: [],
    prefix: "/monitor",
    path: dbPath,
  });
  try {
    assert.equal(await supervisor.start(), true, lines.join("\n"));
    await Deno.writeTextFile(file, after);
    await supervisor.applyEdit(after, file);
    const pin = await store.get(KEYS.plugin("scale"));
    const config = await store.get(KEYS.config("default"));
    assert.ok(pin, `scale is pinned:\n${lines.join("\n")}`);
    assert.ok(config && JSON.parse(config.value).interval === 2, lines.join("\n"));
    assert.ok(
      pin.modRevision < config.modRevision,
      `the pin (revision ${pin.modRevision}) is written before the configuration that uses it (revision ${config.modRevision})`,
    );
    // The failing pin is named; the rest of the edit applied.
    assert.equal(await store.get(KEYS.plugin("missing")), undefined);
    assert.ok(
      lines.some((l) => /ERROR +supervisor: pinning failed for missing\b/.test(l)),
      lines.join("\n"),
    );
    assert.ok(lines.some((l) => /^plugins +\| .*missing/.test(l)), lines.join("\n"));
    assert.equal(JSON.parse((await store.get(KEYS.config("web-1")))!.value).interval, 3);
  } finally {
    await supervisor.stop();
    await store.close();
    await site.cleanup();
  }
});

Deno.test("supervisor: URL plugins declared while etcd is down are pinned once it is back, before the configuration that uses them", async () => {
  const etcd = await startEtcd();
  const site = await openSite();
  const dir = await site.tempDir();
  const file = join(dir, "monitor.yaml");
  const base = `
state_dir: ${join(dir, "state")}
store: { backend: etcd, endpoints: [${etcd.endpoint}] }
`;
  const before = `${base}agents:\n  default: { interval: 1, metrics: [memory] }\n`;
  const after = `${base}
agents:
  default:
    interval: 2
    metrics: [memory]
    plugins: [{ name: scale, config: { factor: 2 } }]
plugins:
  scale:
    url: ${site.url("/scale@1.0.0/mod.ts")}
`;
  const lines: string[] = [];
  await Deno.writeTextFile(file, before);
  const supervisor = supervisorFor(file, before, lines);
  const revision = async (key: string) => {
    const out = await etcd.etcdctl("get", "-w", "json", key);
    const kv = JSON.parse(out).kvs?.[0];
    return kv ? { mod: Number(kv.mod_revision), value: atob(kv.value) } : undefined;
  };
  try {
    assert.equal(await supervisor.start(), true, lines.join("\n"));
    await etcd.down();
    await Deno.writeTextFile(file, after);
    await supervisor.applyEdit(after, file);
    assert.ok(
      lines.some((l) => /WARN +supervisor: cannot read the pins: .*pinning again/.test(l)),
      lines.join("\n"),
    );
    await etcd.up();
    await waitUntil(
      () => supervisor.pendingAgentConfigs.length === 0,
      90_000,
      "the pin and the configuration in etcd",
    );
    const pin = await revision(KEYS.plugin("scale"));
    const config = await revision(KEYS.config("default"));
    assert.ok(pin, `scale is pinned:\n${lines.join("\n")}`);
    assert.equal(JSON.parse(config!.value).interval, 2);
    assert.ok(
      pin.mod < config!.mod,
      `the pin (revision ${pin.mod}) is written before the configuration (revision ${config!.mod})`,
    );
    assertRecovered(lines);
  } finally {
    await supervisor.stop();
    await etcd.stop();
    await site.cleanup();
  }
});
