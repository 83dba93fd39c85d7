/**
 * Broker addresses as agents and the supervisor see them: one `host:port`,
 * a comma-separated list (`--broker a:50052,b:50052`) or a YAML list, and
 * the ports of `broker.replicas` on one host (`listen` port, port + 1, ...).
 * The one source of these rules for the config validator, the agent's
 * command line and the supervisor.
 *
 * @module
 */

import { isHostPort } from "./net.ts";

/** What a broker list must look like, for error messages. */
export const BROKER_LIST_EXPECTED =
  "a broker address host:port or a list of them, e.g. 10.0.0.5:50052,10.0.0.6:50052";

/**
 * Parses a broker list: a `host:port` string, a comma-separated string, or an
 * array of `host:port` strings. Duplicates are dropped (first kept). Returns
 * the list, or a message saying what is wrong (which item, what was expected).
 *
 * @example
 * ```ts
 * import { parseBrokerList } from "./broker_list.ts";
 * const parsed = parseBrokerList("10.0.0.5:50052, 10.0.0.6:50052");
 * if (typeof parsed === "string") throw new Error(parsed);
 * console.log(parsed); // ["10.0.0.5:50052", "10.0.0.6:50052"]
 * ```
 */
export function parseBrokerList(value: unknown): string[] | string {
  const items = typeof value === "string"
    ? value.split(",").map((s) => s.trim())
    : Array.isArray(value)
    ? value
    : undefined;
  if (items === undefined || items.length === 0) {
    return `expected ${BROKER_LIST_EXPECTED}, found ${describe(value)}`;
  }
  const out: string[] = [];
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (typeof item !== "string" || !isHostPort(item)) {
      const where = items.length > 1 ? `item ${i + 1}: ` : "";
      return `${where}expected host:port, e.g. 10.0.0.5:50052, found ${describe(item)}`;
    }
    if (!out.includes(item)) out.push(item);
  }
  return out;
}

/** Most brokers `broker.replicas` starts on one host. */
export const MAX_REPLICAS = 64;

/**
 * The addresses of `replicas` brokers on one host: the `listen` port, then
 * port + 1, port + 2, ... Throws a RangeError when a port would pass 65535 or
 * the port is 0 with more than one replica (the ports must be known).
 *
 * @example
 * ```ts
 * import { replicaAddresses } from "./broker_list.ts";
 * console.log(replicaAddresses("127.0.0.1:50052", 3));
 * // ["127.0.0.1:50052", "127.0.0.1:50053", "127.0.0.1:50054"]
 * ```
 */
export function replicaAddresses(listen: string, replicas: number): string[] {
  const colon = listen.lastIndexOf(":");
  const host = listen.slice(0, colon);
  const port = Number(listen.slice(colon + 1));
  if (replicas === 1) return [listen];
  if (port === 0) {
    throw new RangeError(
      `broker.listen: expected a fixed port with broker.replicas ${replicas}, found port 0`,
    );
  }
  if (port + replicas - 1 > 65535) {
    throw new RangeError(
      `broker.replicas: ${replicas} brokers from port ${port} would pass port 65535`,
    );
  }
  return Array.from({ length: replicas }, (_, i) => `${host}:${port + i}`);
}

/** An address other processes on this host can reach (0.0.0.0 and [::] read as 127.0.0.1). */
export function localAddress(listen: string): string {
  return listen.replace(/^(0\.0\.0\.0|\[::\]):/, "127.0.0.1:");
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return `a list of ${value.length}`;
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
