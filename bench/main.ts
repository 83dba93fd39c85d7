/**
 * `deno task bench [--quick] [--only id,id] [--markdown]`: starts the
 * benchmark runner (bench/run.ts) with permissions listed for exactly what
 * it touches. A launcher because one of them is only known at run time: the
 * etcd3 package's proto directory in Deno's npm cache (the etcd store reads
 * it), found the way the services' permission builders find it.
 *
 * The runner gets --allow-ffi because it starts librdkafka's mock cluster
 * (tests/harness/kafka_mock.ts) in its own process; no product process does.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import {
  GRPC_CLIENT_PROXY_ENV_VARS,
  GRPC_ENV_VARS,
  YAML_ENV_VARS,
} from "../services/common/permissions.ts";
import { KAFKA_ENV_VARS } from "../services/bus/mod.ts";
import { etcd3ProtoDir } from "../services/store/mod.ts";
import { CONSOLE_ENV_VARS } from "../services/console/permissions.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The runner's `deno run` permission flags. */
export function runnerFlags(tmp: string): string[] {
  const proto = etcd3ProtoDir();
  const read = [
    ROOT,
    tmp,
    "/etc/os-release",
    // Where tests/harness/provision.ts looks for etcd and etcdctl.
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
    "/usr/sbin",
    "/sbin",
    ...(proto ? [proto] : []),
  ];
  const env = [
    ...new Set([
      ...GRPC_ENV_VARS,
      ...GRPC_CLIENT_PROXY_ENV_VARS,
      ...KAFKA_ENV_VARS,
      // The yaml package reads these (scenario 7 parses monitor.yaml documents).
      ...YAML_ENV_VARS,
      // services/broker/mod.ts includes the broker's console (npm:@inquirer reads these).
      ...CONSOLE_ENV_VARS,
      "NODE_ENV",
      "PATH",
      "TMPDIR",
    ]),
  ];
  return [
    "--no-prompt",
    `--allow-read=${read.join(",")}`,
    `--allow-write=${tmp},${join(ROOT, "bench-results")}`,
    "--allow-net=127.0.0.1",
    `--allow-env=${env.join(",")}`,
    "--allow-sys=hostname,cpus,systemMemoryInfo,osRelease",
    // deno: simulated agents, real agents, `deno info` for pinning; cat: /proc
    // (Deno refuses /proc without --allow-all); pgrep: the agent's /proc reader child; etcd; collectd.
    "--allow-run=deno,cat,pgrep,etcd,etcdctl,collectd",
    "--allow-ffi",
  ];
}

if (import.meta.main) {
  const tmp = Deno.env.get("TMPDIR") || "/tmp";
  const child = new Deno.Command("deno", {
    args: ["run", ...runnerFlags(tmp), join(ROOT, "bench/run.ts"), ...Deno.args],
    cwd: ROOT,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const status = await child.status;
  Deno.exit(status.code);
}
