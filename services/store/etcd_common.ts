/**
 * What both etcd clients of the Store share (the etcd3 one in `etcd.ts`
 * and the HTTP/JSON one in `etcd_http.ts`): endpoint validation, the label
 * errors name, and the retry pacing. No client library is imported here.
 *
 * @module
 */

/** Longest pause between two retries of a call or two reconnects (ms). */
export const MAX_BACKOFF_MS = 1000;
/** First pause before a retry or reconnect (ms). */
export const FIRST_BACKOFF_MS = 50;

/** The endpoint forms accepted: `host:port`, `[v6]:port`, optionally with `http://` or `https://`. */
const ENDPOINT_PATTERN = /^(https?:\/\/)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}\/?$/;

/**
 * Checks `store.endpoints` and returns them trimmed, without a trailing
 * slash; throws a TypeError naming the setting otherwise.
 *
 * ```ts
 * import { normalizeEndpoints } from "./etcd_common.ts";
 * normalizeEndpoints(["127.0.0.1:2379/"]); // ["127.0.0.1:2379"]
 * ```
 */
export function normalizeEndpoints(endpoints: unknown): string[] {
  if (!Array.isArray(endpoints) || endpoints.length === 0) {
    throw new TypeError(
      `store.endpoints: the etcd backend needs at least one endpoint "host:port", got ${
        JSON.stringify(endpoints) ?? String(endpoints)
      }`,
    );
  }
  return endpoints.map((e, i) => {
    if (typeof e !== "string" || !ENDPOINT_PATTERN.test(e.trim())) {
      throw new TypeError(
        `store.endpoints[${i}]: expected "host:port" (optionally with http:// or https://), got ${
          JSON.stringify(e) ?? String(e)
        }`,
      );
    }
    return e.trim().replace(/\/$/, "");
  });
}

/** What errors name: `etcd at host:port[,host:port...]` (schemes left out). */
export function etcdLabel(endpoints: readonly string[]): string {
  return `etcd at ${endpoints.map((e) => e.replace(/^https?:\/\//, "")).join(",")}`;
}

/** The URL of an endpoint (`http://` added when it has no scheme). */
export function endpointUrl(endpoint: string): string {
  return /^https?:\/\//.test(endpoint) ? endpoint : `http://${endpoint}`;
}
