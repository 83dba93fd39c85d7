/**
 * What the gRPC adapter needs from Deno's permission system beyond the
 * environment variables grpc-js reads (services/common/permissions.ts): read
 * access to the protocol file it loads at start. Both the broker's and the
 * agent's permission builders grant it.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** The protocol file the gRPC adapter loads at start (absolute path). */
export const PROTO_FILE: string = fileURLToPath(
  new URL("../../proto/monitoring.proto", import.meta.url),
);
