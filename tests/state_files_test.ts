/**
 * State files are private to the user: console history and the embedded
 * database (with its -wal and -shm files) 0600, their folders 0700, whatever
 * the umask, and an existing world-writable history file is tightened.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openBus } from "../services/bus/mod.ts";
import { appendPrivateFile } from "../services/common/state_files.ts";
import { openStore } from "../services/store/mod.ts";
import { tempDir } from "./broker_support.ts";

const modeOf = async (path: string) => (await Deno.stat(path)).mode! & 0o777;

Deno.test("state files: the embedded database, its -wal/-shm and the state folder are 0600/0700", async () => {
  const dir = await tempDir("monitor-modes-");
  const state = join(dir, "state");
  const path = join(state, "monitor.db");
  const store = await openStore({ backend: "embedded", endpoints: [], prefix: "/monitor", path });
  const bus = await openBus({ backend: "embedded", brokers: [], path });
  try {
    await store.put("/monitor/config/default", "{}");
    await bus.publish("monitoring-data", [{ key: "a", value: "{}" }]);
    assert.equal(await modeOf(state), 0o700);
    for (const file of ["monitor.db", "monitor.db-wal", "monitor.db-shm"]) {
      assert.equal(await modeOf(join(state, file)), 0o600, file);
    }
  } finally {
    await bus.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state files: history appends create 0600 in a 0700 folder and tighten a world-writable file", async () => {
  const dir = await tempDir("monitor-modes-");
  try {
    const history = join(dir, "history");
    await Deno.mkdir(history, { mode: 0o777 });
    await Deno.chmod(history, 0o777);
    const old = join(history, "broker");
    await Deno.writeTextFile(old, "list\n");
    await Deno.chmod(old, 0o666);
    appendPrivateFile(old, "stats\n");
    appendPrivateFile(join(history, "console"), "health\n");
    assert.equal(await Deno.readTextFile(old), "list\nstats\n");
    assert.equal(await modeOf(old), 0o600);
    assert.equal(await modeOf(join(history, "console")), 0o600);
    assert.equal(await modeOf(history), 0o700);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
