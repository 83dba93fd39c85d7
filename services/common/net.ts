/**
 * Network addresses written as `host:port` (an IPv6 literal in brackets:
 * `[::1]:50052`): the one place that parses them. Every check of a
 * monitor.yaml address, a flag, a permission list and a listener uses these.
 *
 * @example
 * ```ts
 * import { hostOf, isHostPort, isLoopbackHost, splitHostPort } from "./net.ts";
 *
 * isHostPort("127.0.0.1:50052"); // true
 * isHostPort("[::1]:2379"); // true
 * isHostPort("50052"); // false
 * splitHostPort("[::1]:2379", "--store-endpoints"); // { host: "::1", port: 2379 }
 * hostOf("[::1]:2379"); // "::1"
 * isLoopbackHost("127.0.0.1"); // true
 * ```
 *
 * @module
 */

const HOST_PORT = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/;

/** True for `host:port` with a port from 0 to 65535 (IPv6 literals in brackets). */
export function isHostPort(value: string): boolean {
  const match = HOST_PORT.exec(value);
  return match !== null && Number(match[2]) <= 65535;
}

/**
 * Splits `host:port` (IPv6 in brackets allowed; the brackets are removed
 * from `host`); throws naming `what` and what was expected.
 */
export function splitHostPort(address: string, what: string): { host: string; port: number } {
  const match = HOST_PORT.exec(address);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    throw new TypeError(
      `${what}: expected host:port (for example 127.0.0.1:50053), found ${JSON.stringify(address)}`,
    );
  }
  return { host: match[1].replace(/^\[|\]$/g, ""), port };
}

/** The host part of `host:port` (the brackets of an IPv6 literal removed), never throws. */
export function hostOf(address: string): string {
  const host = address.slice(0, address.lastIndexOf(":"));
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** True for a host only this machine reaches (`localhost`, `127.x.y.z`, `::1`). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * `host:port` of an address given as `host:port` or `scheme://host:port[/...]`
 * (etcd endpoints may be written as URLs).
 */
export function stripScheme(endpoint: string): string {
  return endpoint.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "");
}

/**
 * The address a local client dials for a listen address: a wildcard host
 * (`0.0.0.0`, `[::]`) becomes `127.0.0.1`, anything else stays.
 */
export function dialAddress(listen: string): string {
  return listen.replace(/^(0\.0\.0\.0|\[::\]):/, "127.0.0.1:");
}
