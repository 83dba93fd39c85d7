/**
 * Which broker an agent talks to, out of a list: rendezvous (highest random
 * weight) hashing of the agent id with each address gives every agent its
 * own order of preference. Invariants:
 * - the order depends only on the agent id and the set of addresses (not
 *   on their order in the list, not on time), so an agent that restarts or
 *   reconnects starts at the same broker and the fleet is not reshuffled;
 * - adding a broker moves only the agents that now prefer it (about 1/N),
 *   removing one moves only its own agents, spread over the others;
 * - after a failure the agent tries the next broker of its order, so the
 *   agents of a lost broker spread over the others instead of all landing on
 *   one.
 * No I/O.
 *
 * @module
 */

/** 32-bit FNV-1a of a string's UTF-16 code units, then a murmur3 finalizer. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The agent's order of preference over `brokers` (rendezvous hashing);
 * ties broken by address.
 *
 * @example
 * ```ts
 * import { preferenceOrder } from "./broker_choice.ts";
 * const order = preferenceOrder("web-1", ["a:50052", "b:50052", "c:50052"]);
 * console.log(order[0]); // the broker web-1 connects to first, the same on every run
 * ```
 */
export function preferenceOrder(agentId: string, brokers: readonly string[]): string[] {
  return [...new Set(brokers)]
    .map((address) => ({ address, weight: hash32(`${agentId}\u0000${address}`) }))
    .sort((a, b) => b.weight - a.weight || (a.address < b.address ? -1 : 1))
    .map((x) => x.address);
}

/** The broker to try now, and the next one after a failure. */
export class BrokerChoice {
  /** The agent's order of preference. */
  readonly order: readonly string[];
  #index = 0;
  #failuresInRound = 0;

  /** @param agentId the agent's id @param brokers at least one `host:port` */
  constructor(agentId: string, brokers: readonly string[]) {
    if (brokers.length === 0) throw new RangeError("brokers: expected at least one address");
    this.order = Object.freeze(preferenceOrder(agentId, brokers));
  }

  /** The broker to connect to now. */
  get current(): string {
    return this.order[this.#index];
  }

  /** True when `current` is the agent's first choice. */
  get preferred(): boolean {
    return this.#index === 0;
  }

  /**
   * The current broker failed (unreachable, refused, or its stream ended):
   * moves to the next one of the order. Returns true when every broker has
   * failed since the last success (a whole round), so the caller backs off.
   */
  failed(): boolean {
    this.#index = (this.#index + 1) % this.order.length;
    this.#failuresInRound++;
    if (this.#failuresInRound >= this.order.length) {
      this.#failuresInRound = 0;
      return true;
    }
    return false;
  }

  /** A stream to `current` was welcomed: a new round starts on failure. */
  succeeded(): void {
    this.#failuresInRound = 0;
  }
}
