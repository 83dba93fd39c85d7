/**
 * The Bus: keyed publish and consumer-group subscribe with at-least-once
 * delivery, on Kafka (`kafka`) or on the SQLite file of the state directory
 * (`embedded`, the single-machine default). Services use only this module.
 *
 * @module
 */
import type { Bus, BusSettings } from "./types.ts";

export * from "./types.ts";
export {
  busPermissionFlags,
  type BusPermissions,
  busPermissions,
  KAFKA_ENV_VARS,
} from "./permissions.ts";

/**
 * Opens the backend chosen by `settings.backend`. An unreachable backend
 * fails with {@linkcode BusUnavailableError} naming the endpoint within
 * `connectTimeoutMs` (default 5 s).
 */
export async function openBus(settings: BusSettings): Promise<Bus> {
  if (typeof settings !== "object" || settings === null) {
    throw new TypeError("bus settings: expected an object");
  }
  switch (settings.backend) {
    case "embedded": {
      const { openEmbeddedBus } = await import("./embedded.ts");
      return await openEmbeddedBus(settings);
    }
    case "kafka": {
      // Loaded on demand so that processes on the embedded bus never load kafkajs.
      const { openKafkaBus } = await import("./kafka.ts");
      return await openKafkaBus(settings);
    }
    default:
      throw new TypeError(
        `bus.backend: expected "embedded" or "kafka", got ${
          JSON.stringify(settings.backend) ?? String(settings.backend)
        }`,
      );
  }
}
