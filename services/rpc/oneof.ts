/**
 * The `oneof body` of decoded messages as messages.ts shapes it. Internal to
 * services/rpc; no gRPC import, so the server can use it before the .proto
 * file is loaded.
 *
 * @module
 */

/**
 * Removes the oneof bookkeeping (`body`) and unset (null) oneof members so
 * decoded messages match the optional-field shapes of messages.ts.
 *
 * ```ts
 * stripOneof({ body: "ack", ack: { seq: 1 }, welcome: null }); // { ack: { seq: 1 } }
 * ```
 */
export function stripOneof<T extends object>(decoded: unknown): T {
  const out: Record<string, unknown> = {};
  if (decoded && typeof decoded === "object") {
    for (const [k, v] of Object.entries(decoded)) {
      if (k === "body" || v === null || v === undefined) continue;
      out[k] = v;
    }
  }
  return out as T;
}
