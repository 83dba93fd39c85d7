/**
 * The Bus contract suite on the embedded (SQLite) backend, plus its own
 * tests: retention, publishers in several processes, reopening the file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { busContract, runPublisherProcess } from "./harness/bus_contract.ts";
import { openEmbeddedBus } from "../services/bus/embedded.ts";
import {
  type Bus,
  type BusMessage,
  busPermissionFlags,
  type BusSettings,
  openBus,
} from "../services/bus/mod.ts";

const GROUP_TIMING = { sessionTimeoutMs: 1500, heartbeatIntervalMs: 300 };

function settingsIn(dir: string, extra: Partial<BusSettings> = {}): BusSettings {
  return {
    backend: "embedded",
    brokers: [],
    path: join(dir, "monitor.db"),
    clientId: "bus-test",
    group: GROUP_TIMING,
    ...extra,
  };
}

const childPermissions = busPermissionFlags;

busContract("embedded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bus-embedded-" });
  const settings = settingsIn(dir);
  const buses: Bus[] = [];
  const openAnother = async () => {
    const bus = await openBus(settings);
    buses.push(bus);
    return bus;
  };
  const bus = await openAnother();
  return {
    bus,
    settings,
    openAnother,
    cleanup: async () => {
      await Promise.all(buses.map((b) => b.close()));
      await Deno.remove(dir, { recursive: true });
    },
  };
}, {
  childPermissions,
  unreachable: async () => {
    // The parent of the database path is a regular file: the file cannot be created.
    const file = await Deno.makeTempFile({ prefix: "bus-not-a-dir-" });
    const path = join(file, "monitor.db");
    return {
      settings: { backend: "embedded", brokers: [], path },
      endpoint: path,
      cleanup: () => Deno.remove(file),
    };
  },
});

/** Collects every message of `topic` from the beginning until `count` arrived. */
async function readAll(bus: Bus, topic: string, count: number): Promise<BusMessage[]> {
  const got: BusMessage[] = [];
  const sub = await bus.subscribe({
    topics: [topic],
    group: `reader-${crypto.randomUUID()}`,
    fromBeginning: true,
    handler: (m) => {
      got.push(m);
    },
  });
  try {
    const deadline = Date.now() + 30000;
    while (got.length < count) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${count} messages, got ${got.length}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await sub.close();
  }
  return got;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "bus-embedded-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("embedded bus: retention by count keeps the newest messages, offsets keep growing", () =>
  withDir(async (dir) => {
    const bus = await openEmbeddedBus(
      settingsIn(dir, { retention: { maxAgeSeconds: 3600, maxMessages: 5 } }),
    );
    try {
      const values = Array.from({ length: 12 }, (_, i) => `v${i}`);
      // The first publish of a process prunes right after inserting.
      await bus.publish("retained", values.map((value) => ({ key: "k", value })));
      let got = await readAll(bus, "retained", 5);
      assert.deepEqual(got.map((m) => m.value), values.slice(7));
      assert.deepEqual(got.map((m) => m.offset), ["7", "8", "9", "10", "11"]);
      await bus.publish("retained", [{ key: "k", value: "v12" }, { key: "k", value: "v13" }]);
      assert.equal(bus.prune(), 2);
      got = await readAll(bus, "retained", 5);
      assert.deepEqual(got.map((m) => m.value), ["v9", "v10", "v11", "v12", "v13"]);
      assert.equal(got.at(-1)?.offset, "13");
    } finally {
      await bus.close();
    }
  }));

Deno.test("embedded bus: retention by age drops old messages", () =>
  withDir(async (dir) => {
    const bus = await openEmbeddedBus(
      settingsIn(dir, { retention: { maxAgeSeconds: 0.2, maxMessages: 1000 } }),
    );
    try {
      await bus.publish("aged", [{ key: "k", value: "old-1" }, { key: "k", value: "old-2" }]);
      await new Promise((r) => setTimeout(r, 400));
      await bus.publish("aged", [{ key: "k", value: "fresh" }]);
      assert.equal(bus.prune(), 2);
      const got = await readAll(bus, "aged", 1);
      assert.deepEqual(got.map((m) => m.value), ["fresh"]);
      assert.equal(got[0].offset, "2");
    } finally {
      await bus.close();
    }
  }));

Deno.test("embedded bus: two processes publish into one file; every message once, in order", () =>
  withDir(async (dir) => {
    const settings = settingsIn(dir);
    const bus = await openEmbeddedBus(settings);
    try {
      await bus.ensureTopics(["shared"]);
      await Promise.all([
        runPublisherProcess(childPermissions(settings), settings, "shared", "proc1", 150, 7),
        runPublisherProcess(childPermissions(settings), settings, "shared", "proc2", 150, 11),
      ]);
      const got = await readAll(bus, "shared", 300);
      assert.equal(got.length, 300);
      assert.deepEqual(
        got.map((m) => Number(m.offset)),
        Array.from({ length: 300 }, (_, i) => i),
      );
      for (const name of ["proc1", "proc2"]) {
        assert.deepEqual(
          got.filter((m) => m.key === name).map((m) => m.value),
          Array.from({ length: 150 }, (_, i) => `${name}-${i}`),
        );
      }
    } finally {
      await bus.close();
    }
  }));

Deno.test("embedded bus: messages and committed offsets survive reopening the file", () =>
  withDir(async (dir) => {
    const settings = settingsIn(dir);
    let bus = await openEmbeddedBus(settings);
    await bus.publish("durable", [{ key: "k", value: "a" }, { key: "k", value: "b" }]);
    const first: string[] = [];
    const sub = await bus.subscribe({
      topics: ["durable"],
      group: "g",
      fromBeginning: true,
      handler: (m) => {
        first.push(m.value);
      },
    });
    const deadline = Date.now() + 30000;
    while (first.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await sub.close();
    await bus.close();
    assert.deepEqual(first, ["a", "b"]);
    bus = await openEmbeddedBus(settings);
    try {
      await bus.publish("durable", [{ key: "k", value: "c" }]);
      const again: string[] = [];
      const sub2 = await bus.subscribe({
        topics: ["durable"],
        group: "g",
        fromBeginning: true,
        handler: (m) => {
          again.push(m.value);
        },
      });
      const deadline2 = Date.now() + 30000;
      while (again.length < 1 && Date.now() < deadline2) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await sub2.close();
      assert.deepEqual(again, ["c"]);
    } finally {
      await bus.close();
    }
  }));

Deno.test("embedded bus: invalid settings are rejected with the setting's name", async () => {
  await assert.rejects(
    openBus({ backend: "embedded", brokers: [], path: "" }),
    /bus\.path: expected the path of the SQLite file/,
  );
  await assert.rejects(
    openBus({
      backend: "embedded",
      brokers: [],
      path: "/tmp/x.db",
      retention: { maxAgeSeconds: -1, maxMessages: 10 },
    }),
    /bus\.retention\.maxAgeSeconds/,
  );
});
