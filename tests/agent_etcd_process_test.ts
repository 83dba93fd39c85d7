/**
 * The agent as a real subprocess on a real etcd (tests/harness/etcd.ts),
 * with exactly the permissions the supervisor grants it
 * (services/agent/permissions.ts: its own plus agentStorePermissions). The
 * agent talks to etcd through the HTTP/JSON gateway client
 * (services/store/etcd_http.ts): it gets neither etcd3's proto directory nor
 * the GRPC_* variables, so loading etcd3 would fail the process. Also: its
 * module graph holds no etcd3, grpc-js or protobufjs.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  AGENT_ETCD_OPTIONS,
  agentPermissionFlags,
  agentStoreOptions,
  agentStorePermissionFlags,
  agentStorePermissions,
} from "../services/agent/permissions.ts";
import { setLogLevel } from "../services/common/log.ts";
import { mergePermissionFlags } from "../services/common/permissions.ts";
import { etcd3ProtoDir, openStore, type StoreSettings } from "../services/store/mod.ts";
import { MiniBroker, waitFor } from "./agent_support.ts";
import { startEtcd } from "./harness/etcd.ts";

setLogLevel("warn");

const MAIN = fileURLToPath(new URL("../services/agent/main.ts", import.meta.url));

type Graph = {
  modules: Array<{ specifier: string; dependencies?: Array<{ code?: { specifier: string } }> }>;
};

Deno.test("agent on etcd: its module graph holds no etcd3, grpc-js or protobufjs", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", MAIN],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const graph = JSON.parse(new TextDecoder().decode(output.stdout)) as Graph;
  const modules = new Map(graph.modules.map((m) => [m.specifier, m]));
  // openStore imports services/store/etcd.ts (etcd3) only for the etcd3 client, which the
  // agent does not ask for (AGENT_ETCD_OPTIONS); every other import is followed.
  assert.equal(AGENT_ETCD_OPTIONS.client, "http");
  assert.equal(agentStoreOptions().etcd, AGENT_ETCD_OPTIONS);
  const etcd3Store = new URL("../services/store/etcd.ts", import.meta.url).href;
  const reached = new Set<string>();
  const walk = (specifier: string) => {
    if (reached.has(specifier) || specifier === etcd3Store) return;
    reached.add(specifier);
    for (const dep of modules.get(specifier)?.dependencies ?? []) {
      if (dep.code) walk(dep.code.specifier);
    }
  };
  walk(new URL(`file://${MAIN}`).href);
  assert.ok(
    reached.has(new URL("../services/store/etcd_http.ts", import.meta.url).href),
    "the walk reaches the HTTP client",
  );
  assert.deepEqual([...reached].filter((s) => /etcd3|@grpc\/|protobufjs|proto-loader/.test(s)), []);
});

Deno.test("agent on etcd: a subprocess with only the agent's permissions runs, follows its config and revokes its heartbeat", async () => {
  const etcd = await startEtcd();
  const broker = await MiniBroker.start();
  const settings: StoreSettings = {
    backend: "etcd",
    endpoints: [etcd.endpoint],
    prefix: "/monitor",
    path: "",
  };
  const store = await openStore(settings, agentStoreOptions());
  const lines: string[] = [];
  let child: Deno.ChildProcess | undefined;
  let pumps: Promise<unknown> | undefined;
  try {
    const perms = agentStorePermissions(settings);
    assert.deepEqual(perms, { read: [], write: [], net: [etcd.endpoint], env: [] });
    const flags = mergePermissionFlags(
      agentPermissionFlags({ broker: broker.address }),
      agentStorePermissionFlags(settings),
    );
    const proto = etcd3ProtoDir();
    assert.ok(proto !== undefined);
    assert.ok(!flags.some((f) => f.includes(proto) || f.includes("GRPC_")), flags.join(" "));

    await store.put(
      "/monitor/config/etcdp-1",
      JSON.stringify({ interval: 1, metrics: ["memory"], heartbeat_ttl: 3 }),
    );
    child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...flags,
        MAIN,
        "--supervised",
        "--broker",
        broker.address,
        "--id",
        "etcdp-1",
        "--store-backend",
        "etcd",
        "--store-endpoints",
        etcd.endpoint,
        "--log-level",
        "info",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = (stream: ReadableStream<Uint8Array>) =>
      stream.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({
          write(chunk) {
            lines.push(...chunk.split("\n").filter((l) => l !== ""));
          },
        }),
      );
    pumps = Promise.all([collect(child.stdout), collect(child.stderr)]);
    const heartbeat = async () => {
      const kv = await store.get("/monitor/heartbeat/etcdp-1");
      return kv ? JSON.parse(kv.value) : undefined;
    };
    const first = await waitFor(heartbeat, 30_000, "the agent's heartbeat in etcd").catch(
      (error) => {
        throw new Error(`${error.message}\noutput:\n${lines.join("\n")}`);
      },
    );
    assert.equal(first.pid, child.pid);
    assert.ok((await store.get("/monitor/heartbeat/etcdp-1"))?.lease, "the heartbeat is leased");
    await waitFor(() => broker.samples().length >= 2, 15_000, "samples");

    // etcd restarts: the agent's config watch resumes and applies a change made afterwards.
    await etcd.down();
    await etcd.up();
    const revision = await store.put(
      "/monitor/config/etcdp-1",
      JSON.stringify({ interval: 2, metrics: ["cpu"], heartbeat_ttl: 3 }),
    );
    await waitFor(
      async () => (await heartbeat())?.config_revision === revision,
      20_000,
      "the heartbeat of the configuration put after the restart",
    ).catch((error) => {
      throw new Error(`${error.message}\noutput:\n${lines.join("\n")}`);
    });

    child.kill("SIGTERM");
    const status = await child.status;
    child = undefined;
    await pumps;
    pumps = undefined;
    assert.equal(status.code, 0, lines.join("\n"));
    assert.equal(await store.get("/monitor/heartbeat/etcdp-1"), undefined, "heartbeat revoked");
  } finally {
    if (child) {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
      await child.status;
    }
    await pumps;
    await store.close();
    await broker.close();
    await etcd.stop();
  }
});
