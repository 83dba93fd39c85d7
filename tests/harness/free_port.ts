/**
 * Test harness: free loopback TCP ports.
 *
 * @module
 */

/**
 * Returns `count` distinct TCP ports that were free on `hostname` a moment
 * ago (all are held open together while choosing, so they differ).
 */
export function freePorts(count: number, hostname = "127.0.0.1"): number[] {
  const listeners: Deno.Listener[] = [];
  try {
    for (let i = 0; i < count; i++) listeners.push(Deno.listen({ hostname, port: 0 }));
    return listeners.map((l) => (l.addr as Deno.NetAddr).port);
  } finally {
    for (const l of listeners) l.close();
  }
}

/** One free TCP port on `hostname`. */
export function freePort(hostname = "127.0.0.1"): number {
  return freePorts(1, hostname)[0];
}
