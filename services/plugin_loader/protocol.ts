/**
 * Messages between the agent and a URL plugin's Worker. Samples and results
 * cross as pre-serialized JSON strings (cheaper than a structured clone of
 * the object; see `transfer_bench.ts`).
 *
 * @module
 */

/** Context fields a plugin sees (the functions stay on the agent side). */
export interface ContextFields {
  agentId: string;
  hostname: string;
  interval: number;
}

/** A call from the agent into the Worker. */
export type HostCall =
  | { type: "call"; id: number; op: "load" }
  | { type: "call"; id: number; op: "initialize"; config: string; context: ContextFields }
  | { type: "call"; id: number; op: "run"; sample: string; interval?: number }
  | {
    type: "call";
    id: number;
    op: "runBatch";
    /** A JSON array of samples, run in order. */
    samples: string;
    /** A sample whose run() took longer than this (ms) is reported in `overran`. */
    budgetMs: number;
    interval?: number;
  }
  | { type: "call"; id: number; op: "finalize" };

/**
 * The value of a `runBatch` reply (JSON): `out[i]` is what run() returned for
 * sample i (null: dropped). The batch stops at the first sample whose run()
 * throws: its error is `error` and it is sample `out.length`; later samples
 * were not run. `overran` lists the samples whose run() exceeded `budgetMs`.
 */
export interface BatchReply {
  out: unknown[];
  overran: number[];
  error?: WireError;
}

/** An error as it crosses the Worker boundary. */
export interface WireError {
  name: string;
  message: string;
}

/** A message from the Worker to the agent. */
export type WorkerMessage =
  | { type: "reply"; id: number; ok: true; value?: string }
  | { type: "reply"; id: number; ok: false; error: WireError }
  | { type: "log"; level: string; message: string }
  | { type: "alert"; alert: string }
  | { type: "fault"; error: WireError };

/** A permission a Deno error message reports as missing, e.g. `{permission: "read", target: "/etc/x"}`. */
export interface MissingPermission {
  permission: string;
  target: string;
}

/**
 * Recognizes Deno's permission errors ("Requires read access to "/etc/x", run
 * again with the --allow-read flag") in an error name and message.
 */
export function missingPermission(error: WireError): MissingPermission | undefined {
  const match = /Requires (\w+) access to "?([^",]*)"?/.exec(error.message);
  if (match) return { permission: match[1], target: match[2] };
  if (error.name === "NotCapable" || error.name === "PermissionDenied") {
    return { permission: "unknown", target: error.message };
  }
  return undefined;
}
