/**
 * What a process needs from Deno's permission system to use the Bus, so
 * that whoever launches it (the supervisor) can grant exactly that.
 *
 * @module
 */
import { dirname } from "node:path";
import { permissionFlags, type PermissionLists } from "../common/permissions.ts";
import type { BusSettings } from "./types.ts";

/** Environment variables kafkajs reads when it is loaded (kafka backend). */
export const KAFKA_ENV_VARS: readonly string[] = Object.freeze([
  "NODE_ENV",
  "KAFKAJS_LOG_LEVEL",
  "KAFKAJS_NO_PARTITIONER_WARNING",
  "KAFKAJS_DEBUG_PROTOCOL_BUFFERS",
  "KAFKAJS_DEBUG_EXTENDED_PROTOCOL_BUFFERS",
]);

/** Permission lists for {@linkcode busPermissions}. */
export type BusPermissions = PermissionLists;

/**
 * The permissions a process needs to open a bus with `settings`:
 * kafka: network access to the brokers and the variables kafkajs reads;
 * embedded: read/write on the directory of the SQLite file (SQLite also
 * creates `-wal` and `-shm` files next to it).
 */
export function busPermissions(settings: BusSettings): BusPermissions {
  if (settings.backend === "kafka") {
    return { read: [], write: [], net: [...settings.brokers], env: [...KAFKA_ENV_VARS] };
  }
  const dir = dirname(settings.path);
  return { read: [dir], write: [dir], net: [], env: [] };
}

/** {@linkcode busPermissions} as `deno run` flags. */
export function busPermissionFlags(settings: BusSettings): string[] {
  return permissionFlags(busPermissions(settings));
}
