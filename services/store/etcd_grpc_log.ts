/**
 * grpc-js (which etcd3 runs on) writes its own diagnostics straight to
 * stderr (`E No address added out of total 1 resolved`, `I …`), bypassing
 * our log format, levels and escaping. Importing this module routes them to
 * the `store/grpc` logger at debug level: what matters reaches the user
 * through the adapter's own errors (which say what failed and why);
 * `log_level: debug` shows the raw lines. Internal to services/store (the
 * etcd3 adapter, etcd.ts, imports it; the broker's gRPC server no longer
 * loads grpc-js).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "../common/log.ts";

const log = getLogger("store/grpc");
const text = (message?: unknown, ...rest: unknown[]) =>
  [message, ...rest].map((part) => String(part)).join(" ");

grpc.setLogger({
  error: (message?: unknown, ...rest: unknown[]) => log.debug(`grpc-js: ${text(message, ...rest)}`),
  info: (message?: unknown, ...rest: unknown[]) => log.debug(`grpc-js: ${text(message, ...rest)}`),
  debug: (message?: unknown, ...rest: unknown[]) => log.debug(`grpc-js: ${text(message, ...rest)}`),
});
