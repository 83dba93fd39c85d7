/**
 * A broker whose listen address is taken says so in its own words: no raw
 * grpc-js line (`E No address added out of total 1 resolved`) reaches the
 * user. A real broker subprocess; the port held by this test.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { brokerPermissionFlags } from "../services/broker/permissions.ts";
import { storePermissionFlags } from "../services/store/permissions.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import { tempDir } from "./broker_support.ts";
import { mergePermissionFlags, ServiceProcess } from "./e2e_support.ts";
import { freePorts } from "./harness/free_port.ts";

Deno.test("broker: a listen address in use is one clear error, without grpc-js's raw line", async () => {
  const dir = await tempDir("monitor-listen-");
  const [port, adminPort] = freePorts(2);
  const blocker = Deno.listen({ hostname: "127.0.0.1", port });
  const listen = `127.0.0.1:${port}`;
  const admin = `127.0.0.1:${adminPort}`;
  const path = join(dir, "monitor.db");
  const broker = new ServiceProcess("broker", [
    "--no-prompt",
    ...mergePermissionFlags(
      brokerPermissionFlags({ stateDir: dir, listen, admin }),
      storePermissionFlags({ backend: "embedded", endpoints: [], prefix: "/monitor", path }),
      busPermissionFlags({ backend: "embedded", brokers: [], path }),
    ),
    "services/broker/main.ts",
    "--supervised",
    ...["--listen", listen, "--admin", admin, "--state-dir", dir],
  ]);
  try {
    const status = await broker.exited(60_000);
    assert.notEqual(status.code, 0, broker.output);
    assert.match(
      broker.output,
      new RegExp(`cannot listen on ${listen}: the address is already in use \\(another broker`),
    );
    assert.doesNotMatch(broker.output, /No address added|^E /m, broker.output);
  } finally {
    blocker.close();
    await broker.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
